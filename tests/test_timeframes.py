"""Multi-timeframe inputs: closed-bar resampling, aligned features, the multi-encoder model.

Real bars from ../shared/data (the 1-minute index future and NVIDIA daily) and small synthetic
bars built here; real TA-Lib, torch and xlstm.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from evo.errors import DataError
from features.timeframes import BarClock, aligned_features, infer_clock, resample_closed, timeframe_features

NAMES = ["logret_1", "rsi_14", "ema_10", "body_range", "realvol_20"]


def _frame_equal_nan(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


def test_clock_of_the_shared_data(indexfut: pd.DataFrame, nvda: pd.DataFrame) -> None:
    """The minute file is close-labelled (09:01 .. 22:00 for a 09:00-22:00 session); daily dates
    are bar opens, Monday to Friday."""
    minute = infer_clock(indexfut.index)
    assert minute == BarClock(60, "close", 5)
    assert minute.multipliers() == (1, 5, 15, 60)
    daily = infer_clock(nvda.index)
    assert daily == BarClock(86400, "open", 5)
    assert daily.multipliers() == (1, 5)
    assert BarClock.from_dict(minute.to_dict()) == minute
    with pytest.raises(DataError):
        resample_closed(nvda.iloc[:50], 15, daily)


@pytest.mark.parametrize("m", [5, 15, 60])
def test_minute_truncation_never_changes_an_aligned_value(indexfut: pd.DataFrame, m: int) -> None:
    """Every aligned value at t is unchanged when all base bars after t are deleted, with cuts
    inside periods, at period ends and across the overnight gap."""
    bars = indexfut.iloc[:3000]
    clock = infer_clock(indexfut.index)
    full = aligned_features(bars, m, clock, NAMES).to_numpy()
    r_full = resample_closed(bars, m, clock)
    assert (np.diff(r_full.visible) >= 0).all() and (r_full.visible < r_full.group + 1).all()
    cuts = [37, 781, 782, 783, 1234, 2999, int(np.flatnonzero(np.diff(bars.index) > pd.Timedelta(hours=1))[0]) + 1]
    for k in cuts:
        part = aligned_features(bars.iloc[:k], m, clock, NAMES).to_numpy()
        assert _frame_equal_nan(part, full[:k]), (m, k)
        r = resample_closed(bars.iloc[:k], m, clock)
        assert np.array_equal(r.visible, r_full.visible[:k])
    assert np.isfinite(full[-1]).all()


def test_daily_week_truncation_and_visibility(nvda: pd.DataFrame) -> None:
    """x5 on daily data is the calendar week: visible from the Friday close that ends it (or the
    next week's first bar after a Friday holiday), never mid-week; truncation changes nothing."""
    bars = nvda.iloc[:700]
    clock = infer_clock(nvda.index)
    full = aligned_features(bars, 5, clock, NAMES).to_numpy()
    for k in (3, 101, 102, 350, 699):
        assert _frame_equal_nan(aligned_features(bars.iloc[:k], 5, clock, NAMES).to_numpy(), full[:k])
    r = resample_closed(bars, 5, clock)
    week = bars.index.to_period("W-SUN")
    for t in range(len(bars)):
        g = r.visible[t]
        if g < 0:
            continue
        last_bar = bars.index.get_loc(r.bars.index[g])
        assert last_bar <= t
        assert week[last_bar] < week[t] or bars.index[t].day_of_week == 4  # same week only at Friday's close
    fridays = np.flatnonzero(bars.index.day_of_week == 4)
    assert (r.visible[fridays] == r.group[fridays]).all()


def _minute_bars(times: list[str], closes: list[float]) -> pd.DataFrame:
    c = np.asarray(closes, dtype=np.float64)
    return pd.DataFrame({"open": c, "high": c + 1, "low": c - 1, "close": c, "volume": np.ones_like(c)},
                        index=pd.DatetimeIndex(pd.to_datetime(times), name="time"))


def test_a_partly_formed_bar_is_never_used() -> None:
    """Close-labelled minute bars: at 10:37 the visible hour is 09:00-10:00; the hour 10:00-11:00
    becomes visible with the 11:00 bar, or, when its last bars are missing, only with the first
    bar of the next hour (not at 10:58, which does not end it)."""
    times = pd.date_range("2006-01-02 09:01", "2006-01-02 10:58", freq="1min").append(
        pd.date_range("2006-01-02 11:05", "2006-01-02 12:00", freq="1min"))
    closes = np.arange(len(times), dtype=np.float64) + 100.0
    bars = _minute_bars(list(times.astype(str)), list(closes))
    clock = BarClock(60, "close")
    r = resample_closed(bars, 60, clock)
    at = {t: int(bars.index.get_loc(pd.Timestamp(f"2006-01-02 {t}"))) for t in ("09:59", "10:00", "10:37", "10:58",
                                                                             "11:05", "12:00")}
    assert r.visible[at["09:59"]] == -1
    assert r.visible[at["10:00"]] == 0 and r.bars["close"].iloc[0] == bars["close"].iloc[at["10:00"]]
    assert r.visible[at["10:37"]] == 0
    assert r.visible[at["10:58"]] == 0                     # 10:00-11:00 has not ended at 10:58's close
    assert r.visible[at["11:05"]] == 1                     # a later hour's bar has arrived
    assert r.bars["close"].iloc[1] == bars["close"].iloc[at["10:58"]]
    assert r.visible[at["12:00"]] == 2
    assert r.bars["high"].iloc[0] == bars["high"].iloc[: at["10:00"] + 1].max()
    assert r.bars["volume"].iloc[0] == at["10:00"] + 1
    # Open labels cut the same clock one bar later: the 09:59 bar (09:59-10:00) closes the hour.
    open_r = resample_closed(bars, 60, BarClock(60, "open"))
    assert open_r.visible[at["09:59"]] == 0 and open_r.visible[at["10:00"]] == 0


def test_aligned_feature_is_the_last_closed_periods_row(indexfut: pd.DataFrame) -> None:
    """logret_1@x15 at base bar t is the log return between the last two closed 15-minute bars."""
    bars = indexfut.iloc[:1500]
    clock = infer_clock(indexfut.index)
    feats, visible = timeframe_features(bars, 15, clock, ["logret_1"])
    aligned = aligned_features(bars, 15, clock, ["logret_1"])
    assert list(aligned.columns) == ["logret_1@x15"]
    r = resample_closed(bars, 15, clock)
    closes = r.bars["close"].to_numpy()
    for t in (100, 431, 432, 1499):
        g = visible[t]
        assert aligned.iloc[t, 0] == pytest.approx(np.log(closes[g] / closes[g - 1]))
        assert aligned.iloc[t, 0] == feats.iloc[g, 0]


# ------------------------------------------------------------------------------ the multi model


def _base_cfg(**kw):
    from models import ModelConfig

    args = dict(n_features=3, embedding_dim=8, num_blocks=2, num_heads=2, slstm_at=(1,), dropout=0.0, seq_len=6)
    return ModelConfig(**{**args, **kw})


@pytest.mark.parametrize("fusion", ["concat", "attention"])
def test_multi_model_shapes_and_each_encoder_reads_its_timeframe(fusion: str) -> None:
    from models.multi import MultiConfig, MultiTimeframeModel, build_model

    cfg = MultiConfig(_base_cfg(), (1, 5, 15), fusion)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert isinstance(model, MultiTimeframeModel) and len(model.encoders) == 3
    x = torch.randn(4, 6, 9)
    logits, ret = model(x)
    assert logits.shape == (4, 3) and ret.shape == (4,)
    for i in range(3):  # every timeframe's columns reach the output
        y = x.clone()
        y[:, :, 3 * i: 3 * i + 3] += 1.0
        assert not torch.allclose(model(y)[0], logits)
    with pytest.raises(ValueError):
        model(torch.randn(4, 6, 3))


def test_multi_config_is_validated_and_round_trips() -> None:
    from evo.errors import ConfigError
    from models.multi import MultiConfig, config_from_dict

    cfg = MultiConfig(_base_cfg(), [1, 60], "attention")
    assert cfg.timeframes == (1, 60) and cfg.n_features == 6 and cfg.seq_len == 6
    assert config_from_dict(cfg.to_dict()) == cfg
    assert config_from_dict(_base_cfg().to_dict()) == _base_cfg()
    for bad in ((1,), (5, 1), (5, 15), (1, 5, 5)):
        with pytest.raises(ConfigError):
            MultiConfig(_base_cfg(), bad)
    with pytest.raises(ConfigError):
        MultiConfig(_base_cfg(), (1, 5), "sum")


def test_one_timeframe_builds_todays_direction_model() -> None:
    """A plain ModelConfig is today's DirectionModel, weight for weight (same seed, same tensors)."""
    from models import DirectionModel
    from models.multi import build_model

    torch.manual_seed(3)
    built = build_model(_base_cfg())
    torch.manual_seed(3)
    today = DirectionModel(_base_cfg())
    assert type(built) is DirectionModel
    a, b = built.state_dict(), today.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("fusion", ["concat", "attention"])
def test_multi_model_export_round_trip(fusion: str) -> None:
    from evo.errors import BundleError
    from models import state_dict_for_export
    from models.multi import MultiConfig, build_model, load_model

    cfg = MultiConfig(_base_cfg(num_heads=2, slstm_at=(0, 1)), (1, 5), fusion)
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    tensors = state_dict_for_export(model)
    loaded = load_model(cfg, tensors)
    x = torch.randn(5, 6, 6)
    with torch.no_grad():
        assert torch.allclose(model(x)[0], loaded(x)[0], atol=1e-6)
    bad = dict(tensors)
    bad.pop(next(iter(bad)))
    with pytest.raises(BundleError):
        load_model(cfg, bad)


def test_multi_model_trains_through_train_model() -> None:
    from models import TrainConfig, predict_proba, train_model
    from models.multi import MultiConfig, MultiTimeframeModel

    rng = np.random.default_rng(0)
    cfg = MultiConfig(_base_cfg(slstm_at=()), (1, 5), "concat")
    X = rng.normal(size=(40, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    r = rng.normal(size=40)
    result = train_model(cfg, TrainConfig(lr=1e-3, max_epochs=1, patience=1, batch_size=16), (X, y, r), (X, y, r))
    assert isinstance(result.model, MultiTimeframeModel)
    p = predict_proba(result.model, X)
    assert p.shape == (40, 3) and np.allclose(p.sum(axis=1), 1.0)


# ------------------------------------------------------------------- a multi-timeframe genome, end to end

MULTI = {
    "search": {"embedding_dim": [8], "num_blocks": [1, 1], "num_heads": [2], "seq_len": [8], "horizon": [2],
               "threshold": [0.34, 0.5], "max_features_a": 4, "max_features_b": 3,
               "timeframes": [1, 5, 60], "fusion": ["concat", "attention"], "regime": ["none", "features", "gate"]},
    "train": {"max_epochs": 1, "patience": 1, "max_train_windows": 200, "lr_trials": 1, "lr_trial_epochs": 1},
    "evaluate": {"folds": 2, "min_trades": 0, "risk_trials": 6, "test_fraction": 0.1, "holdout_fraction": 0.0},
}


def _multi_genome():
    from evo.genome import Genome, ModelGenes

    return Genome(
        model_a=ModelGenes(("body_range", "gap", "close_pos"), 8, 1, 2, (), 0.0, timeframes=(1, 5, 60),
                           fusion="attention", regime="features"),
        model_b=ModelGenes(("rsi_14", "logret_5"), 8, 1, 2, (0,), 0.0, timeframes=(1, 5), fusion="concat",
                           regime="gate"),
        seq_len=8, horizon=2, consensus="weighted", threshold=0.36,
    )


@pytest.fixture(scope="module")
def minute_ds(indexfut: pd.DataFrame):
    from evo.config import budget_from_dict
    from evo.evaluation.dataset import prepare_dataset

    budget = budget_from_dict("multi", MULTI)
    return prepare_dataset(indexfut.iloc[:7000], "indexfut", budget), budget


def test_dataset_carries_the_timeframes(minute_ds) -> None:
    """The data's timeframes within the space; first_bar waits for the hour's warm-up and window."""
    ds, _ = minute_ds
    assert ds.pools.timeframes == (1, 5, 60) and sorted(ds.frames) == [5, 60]
    rows_needed = max(ds.warmup[n] for n in ds.pools.a + ds.pools.b) + 8
    assert ds.frames[60].visible[ds.first_bar] >= rows_needed - 1
    assert ds.frames[60].visible[ds.first_bar - 1] < rows_needed - 1


def test_multi_timeframe_genome_trains_predicts_and_does_not_look_ahead(minute_ds, indexfut: pd.DataFrame) -> None:
    """A genome with a 3-timeframe attention model (regime inputs) and a gated 2-timeframe model
    trains and trades walk-forward on the minute data; its predictions at bar t are unchanged
    when every bar after t is changed."""
    from evo.evaluation.dataset import prepare_dataset
    from evo.evaluation.evaluate import evaluate_genome, fit_model, fold_layout, predict_segment
    from models.multi import MultiTimeframeModel

    ds, budget = minute_ds
    g = _multi_genome()
    result = evaluate_genome(g, ds, budget, seed=0)
    assert np.isfinite(result.sharpe) and result.test_bars > 0
    assert set(result.risk) >= {"threshold", "weight"}
    fold = fold_layout(ds, budget)[0]
    run, _, _ = fit_model(g.model_a, g, ds, fold.train, fold.val, budget, lr=1e-3, seed=0, device="cpu")
    assert isinstance(run.model, MultiTimeframeModel) and run.regime is not None
    assert run.scaler.n_features == 3 * (3 + 2)
    t = int(fold.test[0]) + 37
    ends = np.arange(t - 20, t + 1)
    p, _ = predict_segment(run, ds, ends, g.seq_len, g.horizon)
    changed = indexfut.iloc[:7000].copy()
    factor = np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, len(changed) - t - 1)))
    changed.iloc[t + 1:, :4] *= factor[:, None]
    ds2 = prepare_dataset(changed, "changed", budget)
    p2, _ = predict_segment(run, ds2, ends, g.seq_len, g.horizon)
    assert np.array_equal(p, p2)


@pytest.mark.parametrize("fusion, regime", [("concat", "none"), ("attention", "features")])
def test_parameter_count_covers_every_encoder(fusion: str, regime: str) -> None:
    """evo.search.hardware.count_params equals the built multi-timeframe model's parameters."""
    from evo.genome import ModelGenes, model_config
    from evo.search.hardware import count_params
    from models.multi import build_model

    genes = ModelGenes(("a", "b", "c"), 16, 2, 2, (1,), 0.0, timeframes=(1, 5, 15), fusion=fusion, regime=regime)
    model = build_model(model_config(genes, 8, "cpu"))
    assert count_params(genes) == sum(p.numel() for p in model.parameters())
    single = ModelGenes(("a", "b", "c"), 16, 2, 2, (1,), 0.0)
    assert count_params(genes) > 3 * count_params(single) - 3 * (4 * 16 + 4)
