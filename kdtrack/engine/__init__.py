from .optim import OptimConfig
from .trainer import DEVICES, SELECT_ON, Batch, TrainResult, resolve_device, train

__all__ = ["DEVICES", "SELECT_ON", "Batch", "OptimConfig", "TrainResult", "resolve_device", "train"]
