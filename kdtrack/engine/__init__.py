from .optim import OptimConfig
from .stopwatch import Stopwatch
from .trainer import DEVICES, PRECISIONS, SELECT_ON, Batch, TrainResult, TrainSpec, resolve_device, train

__all__ = ["DEVICES", "PRECISIONS", "SELECT_ON", "Batch", "OptimConfig", "Stopwatch", "TrainResult", "TrainSpec", "resolve_device", "train"]
