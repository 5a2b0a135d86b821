"""models.batched: K models of one architecture trained as one stacked model equal each trained alone.

Real torch and xlstm, real NVDA bars, tiny models. Every member gets its own data (windows of
different spans and lengths, as a genome's walk-forward folds do), its own seed and learning rate;
each is compared with ``models.train.train_model`` on the same inputs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import models.batched as mb
from evo.errors import GenomeError
from models import (
    ModelConfig,
    TrainConfig,
    fit_dead_zone,
    fit_scaler,
    forward_returns,
    make_labels,
    make_windows,
    predict_proba,
    train_model,
)
from models.multi import MultiConfig

SEQ_LEN = 8
# (start of training windows, training windows, validation windows): unequal lengths, so members
# run out of batches at different steps (batch 64: 3, 4 and 2 batches, the last ones partial)
SPANS = [(0, 150, 60), (100, 220, 70), (300, 100, 50)]


@pytest.fixture(scope="module")
def bars(nvda):
    """Three causal features of NVDA's daily bars (log return, log(high/low), log(close/open)) and
    the same over 5-bar spans (a second 'timeframe' for the multi-timeframe models); labels and
    forward returns one bar ahead."""
    b = nvda.iloc[:900]
    o, h, lo, c = (b[k].to_numpy() for k in ("open", "high", "low", "close"))
    f1 = np.column_stack([np.concatenate([[0.0], np.diff(np.log(c))]), np.log(h / lo), np.log(c / o)])
    f5 = np.vstack([np.zeros((4, 3)), np.lib.stride_tricks.sliding_window_view(f1, 5, axis=0).mean(-1)])
    ends = np.arange(SEQ_LEN, len(c) - 1)
    return np.hstack([f1, f5]), c, ends


def _splits(bars, n_features: int):
    """One (train, val) pair per SPANS entry: scaler and dead zone fitted on its training rows."""
    feats, close, ends = bars
    feats = feats[:, :n_features]
    out = []
    for start, n_train, n_val in SPANS:
        e_tr, e_va = ends[start:start + n_train], ends[start + n_train:start + n_train + n_val]
        r_tr, r_va = forward_returns(close, e_tr, 1), forward_returns(close, e_va, 1)
        zone = fit_dead_zone(r_tr)
        scaler = fit_scaler(feats[: e_tr[-1] + 1])
        X = scaler.transform(feats)
        out.append(((make_windows(X, e_tr, SEQ_LEN), make_labels(r_tr, zone), r_tr),
                    (make_windows(X, e_va, SEQ_LEN), make_labels(r_va, zone), r_va)))
    return out


def _tcfgs(**kw) -> list[TrainConfig]:
    base = TrainConfig(lr=1e-3, max_epochs=3, patience=3, batch_size=64, **kw)
    return [dataclasses.replace(base, lr=lr, seed=seed) for lr, seed in ((1e-3, 0), (3e-3, 1), (2e-3, 2))]


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


CONFIGS = {
    "mlstm": ModelConfig(3, 16, 2, 2, (), 0.2, SEQ_LEN),
    "mixed": ModelConfig(3, 16, 3, 2, (1,), 0.2, SEQ_LEN),
    "slstm": ModelConfig(3, 8, 2, 2, (0, 1), 0.1, SEQ_LEN),
    "multi-concat": MultiConfig(ModelConfig(3, 16, 2, 2, (1,), 0.2, SEQ_LEN), (1, 5), "concat"),
    "multi-attention": MultiConfig(ModelConfig(3, 16, 1, 2, (), 0.2, SEQ_LEN), (1, 5), "attention"),
}


@pytest.mark.parametrize("name,group", [(name, 0) for name in CONFIGS] + [("mixed", 2), ("multi-concat", 1)])
def test_each_member_equals_training_it_alone_float64(bars, float64, monkeypatch, name, group):
    """float64, dropout > 0 (each member draws its single model's masks), three members with their
    own data, lengths, seeds and learning rates: weights, loss histories, chosen epochs and
    predictions equal train_model's to 1e-9 (measured: ~1e-12, summation order only). ``group``:
    members per forward/backward pass (0: all three, as these tiny models get by default)."""
    cfg = CONFIGS[name]
    if group:
        monkeypatch.setattr(mb, "_group_size", lambda spec, batch: group)
    splits = _splits(bars, cfg.n_features)
    tcfgs = _tcfgs()
    batched = mb.train_models(cfg, tcfgs, [s[0] for s in splits], [s[1] for s in splits])
    for tcfg, (train, val), res in zip(tcfgs, splits, batched):
        alone = train_model(cfg, tcfg, train, val)
        wa, wb = _weights(alone.model), _weights(res.model)
        assert wa.keys() == wb.keys()
        assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-9
        assert (res.best_epoch, res.epochs_run, res.pruned) == (alone.best_epoch, alone.epochs_run, alone.pruned)
        np.testing.assert_allclose(np.array(res.history), np.array(alone.history), rtol=0, atol=1e-9)
        assert res.best_val_loss == pytest.approx(alone.best_val_loss, abs=1e-9)
        assert res.return_scale == alone.return_scale
        np.testing.assert_allclose(predict_proba(res.model, val[0]), predict_proba(alone.model, val[0]), atol=1e-9)


def test_float32_members_match_within_adamw_rounding(bars):
    """float32, mixed mLSTM/sLSTM stack: the criterion of test_fast_mlstm's training test (AdamW
    turns a 1e-7 rounding difference of a near-zero gradient into a step of up to 2 lr): every
    weight within lr x steps taken, the trained displacement ``w - w0`` the same to 1 % in L2, loss
    histories to 1e-5 relative, probabilities to 1e-3."""
    cfg = CONFIGS["mixed"]
    splits = _splits(bars, cfg.n_features)
    tcfgs = _tcfgs()
    batched = mb.train_models(cfg, tcfgs, [s[0] for s in splits], [s[1] for s in splits])
    for tcfg, (train, val), res in zip(tcfgs, splits, batched):
        alone = train_model(cfg, tcfg, train, val)
        wa, wb = _weights(alone.model), _weights(res.model)
        torch.manual_seed(tcfg.seed)
        w0 = _weights(mb.build_model(cfg))
        steps = (res.best_epoch + 1) * -(-len(train[0]) // tcfg.batch_size)
        assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= tcfg.lr * steps
        moved = sum(float((wa[k] - w0[k]).square().sum()) for k in wa) ** 0.5
        assert moved > 1e-2
        assert sum(float((wa[k] - wb[k]).square().sum()) for k in wa) ** 0.5 <= 1e-2 * moved
        np.testing.assert_allclose(np.array(res.history), np.array(alone.history), rtol=1e-5)
        np.testing.assert_allclose(predict_proba(res.model, val[0]), predict_proba(alone.model, val[0]), atol=1e-3)


def test_a_stopped_member_keeps_its_best_epoch_while_the_others_train_on(bars, float64):
    """Member 0 (lr 1e-2, patience 1) stops early (after epoch 1: val 1.163 then 1.224); its weights
    are those of its best epoch, i.e. of training it alone for best_epoch + 1 epochs; the others run
    all their epochs, unaffected."""
    cfg = CONFIGS["mixed"]
    splits = _splits(bars, cfg.n_features)
    tcfgs = [dataclasses.replace(t, max_epochs=6, patience=6) for t in _tcfgs()]
    tcfgs[0] = dataclasses.replace(tcfgs[0], lr=1e-2, patience=1)
    seen: list[tuple[int, int]] = []
    batched = mb.train_models(cfg, tcfgs, [s[0] for s in splits], [s[1] for s in splits],
                              on_epoch=lambda epoch, losses: seen.extend((k, epoch) for k in losses))
    first = batched[0]
    assert first.epochs_run < 6 and first.best_epoch == first.epochs_run - 2
    assert all(r.epochs_run == 6 for r in batched[1:])
    assert [e for k, e in seen if k == 0] == list(range(first.epochs_run))  # no epoch after it stopped
    frozen = train_model(cfg, dataclasses.replace(tcfgs[0], max_epochs=first.best_epoch + 1), *splits[0])
    wa, wb = _weights(frozen.model), _weights(first.model)
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-9
    for tcfg, (train, val), res in list(zip(tcfgs, splits, batched))[1:]:
        alone = train_model(cfg, tcfg, train, val)
        wa, wb = _weights(alone.model), _weights(res.model)
        assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-9


def test_a_member_without_a_batch_is_not_stepped(bars, float64):
    """A 40-window member (one batch an epoch) beside a 300-window one (five): for the four steps it
    has no batch, AdamW must neither decay its weights nor move its moments (weight decay 0.5 would
    show it), so it equals training alone."""
    cfg = CONFIGS["mlstm"]
    (tr_a, va_a), (tr_b, va_b), _ = _splits(bars, cfg.n_features)
    small = tuple(a[:40] for a in tr_a)
    tcfgs = [TrainConfig(lr=1e-3, max_epochs=2, patience=2, batch_size=64, weight_decay=0.5, seed=s) for s in (0, 1)]
    batched = mb.train_models(cfg, tcfgs, [small, tr_b], [va_a, va_b])
    alone = train_model(cfg, tcfgs[0], small, va_a)
    wa, wb = _weights(alone.model), _weights(batched[0].model)
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-9


def test_members_with_their_own_batch_size_epochs_and_clip(bars, float64):
    """Batch sizes 32, 64 and 48 (padded to one batch shape), 2, 4 and 3 epochs, clips 0.5, 1 and 2,
    weight decay 0, 0.01 and 0.1: each member still equals training it alone."""
    cfg = CONFIGS["mixed"]
    splits = _splits(bars, cfg.n_features)
    tcfgs = [dataclasses.replace(t, batch_size=b, max_epochs=e, patience=e, grad_clip=c, weight_decay=w)
             for t, b, e, c, w in zip(_tcfgs(), (32, 64, 48), (2, 4, 3), (0.5, 1.0, 2.0), (0.0, 0.01, 0.1))]
    batched = mb.train_models(cfg, tcfgs, [s[0] for s in splits], [s[1] for s in splits])
    for tcfg, (train, val), res in zip(tcfgs, splits, batched):
        alone = train_model(cfg, tcfg, train, val)
        wa, wb = _weights(alone.model), _weights(res.model)
        assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-9
        assert res.epochs_run == alone.epochs_run == tcfg.max_epochs


def test_pruning_and_a_diverging_member(bars):
    """``on_epoch`` naming a member stops it (``pruned``); a member whose loss turns NaN
    becomes its GenomeError with ``return_errors`` (the others train on) and raises without it."""
    cfg = CONFIGS["mlstm"]
    splits = _splits(bars, cfg.n_features)
    trains, vals = [s[0] for s in splits], [s[1] for s in splits]
    calls = []
    res = mb.train_models(cfg, _tcfgs(), trains, vals, on_epoch=lambda epoch, losses: calls.append(dict(losses)) or [1])
    assert [sorted(c) for c in calls] == [[0, 1, 2], [0, 2], [0, 2]]  # all members' losses of an epoch at once
    assert res[1].pruned and res[1].epochs_run == 1
    assert not res[0].pruned and res[0].epochs_run == 3
    huge = (trains[2][0] * 1e30, trains[2][1], trains[2][2])  # finite inputs whose products overflow
    out = mb.train_models(cfg, _tcfgs(), [trains[0], trains[1], huge], vals, return_errors=True)
    assert isinstance(out[2], GenomeError) and "NaN" in str(out[2])
    alone = train_model(cfg, _tcfgs()[0], trains[0], vals[0])
    np.testing.assert_allclose(np.array(out[0].history), np.array(alone.history), rtol=1e-5)
    with pytest.raises(GenomeError):
        mb.train_models(cfg, _tcfgs(), [trains[0], trains[1], huge], vals)


def test_env_switch_trains_one_at_a_time(bars, monkeypatch):
    """EVO_BATCHED=0: train_model per member, bit for bit."""
    cfg = CONFIGS["mlstm"]
    splits = _splits(bars, cfg.n_features)[:2]
    tcfgs = _tcfgs()[:2]
    monkeypatch.setenv(mb.ENV_SWITCH, "0")
    assert not mb.batched_enabled()
    res = mb.train_models(cfg, tcfgs, [s[0] for s in splits], [s[1] for s in splits])
    for tcfg, (train, val), r in zip(tcfgs, splits, res):
        wa, wb = _weights(train_model(cfg, tcfg, train, val).model), _weights(r.model)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bad_inputs_are_rejected(bars):
    cfg = CONFIGS["mlstm"]
    (train, val), *_ = _splits(bars, cfg.n_features)
    with pytest.raises(ValueError):
        mb.train_models(cfg, _tcfgs(), [train], [val])
    with pytest.raises(ValueError):
        mb.train_models(cfg, _tcfgs()[:2], [train, (train[0][:, :, :2], train[1], train[2])], [val, val])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_members_train_like_the_cpu(bars):
    """Same code on CUDA (float32, no autocast): the members' losses follow the CPU run's (dropout 0,
    so the masks do not differ)."""
    cfg = dataclasses.replace(CONFIGS["mixed"], dropout=0.0)
    splits = _splits(bars, cfg.n_features)
    tcfgs = _tcfgs()
    cpu = mb.train_models(cfg, tcfgs, [s[0] for s in splits], [s[1] for s in splits])
    gpu = mb.train_models(cfg, [dataclasses.replace(t, device="cuda", amp=False) for t in tcfgs],
                          [s[0] for s in splits], [s[1] for s in splits])
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(np.array(a.history), np.array(b.history), rtol=1e-3)


@pytest.mark.parametrize("name", ["mixed", "mlstm"])
def test_tune_and_train_equals_the_study_then_each_fold(bars, float64, name):
    """models.tuning.tune_and_train (the lr trials raced as the first epochs of fold 0's final run,
    every fold started with every trial's lr, the losers stopped once the study decides; all-mLSTM:
    the race on fold 0 alone, then the other folds) gives tune_learning_rate's study (same lrs,
    values, best epochs) and lr, and train_model's final model on every fold."""
    optuna = pytest.importorskip("optuna")
    from models.tuning import tune_and_train, tune_learning_rate

    cfg = CONFIGS[name]
    splits = _splits(bars, cfg.n_features)
    trains, vals = [s[0] for s in splits], [s[1] for s in splits]
    tcfg = TrainConfig(lr=1e-3, max_epochs=4, patience=2, batch_size=64)
    storage = optuna.storages.InMemoryStorage()
    lr, results = tune_and_train(cfg, tcfg, trains, vals, n_trials=2, trial_epochs=2, seed=4, storage=storage,
                                 study_name="race")
    ref_lr, ref_study = tune_learning_rate(cfg, dataclasses.replace(tcfg, max_epochs=2), trains[0], vals[0],
                                           n_trials=2, seed=4)
    assert lr == ref_lr and lr != 1e-3  # seed 4: TPE's draw (7.96e-3) beats the default trial's 1e-3
    race = optuna.load_study(study_name="race", storage=storage)
    assert [t.params for t in race.trials] == [t.params for t in ref_study.trials]
    assert [t.state for t in race.trials] == [t.state for t in ref_study.trials]
    assert [t.user_attrs for t in race.trials] == [t.user_attrs for t in ref_study.trials]
    np.testing.assert_allclose([t.value for t in race.trials], [t.value for t in ref_study.trials], atol=1e-9)
    assert [t.intermediate_values.keys() for t in race.trials] == [t.intermediate_values.keys()
                                                                   for t in ref_study.trials]
    for (train, val), res in zip(splits, results):
        alone = train_model(cfg, dataclasses.replace(tcfg, lr=lr), train, val)
        wa, wb = _weights(alone.model), _weights(res.model)
        assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-9
        assert (res.best_epoch, res.epochs_run) == (alone.best_epoch, alone.epochs_run)
