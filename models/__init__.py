"""models: two-headed xLSTM direction models, their data preparation and training.

scaled feature rows --(Scaler)--> windows (make_windows) --(DirectionModel)--> p(down, flat, up)

Importing ``models`` loads torch and xlstm but never optuna, deap, nevergrad or vectorbt (the
learning-rate search lives in ``models.tuning``; import it explicitly).
"""

from models.batched import train_models
from models.config import ModelConfig, TrainConfig, build_stack_config, mlstm_inner_dim, pick_backend
from models.data import Scaler, fit_dead_zone, fit_scaler, forward_returns, make_labels, make_windows
from models.multi import MultiConfig, MultiTimeframeModel, build_model, load_model
from models.network import EXPORT_LAYOUT, DirectionModel, load_exported, state_dict_for_export
from models.train import TrainResult, predict_proba, train_model

__all__ = [
    "EXPORT_LAYOUT",
    "DirectionModel",
    "ModelConfig",
    "MultiConfig",
    "MultiTimeframeModel",
    "Scaler",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "build_stack_config",
    "fit_dead_zone",
    "fit_scaler",
    "forward_returns",
    "load_exported",
    "load_model",
    "make_labels",
    "make_windows",
    "mlstm_inner_dim",
    "pick_backend",
    "predict_proba",
    "state_dict_for_export",
    "train_model",
    "train_models",
]
