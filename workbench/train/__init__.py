"""One small, fast training loop, its schedules and checkpoints."""
from .cached import data_fingerprint, train_model
from .checkpoint import (CheckpointError, latest_checkpoint, load_checkpoint, load_model, load_state_checked,
                         save_checkpoint, save_model)
from .sam import SAM, sam
from .schedules import RECIPES, SCHEDULES, lr_at, recipe
from .trainer import OPTIMIZERS, NonFiniteLossError, TrainResult, evaluate, fit

__all__ = ["SAM", "sam", "fit", "train_model", "data_fingerprint", "evaluate", "TrainResult", "NonFiniteLossError", "recipe", "RECIPES", "lr_at", "SCHEDULES",
           "OPTIMIZERS", "save_model", "load_model", "save_checkpoint", "load_checkpoint", "latest_checkpoint",
           "load_state_checked", "CheckpointError"]
