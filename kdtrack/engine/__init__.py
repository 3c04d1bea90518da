from .optim import OptimConfig
from .trainer import DEVICES, SELECT_ON, Batch, TrainResult, TrainSpec, resolve_device, train

__all__ = ["DEVICES", "SELECT_ON", "Batch", "OptimConfig", "TrainResult", "TrainSpec", "resolve_device", "train"]
