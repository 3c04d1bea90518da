from .optim import OptimConfig
from .trainer import DEVICES, PRECISIONS, SELECT_ON, Batch, TrainResult, TrainSpec, resolve_device, train

__all__ = ["DEVICES", "PRECISIONS", "SELECT_ON", "Batch", "OptimConfig", "TrainResult", "TrainSpec", "resolve_device", "train"]
