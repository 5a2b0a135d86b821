"""Train one direction model; predict class probabilities.

One readable loop in the spirit of nanoGPT's ``train.py``: seed, build, then epochs of shuffled
mini-batches (fused AdamW, foreach gradient clipping), a validation pass after each epoch that drives
``ReduceLROnPlateau`` and early stopping, and finally the best epoch's weights restored.

The loss per window is a class-weighted cross-entropy on down/flat/up (weights from the training
label frequencies, so a flat majority cannot win by itself) plus ``return_loss_weight`` times a
Huber loss on the forward log return divided by its training std. The same loss, with the same
weights, on the validation windows picks the epoch. Validation windows are given by the caller
(they lie before the test period) and are never shuffled or trained on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from evo.errors import ConfigError, GenomeError
from models.config import ModelConfig, TrainConfig
from models.fast_mlstm import fast_forward
from models.multi import build_model
from models.network import N_CLASSES, DirectionModel

__all__ = ["Split", "TrainResult", "predict_proba", "train_model"]

log = logging.getLogger(__name__)

Split = tuple[np.ndarray, np.ndarray, np.ndarray]  # X (N,S,F) float32, y (N,) int64, r (N,) float

LR_DECAY = 0.5  # ReduceLROnPlateau factor
EVAL_BATCH = 1024  # windows per forward pass when evaluating (no gradients kept)


@dataclass
class TrainResult:
    """What :func:`train_model` returns.

    model:         the trained model, best validation epoch's weights, in eval mode.
    best_val_loss: validation loss of that epoch.
    best_epoch:    its index (0-based).
    epochs_run:    epochs actually trained (early stopping or pruning may cut ``max_epochs``).
    history:       one ``(train_loss, val_loss)`` per epoch run.
    return_scale:  training std of the forward log return; ``model(x)[1] * return_scale`` is a
                   log return.
    pruned:        True if the ``on_epoch`` callback stopped training.
    """

    model: DirectionModel
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    history: list[tuple[float, float]] = field(default_factory=list)
    return_scale: float = 1.0
    pruned: bool = False


def _check_split(name: str, split: Split, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        X, y, r = split
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a tuple (X, y, r)") from None
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    r = np.asarray(r, dtype=np.float32)
    if X.ndim != 3 or X.shape[1:] != (cfg.seq_len, cfg.n_features):
        raise ValueError(f"{name} X must be (N, {cfg.seq_len}, {cfg.n_features}) windows, got {X.shape}")
    if y.shape != (X.shape[0],) or r.shape != (X.shape[0],):
        raise ValueError(f"{name}: X {X.shape}, y {y.shape} and r {r.shape} disagree on N")
    if X.shape[0] == 0:
        raise GenomeError(f"{name} split has no windows: the segment is shorter than the window")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= N_CLASSES:
        raise ValueError(f"{name} y must hold integer classes 0, 1, 2 (see models.make_labels)")
    if not np.isfinite(X).all():
        raise GenomeError(f"{name} windows contain NaN or inf: scale them with Scaler.transform first")
    if not np.isfinite(r).all():
        raise GenomeError(f"{name} forward returns contain NaN or inf")
    return X, y.astype(np.int64), r


def _class_weights(y: np.ndarray) -> np.ndarray:
    """Balanced weights ``N / (3 * count)``; a class absent from training gets the largest one."""
    counts = np.bincount(y, minlength=N_CLASSES).astype(np.float64)
    present = counts > 0
    weights = np.zeros(N_CLASSES)
    weights[present] = counts.sum() / (N_CLASSES * counts[present])
    weights[~present] = weights[present].max()
    return weights.astype(np.float32)


def _loss_terms(logits, ret, y, r, class_w, rw):
    """Summed class loss, summed weights and summed return loss of one batch (for exact means)."""
    ce_sum = F.cross_entropy(logits.to(class_w.dtype), y, weight=class_w, reduction="sum")  # bf16 (amp) -> float32
    w_sum = class_w[y].sum()
    huber_sum = F.huber_loss(ret.to(r.dtype), r, reduction="sum", delta=1.0)
    return ce_sum, w_sum, huber_sum * rw


@torch.no_grad()
def _evaluate(model, X, y, r, class_w, rw, amp) -> float:
    model.eval()
    ce, wsum, reg = 0.0, 0.0, 0.0
    for i in range(0, X.shape[0], EVAL_BATCH):
        with amp():
            logits, ret = model(X[i : i + EVAL_BATCH])
        c, w, h = _loss_terms(logits, ret, y[i : i + EVAL_BATCH], r[i : i + EVAL_BATCH], class_w, rw)
        ce, wsum, reg = ce + c.item(), wsum + w.item(), reg + h.item()
    return ce / wsum + reg / X.shape[0]


def train_model(
    cfg: ModelConfig,
    tcfg: TrainConfig,
    train: Split,
    val: Split,
    *,
    on_epoch: Callable[[int, float], bool] | None = None,
) -> TrainResult:
    """Train a :class:`DirectionModel` on ``train`` and pick its epoch on ``val``.

    ``train`` and ``val`` are ``(X, y, r)``: scaled windows (N, seq_len, F) float32 from
    :func:`models.make_windows`, classes (N,) int64 from :func:`models.make_labels` and forward
    log returns (N,) from :func:`models.forward_returns`. ``on_epoch(epoch, val_loss)`` is called
    after every epoch (0-based); returning True stops training (Optuna pruning).

    Deterministic: same inputs, configs and seed give the same weights (on one device and thread
    count). Raises ``GenomeError`` on empty splits, non-finite inputs or a NaN/inf loss.
    """
    Xtr, ytr, rtr = _check_split("train", train, cfg)
    Xva, yva, rva = _check_split("val", val, cfg)
    device = torch.device(tcfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("TrainConfig.device is 'cuda' but CUDA is not available; use device='cpu'")
    # Seeding touches torch's global RNG (weight init, dropout): fork it so callers' state survives.
    rng_devices = []
    if device.type == "cuda":
        rng_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=rng_devices):
        return _train(cfg, tcfg, (Xtr, ytr, rtr), (Xva, yva, rva), device, on_epoch)


def _train(cfg, tcfg, train, val, device, on_epoch) -> TrainResult:
    """The loop itself; inputs already checked, torch's global RNG already forked."""
    (Xtr, ytr, rtr), (Xva, yva, rva) = train, val
    # bfloat16 autocast on CUDA only, and only if asked for (tcfg.amp); the CPU trains in float32.
    use_amp = device.type == "cuda" and tcfg.amp
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else nullcontext

    # --- data: returns in units of their training std, so the Huber loss has a fixed scale
    return_scale = float(np.std(rtr))
    if not (math.isfinite(return_scale) and return_scale > 0):
        return_scale = 1.0
    # float32 windows in torch's default dtype (float32, unless a test asks for float64)
    dtype = torch.get_default_dtype()
    Xtr_t, ytr_t = torch.from_numpy(Xtr).to(device, dtype), torch.from_numpy(ytr).to(device)
    rtr_t = torch.from_numpy(rtr / return_scale).to(device, dtype)
    Xva_t, yva_t = torch.from_numpy(Xva).to(device, dtype), torch.from_numpy(yva).to(device)
    rva_t = torch.from_numpy(rva / return_scale).to(device, dtype)
    class_w = torch.from_numpy(_class_weights(ytr)).to(device, dtype)
    rw = float(tcfg.return_loss_weight)

    # --- model and optimiser: weight decay on matrices only (nanoGPT's rule)
    torch.manual_seed(tcfg.seed)
    shuffle = torch.Generator().manual_seed(tcfg.seed)
    model = build_model(cfg).to(device)  # DirectionModel, or models.multi's for a MultiConfig
    forward = fast_forward(model, tcfg.fast_path)  # models.fast_mlstm on the CPU: same parameters
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tcfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tcfg.lr,
        fused=True,  # one kernel per update on CPU and CUDA (torch >= 2.13); same update as the for-loop
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=LR_DECAY, patience=max(1, tcfg.patience // 2)
    )

    params = [p for p in model.parameters() if p.requires_grad]
    n = Xtr_t.shape[0]
    best_val, best_epoch, best_state = math.inf, -1, None
    history: list[tuple[float, float]] = []
    bad_epochs, pruned = 0, False
    for epoch in range(tcfg.max_epochs):
        # train one epoch on shuffled mini-batches
        model.train()
        order = torch.randperm(n, generator=shuffle).to(device)
        train_sum = 0.0
        for i in range(0, n, tcfg.batch_size):
            idx = order[i : i + tcfg.batch_size]
            with amp():
                logits, ret = forward(Xtr_t[idx])
            ce, wsum, reg = _loss_terms(logits, ret, ytr_t[idx], rtr_t[idx], class_w, rw)
            loss = ce / wsum + reg / idx.shape[0]
            if not torch.isfinite(loss):
                raise GenomeError(f"NaN loss in epoch {epoch} (lr={tcfg.lr:g}): the model diverged")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, tcfg.grad_clip, foreach=True)
            optimizer.step()
            train_sum += loss.item() * idx.shape[0]

        # validate, adapt the learning rate, keep the best weights
        val_loss = _evaluate(forward, Xva_t, yva_t, rva_t, class_w, rw, amp)
        if not math.isfinite(val_loss):
            raise GenomeError(f"NaN validation loss in epoch {epoch} (lr={tcfg.lr:g}): the model diverged")
        history.append((train_sum / n, val_loss))
        scheduler.step(val_loss)
        if val_loss < best_val:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        log.debug("epoch %d train %.4f val %.4f", epoch, history[-1][0], val_loss)
        if on_epoch is not None and on_epoch(epoch, val_loss):
            pruned = True
            break
        if bad_epochs >= tcfg.patience:
            break

    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        best_val_loss=best_val,
        best_epoch=best_epoch,
        epochs_run=len(history),
        history=history,
        return_scale=return_scale,
        pruned=pruned,
    )


def predict_proba(model: DirectionModel, X: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, 3) float64 (down, flat, up) for scaled windows ``X`` (N, S, F).

    Runs in eval mode without gradients (the model's train/eval mode is restored after);
    deterministic for a given model and ``X``.
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3:
        raise ValueError(f"predict_proba needs windows of shape (N, S, F), got {X.shape}")
    if batch_size < 1:
        raise ValueError(f"predict_proba: batch_size must be >= 1, got {batch_size}")
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    forward = fast_forward(model)  # models.fast_mlstm on the CPU unless EVO_FAST_PATH=0
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for i in range(0, X.shape[0], batch_size):
                logits, _ = forward(torch.from_numpy(X[i : i + batch_size]).to(device, dtype))
                out.append(torch.softmax(logits.double(), dim=-1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.empty((0, N_CLASSES), dtype=np.float64)
