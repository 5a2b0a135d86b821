"""models: two-headed xLSTM direction models, their data preparation and training.

scaled feature rows --(Scaler)--> windows (make_windows) --(DirectionModel)--> p(down, flat, up)

Importing ``models`` loads nothing heavy: each name below is imported from its submodule on first
use (PEP 562). ``models.Scaler``, ``make_windows`` and ``EXPORT_LAYOUT`` need numpy only (what the
trading PC's ONNX runtime uses, :mod:`evo.deploy.engines`); the networks and training load torch and
xlstm. Never optuna, deap, nevergrad or vectorbt (the learning-rate search lives in
``models.tuning``; import it explicitly).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_SOURCES = {
    "EXPORT_LAYOUT": "models.layout",
    "ModelConfig": "models.config", "TrainConfig": "models.config", "build_stack_config": "models.config",
    "mlstm_inner_dim": "models.config", "pick_backend": "models.config",
    "Scaler": "models.data", "fit_dead_zone": "models.data", "fit_scaler": "models.data",
    "forward_returns": "models.data", "make_labels": "models.data", "make_windows": "models.data",
    "MultiConfig": "models.multi", "MultiTimeframeModel": "models.multi", "build_model": "models.multi",
    "load_model": "models.multi",
    "DirectionModel": "models.network", "load_exported": "models.network", "state_dict_for_export": "models.network",
    "TrainResult": "models.train", "predict_proba": "models.train", "train_model": "models.train",
    "train_models": "models.batched",
}

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


def __getattr__(name: str) -> Any:
    if name in _SOURCES:
        value = getattr(importlib.import_module(_SOURCES[name]), name)
        globals()[name] = value   # later look-ups skip this function
        return value
    raise AttributeError(f"module 'models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from models.config import ModelConfig, TrainConfig, build_stack_config, mlstm_inner_dim, pick_backend
    from models.data import Scaler, fit_dead_zone, fit_scaler, forward_returns, make_labels, make_windows
    from models.layout import EXPORT_LAYOUT
    from models.multi import MultiConfig, MultiTimeframeModel, build_model, load_model
    from models.network import DirectionModel, load_exported, state_dict_for_export
    from models.batched import train_models
    from models.train import TrainResult, predict_proba, train_model
