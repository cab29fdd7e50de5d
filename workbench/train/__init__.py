"""One small, fast training loop over a task and a list of algorithms, its schedules and checkpoints."""
from .algorithms import ClosureStep, EpochFunctions, ExtraLoss, GradMask, LiveCurves, ProgressBar, SelectParams
from .cached import cached_fit, data_fingerprint, model_fingerprint, train_model
from .checkpoint import (CheckpointError, latest_checkpoint, load_checkpoint, load_model, load_state_checked,
                         save_checkpoint, save_model)
from .events import EVENTS, Algorithm, Callback, State
from .sam import SAM, sam
from .runs import model_run, run_record, steps_to_reach
from .schedules import RECIPES, SCHEDULES, lr_at, recipe
from .tasks import Classification, Task
from .trainer import OPTIMIZERS, NonFiniteLossError, TrainResult, evaluate, fit

__all__ = ["SAM", "sam", "fit", "train_model", "cached_fit", "data_fingerprint", "model_fingerprint", "evaluate",
           "TrainResult", "NonFiniteLossError", "recipe", "RECIPES", "lr_at", "SCHEDULES", "OPTIMIZERS", "save_model",
           "load_model",
           "save_checkpoint", "load_checkpoint", "latest_checkpoint", "load_state_checked", "CheckpointError",
           "Task", "Classification", "Algorithm", "Callback", "State", "EVENTS", "SelectParams", "GradMask",
           "ExtraLoss", "ClosureStep", "model_run", "run_record", "steps_to_reach", "ProgressBar", "LiveCurves", "EpochFunctions"]
