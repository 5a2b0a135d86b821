"""Timings of the models on this machine (nanoGPT's ``bench.py``): reports numbers, never fails.

``python -m experiments.bench.models [--threads N]`` prints one line per case:

* fwd+bwd of a batch of 64 windows x 64 bars through 4 blocks 64 wide (all mLSTM; one sLSTM
  block), against ``nn.LSTM`` stacks of the same width and of about the same parameter count;
* ``train_model`` for the GA's smallest genome (1 block, 16 wide, 16-bar windows, 2000 windows,
  3 epochs).

Timings are the best of a few repeats (the minimum is the least disturbed by other processes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from models.config import ModelConfig, TrainConfig
from models.network import DirectionModel
from models.train import train_model

__all__ = ["bench_fwd_bwd", "bench_train", "n_params"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class _LSTMNet(nn.Module):
    """Same interface as DirectionModel: Linear(F->H) -> nn.LSTM -> last step -> heads."""

    def __init__(self, n_features: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.input_proj = nn.Linear(n_features, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
        self.head_cls = nn.Linear(hidden, 3)
        self.head_ret = nn.Linear(hidden, 1)

    def forward(self, x):
        h = self.lstm(self.input_proj(x))[0][:, -1]
        return self.head_cls(h), self.head_ret(h).squeeze(-1)


def bench_fwd_bwd(model: nn.Module, x: torch.Tensor, repeats: int = 5, warmup: int = 2) -> float:
    """Best wall time in seconds of one forward + backward pass of ``model`` on ``x``."""
    model.train()
    best = float("inf")
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        logits, ret = model(x)
        (logits.square().mean() + ret.square().mean()).backward()
        elapsed = time.perf_counter() - t0
        model.zero_grad(set_to_none=True)
        if i >= warmup:
            best = min(best, elapsed)
    return best


def bench_train(n_windows: int = 2000, seq_len: int = 16, n_features: int = 8, epochs: int = 3,
                slstm_at: tuple[int, ...] = (), repeats: int = 2) -> float:
    """Best wall time in seconds of ``train_model`` for a 1-block, 16-wide model (no early stop)."""
    rng = np.random.default_rng(0)
    cfg = ModelConfig(n_features=n_features, embedding_dim=16, num_blocks=1, num_heads=2,
                      slstm_at=slstm_at, dropout=0.1, seq_len=seq_len)
    tcfg = TrainConfig(lr=1e-3, max_epochs=epochs, patience=epochs, batch_size=64)

    def split(n):
        X = rng.normal(size=(n, seq_len, n_features)).astype(np.float32)
        return X, rng.integers(0, 3, n), rng.normal(0, 0.01, n)

    train, val = split(n_windows), split(n_windows // 4)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        train_model(cfg, tcfg, train, val)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, S, F, E = 64, 64, 16, 64
    x = torch.randn(B, S, F)
    cases = {
        "xLSTM 4 blocks mLSTM": DirectionModel(ModelConfig(F, E, 4, 4, (), 0.0, S)),
        "xLSTM 4 blocks, sLSTM at 1": DirectionModel(ModelConfig(F, E, 4, 4, (1,), 0.0, S)),
        "nn.LSTM 4 layers x 64": _LSTMNet(F, 64, 4),
        "nn.LSTM 4 layers x 128": _LSTMNet(F, 128, 4),
    }
    print(f"threads={args.threads}  batch {B} x {S} bars x {F} features")
    for name, model in cases.items():
        ms = 1e3 * bench_fwd_bwd(model, x)
        print(f"  {name:28s} params {n_params(model):>7d}  fwd+bwd {ms:7.1f} ms")
    for slstm_at in ((), (0,)):
        print(f"  train_model 1x16 seq 16, 2000 windows, 3 epochs, slstm_at={slstm_at}: "
              f"{bench_train(slstm_at=slstm_at):.2f} s")


if __name__ == "__main__":
    main()
