"""The multi-timeframe direction model: one xLSTM encoder per timeframe, fused.

The trader's multi-timeframe xLSTM, as a point of evo's search space::

    x1 window  (B, S, F) -> Linear(F->E) -> xLSTMBlockStack -> last step --+
    x5 window  (B, S, F) -> Linear(F->E) -> xLSTMBlockStack -> last step --+-> fusion -> dropout -> heads
    ...                                                                    |
                                                                         --+

Each timeframe's window holds ``seq_len`` rows *of its own timeframe*: the last ``seq_len``
closed periods at the decision bar (see :mod:`features.timeframes`). The windows travel packed in
one array ``(B, S, k*F)``: columns ``i*F .. (i+1)*F`` are timeframe ``i`` (ascending, ``x1``
first), so every array API of :mod:`models` (windows, ``predict_proba``, training splits) is the
same for one timeframe and for several.

Fusion:

- ``"concat"``: the last states concatenated, ``Linear(k*E -> E)``.
- ``"attention"``: ``nn.MultiheadAttention`` across the k last states, the base timeframe's
  state as the query (the trader's design), plus a residual connection to that state.

Topology genes (embedding, blocks, heads, sLSTM positions, dropout) are shared by a model's
encoders (:class:`MultiConfig` wraps one :class:`~models.config.ModelConfig`): the genome stays
small, crossover stays meaningful, and the cost grows linearly with the number of timeframes.
A single timeframe is not a :class:`MultiConfig`: :func:`build_model` of a plain ``ModelConfig``
is today's :class:`~models.network.DirectionModel`, weight for weight.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from xlstm import xLSTMBlockStack

from evo.errors import ConfigError
from models.config import ModelConfig, build_stack_config
from models.network import N_CLASSES, DirectionModel, load_exported, load_into

__all__ = ["FUSIONS", "MultiConfig", "MultiTimeframeModel", "build_model", "config_from_dict", "load_model"]

FUSIONS = ("concat", "attention")


@dataclass(frozen=True)
class MultiConfig:
    """A model reading several timeframes: ``base`` (one encoder's config; ``base.n_features`` is
    F, the features per timeframe, and ``base.seq_len`` the window in rows of each timeframe),
    ``timeframes`` (multipliers of the base bar, sorted, unique, starting with 1, at least two)
    and ``fusion`` (``"concat"`` | ``"attention"``)."""

    base: ModelConfig
    timeframes: tuple[int, ...]
    fusion: str = "concat"

    def __post_init__(self) -> None:
        if not isinstance(self.base, ModelConfig):
            raise ConfigError(f"MultiConfig.base must be a ModelConfig, got {type(self.base).__name__}")
        tfs = tuple(int(m) for m in self.timeframes)
        if len(tfs) < 2 or tfs[0] != 1 or list(tfs) != sorted(set(tfs)):
            raise ConfigError(f"MultiConfig.timeframes must be sorted, unique, start with 1 and hold at least two "
                              f"multipliers (one timeframe is a plain ModelConfig), got {self.timeframes}")
        object.__setattr__(self, "timeframes", tfs)
        if self.fusion not in FUSIONS:
            raise ConfigError(f"MultiConfig.fusion must be one of {FUSIONS}, got {self.fusion!r}")

    @property
    def n_timeframes(self) -> int:
        return len(self.timeframes)

    @property
    def n_features(self) -> int:
        """Width of the packed input: F features per timeframe times the timeframes."""
        return self.base.n_features * self.n_timeframes

    @property
    def seq_len(self) -> int:
        return self.base.seq_len

    @property
    def has_slstm(self) -> bool:
        return self.base.has_slstm

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.to_dict(), "timeframes": list(self.timeframes), "fusion": self.fusion}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultiConfig:
        base = dict(d["base"])
        base["slstm_at"] = tuple(base["slstm_at"])
        return cls(base=ModelConfig.from_dict(base), timeframes=tuple(d["timeframes"]), fusion=str(d["fusion"]))


def config_from_dict(d: dict[str, Any]) -> ModelConfig | MultiConfig:
    """A bundle's stored model config: a :class:`MultiConfig` dict (has ``"base"``) or a plain one."""
    if "base" in d:
        return MultiConfig.from_dict(d)
    return ModelConfig.from_dict({**d, "slstm_at": tuple(d["slstm_at"])})


class _Encoder(nn.Module):
    """``Linear(F->E) -> xLSTMBlockStack``: one timeframe's encoder (DirectionModel's trunk)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_proj = nn.Linear(cfg.n_features, cfg.embedding_dim)
        self.stack = xLSTMBlockStack(build_stack_config(cfg))

    def forward(self, x: Tensor) -> Tensor:
        return self.stack(self.input_proj(x))[:, -1]  # (B, E): the decision bar's state


class MultiTimeframeModel(nn.Module):
    """One encoder per timeframe, fused, then dropout and the two heads of DirectionModel.

    ``forward(x)``: packed windows ``x`` (B, S, k*F) float32 (module docstring), S <= seq_len;
    returns ``logits`` (B, 3) for down/flat/up and ``ret`` (B,). Every encoder is causal and reads
    only closed periods at or before the decision bar.
    """

    def __init__(self, config: MultiConfig) -> None:
        super().__init__()
        if not isinstance(config, MultiConfig):
            raise ConfigError(f"MultiTimeframeModel needs a MultiConfig, got {type(config).__name__}")
        if config.base.backend == "cuda" and config.has_slstm and not torch.cuda.is_available():
            raise ConfigError("MultiConfig.base.backend='cuda' needs CUDA, which this machine lacks")
        self.config = config
        E = config.base.embedding_dim
        self.encoders = nn.ModuleList(_Encoder(config.base) for _ in config.timeframes)
        if config.fusion == "concat":
            self.fuse = nn.Linear(E * config.n_timeframes, E)
        else:
            self.fuse = nn.MultiheadAttention(E, config.base.num_heads, dropout=config.base.dropout,
                                              batch_first=True)
        self.dropout = nn.Dropout(config.base.dropout)
        self.head_cls = nn.Linear(E, N_CLASSES)
        self.head_ret = nn.Linear(E, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        cfg = self.config
        if x.ndim != 3 or x.shape[-1] != cfg.n_features or x.shape[1] > cfg.seq_len:
            raise ValueError(f"MultiTimeframeModel expects x of shape (B, S<={cfg.seq_len}, {cfg.n_features}), "
                             f"got {tuple(x.shape)}")
        parts = torch.split(x, cfg.base.n_features, dim=-1)
        states = [enc(part) for enc, part in zip(self.encoders, parts)]  # k x (B, E)
        if cfg.fusion == "concat":
            h = self.fuse(torch.cat(states, dim=-1))
        else:
            tokens = torch.stack(states, dim=1)  # (B, k, E)
            attended, _ = self.fuse(tokens[:, :1], tokens, tokens, need_weights=False)
            h = attended[:, 0] + states[0]
        h = self.dropout(h)
        return self.head_cls(h), self.head_ret(h).squeeze(-1)


def build_model(cfg: ModelConfig | MultiConfig) -> nn.Module:
    """:class:`DirectionModel` for a plain config (today's model), :class:`MultiTimeframeModel`
    for a :class:`MultiConfig`."""
    if isinstance(cfg, MultiConfig):
        return MultiTimeframeModel(cfg)
    return DirectionModel(cfg)


def load_model(cfg: ModelConfig | MultiConfig, tensors: dict[str, Tensor], *, backend: str = "vanilla") -> nn.Module:
    """Rebuild either model on the CPU, in eval mode, from exported tensors
    (:func:`models.state_dict_for_export`, sLSTM kernels in xlstm's backend-neutral layout).

    A plain config goes through :func:`models.load_exported`. Raises ``BundleError`` when the
    tensors do not fit the config.
    """
    if not isinstance(cfg, MultiConfig):
        return load_exported(cfg, tensors, backend=backend)
    return load_into(MultiTimeframeModel(dataclasses.replace(cfg, base=dataclasses.replace(cfg.base, backend=backend))),
                     tensors)
