"""The direction model and its backend-neutral weight export.

A model is rebuilt from its :class:`~models.config.ModelConfig` alone plus the tensors of
:func:`state_dict_for_export` (nanoGPT's ``model_args`` + ``state_dict`` idea), so a bundle
needs no pickled objects.

sLSTM weights and kernels: xlstm keeps each sLSTM cell's ``_recurrent_kernel_`` and ``_bias_``
in a backend-specific internal layout. Same names, but the "cuda" cell stores the recurrent
kernel as (heads, D, 4*D) and the "vanilla" cell as (heads, 4*D, D), and the bias gates are
ordered differently when heads > 1 (same shape, so a plain ``load_state_dict`` would load them
silently scrambled). The export therefore stores these two tensors in xlstm's external,
backend-agnostic layout, (heads, D, 4, D) and (heads, 4, D), and :func:`load_exported` converts
them into whatever backend it builds.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn
from xlstm import xLSTMBlockStack
from xlstm.blocks.slstm.cell import sLSTMCellBase

from evo.errors import BundleError, ConfigError
from models.config import ModelConfig, build_stack_config
from models.layout import EXPORT_LAYOUT

__all__ = ["EXPORT_LAYOUT", "DirectionModel", "load_exported", "load_into", "state_dict_for_export"]

N_CLASSES = 3  # 0 = down, 1 = flat, 2 = up


class DirectionModel(nn.Module):
    """``Linear(F->E) -> xLSTMBlockStack -> last time step -> dropout -> two heads``.

    ``forward(x)`` takes scaled windows ``x`` (B, S, F) float32 with S <= ``config.seq_len``
    (the last row is the decision bar t) and returns ``logits`` (B, 3) for down/flat/up and
    ``ret`` (B,), the forward return in units of its training std. Every layer is causal and only
    the last step is read, so the output uses bars t-S+1..t of the window and nothing else.

    Do not ``copy.deepcopy`` a model with sLSTM blocks: xlstm's ``ParameterProxy`` forwards
    ``__deepcopy__`` to the raw parameter, so in the copy ``cell.recurrent_kernel``/``cell.bias``
    become the internal-layout parameters themselves (``reset_parameters`` then fails). Rebuild
    with ``DirectionModel(model.config)`` and ``load_state_dict`` instead.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ConfigError(f"DirectionModel needs a ModelConfig, got {type(config).__name__}")
        if config.backend == "cuda" and config.has_slstm and not torch.cuda.is_available():
            raise ConfigError(
                "ModelConfig.backend='cuda' needs CUDA, which this machine lacks; "
                "use backend=models.pick_backend() (or load weights with models.load_exported)"
            )
        self.config = config
        E = config.embedding_dim
        self.input_proj = nn.Linear(config.n_features, E)
        self.stack = xLSTMBlockStack(build_stack_config(config))
        self.dropout = nn.Dropout(config.dropout)
        self.head_cls = nn.Linear(E, N_CLASSES)
        self.head_ret = nn.Linear(E, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 3 or x.shape[-1] != self.config.n_features or x.shape[1] > self.config.seq_len:
            raise ValueError(
                f"DirectionModel expects x of shape (B, S<={self.config.seq_len}, {self.config.n_features}), "
                f"got {tuple(x.shape)}"
            )
        h = self.stack(self.input_proj(x))  # (B, S, E)
        h = self.dropout(h[:, -1])  # (B, E): the decision bar
        return self.head_cls(h), self.head_ret(h).squeeze(-1)


def _slstm_cells(model: nn.Module) -> list[tuple[str, sLSTMCellBase]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, sLSTMCellBase)]


def state_dict_for_export(model: DirectionModel) -> dict[str, Tensor]:
    """The model's weights as contiguous CPU float32 tensors, ready for ``safetensors``.

    Names are those of ``model.state_dict()``; sLSTM cells' ``_recurrent_kernel_`` and ``_bias_``
    are in xlstm's backend-neutral layout (module docstring), so "cuda" and "vanilla" models
    export identical tensors for identical weights.
    """
    out = {
        name: t.detach().to(device="cpu", dtype=torch.float32).contiguous().clone()
        for name, t in model.state_dict().items()
    }
    for name, cell in _slstm_cells(model):
        kernel = cell._recurrent_kernel_int2ext(cell._recurrent_kernel_.detach())
        bias = cell._bias_int2ext(cell._bias_.detach())
        out[f"{name}._recurrent_kernel_"] = kernel.to(device="cpu", dtype=torch.float32).contiguous().clone()
        out[f"{name}._bias_"] = bias.to(device="cpu", dtype=torch.float32).contiguous().clone()
    return out


def load_exported(cfg: ModelConfig, tensors: dict[str, Tensor], *, backend: str = "vanilla") -> DirectionModel:
    """Rebuild a :class:`DirectionModel` on the CPU, in eval mode, from ``cfg`` and exported tensors.

    ``cfg.backend`` is replaced by ``backend`` ("vanilla" by default, which runs anywhere), so
    weights trained with the "cuda" sLSTM kernel load on a CPU-only machine. Raises
    ``BundleError`` when the tensors do not fit the config (names or shapes).
    """
    return load_into(DirectionModel(dataclasses.replace(cfg, backend=backend)), tensors)


def load_into(model: nn.Module, tensors: dict[str, Tensor]) -> nn.Module:
    """Load exported tensors (:func:`state_dict_for_export`'s names, sLSTM kernels in xlstm's
    neutral layout) into a freshly built ``model``; return it in eval mode. Raises ``BundleError``
    when the tensors do not fit the model (names or shapes)."""
    expected = state_dict_for_export(model)  # names and (neutral) shapes this config produces
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise BundleError(
            f"weights do not match the model config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, ref in expected.items():
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise BundleError(
                f"weight {name!r} has shape {tuple(tensors[name].shape)}, the config needs {tuple(ref.shape)}"
            )
    state = {name: tensors[name].to(dtype=torch.float32) for name in expected}
    for name, cell in _slstm_cells(model):
        key_k, key_b = f"{name}._recurrent_kernel_", f"{name}._bias_"
        state[key_k] = cell._recurrent_kernel_ext2int(state[key_k]).contiguous()
        state[key_b] = cell._bias_ext2int(state[key_b]).contiguous()
    model.load_state_dict(state, strict=True)
    return model.eval()
