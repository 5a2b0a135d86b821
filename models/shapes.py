"""Layer shapes and exact parameter counts of the xLSTM direction models, from their config
numbers alone (no model is built): the arithmetic xlstm itself does when it sizes its layers.
``tests/test_hardware.py`` pins these counts against built models."""

from __future__ import annotations

import math

from models.config import CONV1D_KERNEL_SIZE, FFN_PROJ_FACTOR, MLSTM_ROUND_TO, QKV_PROJ_BLOCKSIZE, mlstm_inner_dim

__all__ = ["direction_model_params", "ffn_inner_dim", "mlstm_block_params", "mlstm_inner_dim", "slstm_block_params"]


def ffn_inner_dim(embedding_dim: int) -> int:
    """Width of an sLSTM block's gated feed-forward layer: xlstm's ``UpProjConfigMixin``,
    ``FFN_PROJ_FACTOR * E`` rounded up to a multiple of ``MLSTM_ROUND_TO`` (64)."""
    return int(math.ceil(FFN_PROJ_FACTOR * embedding_dim / MLSTM_ROUND_TO) * MLSTM_ROUND_TO)


def mlstm_block_params(E: int, H: int, proj_factor: float = 2.0) -> int:
    """Parameters of one mLSTM block of embedding ``E`` with ``H`` heads."""
    K, B = CONV1D_KERNEL_SIZE, QKV_PROJ_BLOCKSIZE
    Ei = mlstm_inner_dim(E, proj_factor)
    return (E                       # pre-norm weight
            + Ei                    # learnable skip
            + 2 * Ei * E            # proj_up (no bias)
            + 3 * Ei * B            # q, k, v: block-diagonal (Ei/B blocks of B x B)
            + Ei * K + Ei           # causal conv1d, depthwise, with bias
            + 2 * (3 * Ei * H + H)  # input and forget gates read q, k, v
            + Ei                    # output norm
            + E * Ei)               # proj_down


def slstm_block_params(E: int, H: int) -> int:
    """Parameters of one sLSTM block (with its gated feed-forward layer)."""
    K = CONV1D_KERNEL_SIZE
    Fi = ffn_inner_dim(E)
    return (E                       # pre-norm weight
            + E * K + E             # causal conv1d with bias
            + 4 * E * E // H        # i, f, z, o input gates: head-wise (H blocks of E/H x E/H)
            + 4 * E * E // H        # recurrent kernel (H, 4 * E/H, E/H)
            + 4 * E                 # gate biases
            + E                     # group norm
            + E                     # ffn pre-norm
            + 3 * Fi * E)           # gated ffn: proj_up (2 Fi x E) and proj_down (E x Fi)


def direction_model_params(n_features: int, E: int, H: int, num_blocks: int, n_slstm: int,
                           proj_factor: float = 2.0, n_timeframes: int = 1, fusion: str = "concat") -> int:
    """Exact parameters of a :class:`models.DirectionModel` (``n_timeframes`` 1) or of a
    :class:`models.multi.MultiTimeframeModel` (one encoder per timeframe and its fusion layer)."""
    n_m = int(num_blocks) - int(n_slstm)
    encoder = (n_features * E + E                       # input projection
               + n_m * mlstm_block_params(E, H, proj_factor)
               + n_slstm * slstm_block_params(E, H)
               + E)                                     # post-blocks norm
    fusion_params = 0
    if n_timeframes > 1:   # Linear(kE -> E) | attention
        fusion_params = n_timeframes * E * E + E if fusion == "concat" else 4 * E * E + 4 * E
    return n_timeframes * encoder + fusion_params + 3 * E + 3 + E + 1   # + class head and return head
