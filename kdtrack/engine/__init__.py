from .optim import OptimConfig
from .trainer import Batch, TrainResult, train

__all__ = ["Batch", "OptimConfig", "TrainResult", "train"]
