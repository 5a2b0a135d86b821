"""Frozen configs for one xLSTM direction model and its training, and the one place that builds
NX-AI xlstm's (mutable) configs from them.

xlstm's configs are mutable dataclasses whose ``__post_init__`` writes into their children
(``xLSTMBlockStackConfig`` sets ``embedding_dim``, ``context_length``, ``_num_blocks`` ... on the
block and layer configs, and the sLSTM cell rewrites ``internal_input_shape`` on its config). So
evo never keeps or shares one: :func:`build_stack_config` makes a fresh tree on every call from a
frozen :class:`ModelConfig`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

import torch
from xlstm import (
    FeedForwardConfig,
    mLSTMBlockConfig,
    mLSTMLayerConfig,
    sLSTMBlockConfig,
    sLSTMLayerConfig,
    xLSTMBlockStackConfig,
)

from evo.errors import ConfigError

__all__ = ["ModelConfig", "TrainConfig", "build_stack_config", "mlstm_inner_dim", "pick_backend"]

BACKENDS = ("vanilla", "cuda")

# Fixed parts of the block configs (not genome genes; changing one changes every model's weights,
# so old bundles stop loading). The mLSTM layer up-projects the embedding by MLSTM_PROJ_FACTOR
# and rounds the result UP to a multiple of MLSTM_ROUND_TO (xlstm's default 64), so a 16-wide
# model runs its mLSTM cell 64 wide (see mlstm_inner_dim); 16 would make it 32 wide and a
# 1-block, 16-wide stack ~30% faster on the CPU.
CONV1D_KERNEL_SIZE = 4
QKV_PROJ_BLOCKSIZE = 4
MLSTM_PROJ_FACTOR = 2.0
MLSTM_ROUND_TO = 64
FFN_PROJ_FACTOR = 1.3

# AdamW's usual default learning rate: Optuna's first trial (models.tuning) and the rate used where no
# study runs (successive-halving screens). Here, not in models.tuning, so using it imports no optuna.
DEFAULT_LR = 1e-3


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def mlstm_inner_dim(embedding_dim: int, proj_factor: float = MLSTM_PROJ_FACTOR) -> int:
    """Width of the mLSTM cell (the "hidden size") of an ``embedding_dim``-wide block: ``proj_factor`` x E
    rounded up to a multiple of MLSTM_ROUND_TO (xlstm's arithmetic): E 512 x 2.0 = 1024, E 64 x 1.0 = 64."""
    return int(math.ceil(proj_factor * embedding_dim / MLSTM_ROUND_TO) * MLSTM_ROUND_TO)


@dataclass(frozen=True)
class ModelConfig:
    """One xLSTM direction model: ``Linear(F->E) -> xLSTMBlockStack -> last step -> heads``.

    n_features:    F, columns of the scaled feature matrix the model reads.
    embedding_dim: E, width of the residual stream (16, 24, 64 ...).
    num_blocks:    number of xLSTM blocks.
    num_heads:     heads of every block; divides E (and, where there are mLSTM blocks, the
                   mLSTM cell width ``mlstm_inner_dim(E)``); sLSTM blocks need E / heads >= 2.
    slstm_at:      sorted, unique block indices that are sLSTM blocks; the rest are mLSTM.
                   ``()`` is all-mLSTM, ``tuple(range(num_blocks))`` all-sLSTM. A list is
                   accepted and stored as a tuple.
    dropout:       fraction in [0, 1), inside the blocks and before the heads.
    seq_len:       window length in bars (xLSTM ``context_length``); >= 2.
    backend:       sLSTM kernel, ``"vanilla"`` (any device) or ``"cuda"`` (CUDA only, see
                   :func:`pick_backend`). Weights do not depend on it: a bundle exported from a
                   ``"cuda"`` model loads into a ``"vanilla"`` one (``models.network``).
    proj_factor:   up-projection of the mLSTM blocks: the cell runs ``mlstm_inner_dim(E, proj_factor)``
                   wide (1.0-2.0; 2.0 is xlstm's default and every model's before it was a gene).
    """

    n_features: int
    embedding_dim: int
    num_blocks: int
    num_heads: int
    slstm_at: tuple[int, ...]
    dropout: float
    seq_len: int
    backend: str = "vanilla"
    proj_factor: float = MLSTM_PROJ_FACTOR

    def __post_init__(self) -> None:
        for name in ("n_features", "embedding_dim", "num_blocks", "num_heads"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"ModelConfig.{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy ints become plain ints (JSON)
        if not _is_int(self.seq_len) or self.seq_len < 2:
            raise ConfigError(f"ModelConfig.seq_len must be an integer >= 2 bars, got {self.seq_len!r}")
        object.__setattr__(self, "seq_len", int(self.seq_len))
        try:
            slstm_at = tuple(self.slstm_at)
        except TypeError:
            raise ConfigError(f"ModelConfig.slstm_at must be a tuple of block indices, got {self.slstm_at!r}") from None
        if not all(_is_int(i) for i in slstm_at):
            raise ConfigError(f"ModelConfig.slstm_at must hold integers, got {self.slstm_at!r}")
        slstm_at = tuple(int(i) for i in slstm_at)
        if list(slstm_at) != sorted(set(slstm_at)):
            raise ConfigError(
                f"ModelConfig.slstm_at must be sorted and unique, got {slstm_at}; use {tuple(sorted(set(slstm_at)))}"
            )
        if slstm_at and (slstm_at[0] < 0 or slstm_at[-1] >= self.num_blocks):
            raise ConfigError(
                f"ModelConfig.slstm_at {slstm_at} must index blocks 0..{self.num_blocks - 1} "
                f"(num_blocks={self.num_blocks})"
            )
        object.__setattr__(self, "slstm_at", slstm_at)
        if not isinstance(self.dropout, numbers.Real) or not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"ModelConfig.dropout must be a fraction in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        if self.backend not in BACKENDS:
            raise ConfigError(f"ModelConfig.backend must be one of {BACKENDS}, got {self.backend!r}")
        if not isinstance(self.proj_factor, numbers.Real) or not 0.5 <= float(self.proj_factor) <= 4.0:
            raise ConfigError(f"ModelConfig.proj_factor must lie in [0.5, 4] (e.g. 2.0), got {self.proj_factor!r}")
        object.__setattr__(self, "proj_factor", float(self.proj_factor))
        E, H = self.embedding_dim, self.num_heads
        if E % H:
            divisors = [h for h in range(1, E + 1) if E % h == 0]
            raise ConfigError(f"ModelConfig.num_heads={H} must divide embedding_dim={E}; pick one of {divisors}")
        if self.has_mlstm and self.inner_dim % H:
            raise ConfigError(
                f"ModelConfig.num_heads={H} must divide the mLSTM cell width {self.inner_dim} "
                f"({self.proj_factor:g} x embedding_dim={E} rounded up to {MLSTM_ROUND_TO}); "
                "use a power of two for num_heads"
            )
        if self.has_slstm and E // H < 2:
            raise ConfigError(
                f"ModelConfig: sLSTM blocks need embedding_dim / num_heads >= 2 (got {E} / {H}); "
                "use fewer heads (a 1-wide sLSTM head gets a NaN forget-gate init)"
            )

    @property
    def inner_dim(self) -> int:
        """Width of the mLSTM cell: :func:`mlstm_inner_dim` of E and ``proj_factor``."""
        return mlstm_inner_dim(self.embedding_dim, self.proj_factor)

    @property
    def has_mlstm(self) -> bool:
        return len(self.slstm_at) < self.num_blocks

    @property
    def has_slstm(self) -> bool:
        return len(self.slstm_at) > 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``slstm_at`` as a list); ``ModelConfig.from_dict`` inverts it."""
        d = asdict(self)
        d["slstm_at"] = list(self.slstm_at)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"ModelConfig.from_dict: {exc}") from None


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained (``models.train.train_model``).

    lr:                 AdamW learning rate (1e-3 is a good start; ``models.tuning`` searches it).
    max_epochs:         upper bound on passes over the training windows.
    patience:           epochs without a better validation loss before stopping (>= 1);
                        the learning rate is halved after ``max(1, patience // 2)`` such epochs.
    batch_size:         windows per optimiser step.
    weight_decay:       AdamW decoupled weight decay, applied to matrices only (nanoGPT's rule).
    grad_clip:          max global L2 norm of the gradient (> 0).
    return_loss_weight: weight of the return-regression loss next to the class loss (>= 0).
    seed:               seeds the weight init and the shuffling; same seed, same model.
    device:             ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    amp:                bfloat16 autocast for forward passes on CUDA (ignored on the CPU, which trains
                        in float32).
    fast_path:          on the CPU, run a single-timeframe model's forward passes through
                        ``models.fast_mlstm`` (same weights, outputs and gradients within 1e-5 of
                        xlstm's own path; dropout masks differ); ``EVO_FAST_PATH=0`` also turns it off.
    """

    lr: float
    max_epochs: int
    patience: int
    batch_size: int
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    return_loss_weight: float = 0.1
    seed: int = 0
    device: str = "cpu"
    amp: bool = True
    fast_path: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.lr, numbers.Real) or not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"TrainConfig.lr must be a finite number > 0 (e.g. 1e-3), got {self.lr!r}")
        for name in ("max_epochs", "patience", "batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("weight_decay", "return_loss_weight"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"TrainConfig.{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.grad_clip, numbers.Real) or not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ConfigError(f"TrainConfig.grad_clip must be a finite norm > 0 (e.g. 1.0), got {self.grad_clip!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"TrainConfig.seed must be an integer >= 0, got {self.seed!r}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ConfigError(f"TrainConfig.device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}") from None
        if device.type not in ("cpu", "cuda"):
            raise ConfigError(f"TrainConfig.device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


def pick_backend() -> str:
    """The sLSTM backend for this machine: ``"cuda"`` only if CUDA is available, else ``"vanilla"``."""
    return "cuda" if torch.cuda.is_available() else "vanilla"


def build_stack_config(cfg: ModelConfig) -> xLSTMBlockStackConfig:
    """A fresh ``xLSTMBlockStackConfig`` for ``cfg`` (new objects on every call: never share them).

    Only the block kinds that occur are configured: all-sLSTM stacks get ``mlstm_block=None``
    (which xlstm reads as ``slstm_at="all"``), all-mLSTM stacks ``slstm_block=None``.
    """
    mlstm_block = None
    if cfg.has_mlstm:
        mlstm_block = mLSTMBlockConfig(
            mlstm=mLSTMLayerConfig(
                conv1d_kernel_size=CONV1D_KERNEL_SIZE,
                qkv_proj_blocksize=QKV_PROJ_BLOCKSIZE,
                num_heads=cfg.num_heads,
                proj_factor=cfg.proj_factor,
                round_proj_up_to_multiple_of=MLSTM_ROUND_TO,
            )
        )
    slstm_block = None
    if cfg.has_slstm:
        slstm_block = sLSTMBlockConfig(
            slstm=sLSTMLayerConfig(
                backend=cfg.backend,
                num_heads=cfg.num_heads,
                conv1d_kernel_size=CONV1D_KERNEL_SIZE,
                bias_init="powerlaw_blockdependent",
            ),
            feedforward=FeedForwardConfig(proj_factor=FFN_PROJ_FACTOR, act_fn="gelu"),
        )
    return xLSTMBlockStackConfig(
        mlstm_block=mlstm_block,
        slstm_block=slstm_block,
        context_length=cfg.seq_len,
        num_blocks=cfg.num_blocks,
        embedding_dim=cfg.embedding_dim,
        slstm_at=list(cfg.slstm_at),
        dropout=cfg.dropout,
    )
