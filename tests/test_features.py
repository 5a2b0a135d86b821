"""features: the catalog's names, its look-ahead guarantee, reference values and the disk cache.

Everything runs on the real bars in ../shared/data (fixtures in conftest.py) and the real
TA-Lib, ta and numba; nothing is mocked.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib

import features
from evo.errors import DataError
from features import (
    CATALOG_VERSION,
    FeatureSpec,
    cache_key,
    catalog,
    compute_features,
    data_hash,
    has_usable_volume,
    load_or_compute,
    model_a_features,
    model_b_features,
    usable_features,
)

REQUIRED_INDICATORS = (
    "sma_20", "ema_20", "rsi_14", "atr_14", "adx_14", "plus_di_14", "minus_di_14",
    "macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9",
    "bb_upper_20_2", "bb_lower_20_2", "bb_pctb_20_2", "bb_width_20_2",
    "stoch_k_14_3", "stoch_d_14_3", "willr_14", "roc_10", "cci_20", "mfi_14", "obv",
    "vol_sma_ratio_20", "keltner_pos_20", "logret_1", "logret_5", "logret_20", "realvol_20",
    "rsi_7", "rsi_21", "sma_50", "ema_50",
)  # fmt: skip
REQUIRED_PATTERN_FEATURES = (
    "body_range", "upper_shadow", "lower_shadow", "close_pos", "gap", "range_atr_14",
    "pattern_strength", "vol_confirm", "trend_context_20",
    *(f"since_{p}" for p in ("engulfing", "hammer", "doji", "morningstar", "eveningstar", "shootingstar")),
    *(f"count_{p}_20" for p in ("engulfing", "hammer", "doji", "morningstar", "eveningstar", "shootingstar")),
)  # fmt: skip


def _names() -> list[str]:
    return [s.name for s in catalog()]


@pytest.fixture(scope="module")
def indexfut_head(indexfut: pd.DataFrame) -> pd.DataFrame:
    """The first 6000 one-minute bars (about a week, overnight gaps included)."""
    return indexfut.iloc[:6000]


# ------------------------------------------------------------------------------------- names


def test_catalog_names_kinds_and_model_split() -> None:
    names = _names()
    assert len(names) == len(set(names))
    assert all(n == n.lower() and " " not in n for n in names)
    missing = set(REQUIRED_INDICATORS + REQUIRED_PATTERN_FEATURES) - set(names)
    assert not missing

    talib_patterns = talib.get_function_groups()["Pattern Recognition"]
    assert len(talib_patterns) == 61
    patterns = [s for s in catalog() if s.kind == "pattern"]
    assert [s.name for s in patterns] == ["cdl_" + f[3:].lower() for f in talib_patterns]
    assert {"cdl_engulfing", "cdl_hammer", "cdl_doji", "cdl_morningstar"} <= set(names)
    assert all(s.source == "talib" and not s.needs_volume for s in patterns)

    spec = {s.name: s for s in catalog()}
    assert {spec[n].kind for n in REQUIRED_INDICATORS} == {"indicator"}
    assert {spec[n].kind for n in REQUIRED_PATTERN_FEATURES} == {"pattern_feature"}
    assert spec["keltner_pos_20"].source == "ta"
    assert {spec[n].source for n in REQUIRED_INDICATORS if n not in ("keltner_pos_20", "realvol_20")} <= {
        "talib",
        "numpy",
    }
    assert {n for n in names if spec[n].needs_volume} == {"vol_confirm", "mfi_14", "obv", "vol_sma_ratio_20", "cmf_20"}

    a, b = model_a_features(), model_b_features()
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(names)
    assert {spec[n].kind for n in a} == {"pattern", "pattern_feature"}
    assert {spec[n].kind for n in b} == {"indicator"}
    assert CATALOG_VERSION == "1"


def test_feature_spec_is_frozen_and_validated() -> None:
    spec = catalog()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="kind"):
        FeatureSpec("x", "candle", "talib", 0, False)
    with pytest.raises(ValueError, match="source"):
        FeatureSpec("x", "indicator", "pandas", 0, False)
    with pytest.raises(ValueError, match="warmup"):
        FeatureSpec("x", "indicator", "talib", -1, False)
    assert features.feature_spec("rsi_14").warmup_bars == 14
    with pytest.raises(KeyError, match="rsi_15"):
        features.feature_spec("rsi_15")


def test_package_import_is_light() -> None:
    code = (
        "import sys, features; heavy = ('vectorbt', 'optuna', 'deap', 'nevergrad', 'torch', 'talib', 'ta', 'numba');"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    root = Path(__file__).parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == ""


def test_frame_shape_and_bad_input(nvda: pd.DataFrame) -> None:
    frame = compute_features(nvda)
    assert list(frame.columns) == _names()
    assert frame.index.equals(nvda.index)
    assert set(frame.dtypes) == {np.dtype("float64")}
    with pytest.raises(DataError, match="volume"):
        compute_features(nvda.drop(columns="volume"))
    with pytest.raises(DataError, match="DataFrame"):
        compute_features(nvda["close"])  # type: ignore[arg-type]


def test_short_and_empty_frames(nvda: pd.DataFrame) -> None:
    short = compute_features(nvda.iloc[:12])
    assert short.shape == (12, len(catalog()))
    for s in catalog():
        col = short[s.name].to_numpy()
        assert np.isnan(col[: s.warmup_bars]).all() and np.isfinite(col[s.warmup_bars :]).all(), s.name
    empty = compute_features(nvda.iloc[:0], raw=True)
    assert empty.shape == (0, len(catalog()))


# ------------------------------------------------------------------------- look-ahead check


def _perturb_after(bars: pd.DataFrame, t: int, rng: np.random.Generator) -> pd.DataFrame:
    """Bars after row ``t`` multiplied by random factors (OHLC kept consistent); rows <= t intact."""
    out = bars.copy()
    m = len(bars) - t - 1
    if m <= 0:
        return out
    f = rng.uniform(0.9, 1.1, size=(m, 4))
    o = bars["open"].to_numpy()[t + 1 :] * f[:, 0]
    c = bars["close"].to_numpy()[t + 1 :] * f[:, 3]
    h = np.maximum(bars["high"].to_numpy()[t + 1 :] * f[:, 1], np.maximum(o, c))
    lo = np.minimum(bars["low"].to_numpy()[t + 1 :] * f[:, 2], np.minimum(o, c))
    v = bars["volume"].to_numpy()[t + 1 :] * rng.uniform(0.5, 2.0, size=m)
    for name, tail in zip(("open", "high", "low", "close", "volume"), (o, h, lo, c, v)):
        col = out[name].to_numpy().copy()
        col[t + 1 :] = tail
        out[name] = col
    return out


def _lookahead_violations(compute, bars: pd.DataFrame, cuts: list[int], seed: int) -> list[str]:
    """Columns whose rows <= t change when the bars after t are dropped or perturbed."""
    rng = np.random.default_rng(seed)
    full = compute(bars)
    bad = []
    for t in cuts:
        past = compute(bars.iloc[: t + 1])
        perturbed = compute(_perturb_after(bars, t, rng))
        for label, other in (("full", full), ("perturbed", perturbed)):
            a, b = other.iloc[: t + 1].to_numpy(), past.to_numpy()
            same = np.isclose(a, b, rtol=1e-9, atol=0.0, equal_nan=True)
            bad += [f"{name} (t={t}, {label})" for name in past.columns[~same.all(axis=0)]]
    return bad


@pytest.mark.parametrize("raw", [False, True], ids=["model", "raw"])
@pytest.mark.parametrize("dataset", ["nvda", "indexfut_head"])
def test_no_feature_looks_ahead(dataset: str, raw: bool, request: pytest.FixtureRequest) -> None:
    bars = request.getfixturevalue(dataset)
    n = len(bars)
    cuts = [5, 40, n // 4, n // 2 + 17, n - 2]
    violations = _lookahead_violations(lambda x: compute_features(x, raw=raw), bars, cuts, seed=7)
    assert violations == []
    # The perturbation is strong enough to matter: it changes later values of most features.
    t = n // 2
    after = compute_features(_perturb_after(bars, t, np.random.default_rng(1)), raw=raw).iloc[t + 60 :]
    changed = ~np.isclose(after.to_numpy(), compute_features(bars, raw=raw).iloc[t + 60 :].to_numpy(), equal_nan=True)
    assert changed.any(axis=0).mean() > 0.9


def test_lookahead_check_catches_a_leak(nvda: pd.DataFrame) -> None:
    def leaky(bars: pd.DataFrame) -> pd.DataFrame:
        close = bars["close"]
        return pd.DataFrame({"causal": close.rolling(5).mean(), "centred": close.rolling(5, center=True).mean()})

    violations = _lookahead_violations(leaky, nvda, [100, 2000], seed=0)
    assert violations and all(v.startswith("centred") for v in violations)


# ----------------------------------------------------------------------- reference values


def test_raw_indicators_equal_direct_talib_calls(nvda: pd.DataFrame, indexfut_head: pd.DataFrame) -> None:
    for bars in (nvda, indexfut_head):
        o, h, lo, c, v = (bars[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
        raw = compute_features(bars, raw=True)
        reference = {
            "sma_20": talib.SMA(c, 20),
            "rsi_14": talib.RSI(c, 14),
            "atr_14": talib.ATR(h, lo, c, 14),
            "macd_12_26_9": talib.MACD(c, 12, 26, 9)[0],
            "bb_upper_20_2": talib.BBANDS(c, 20, 2.0, 2.0, 0)[0],
            "stoch_k_14_3": talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)[0],
            "willr_14": talib.WILLR(h, lo, c, 14),
            "adx_14": talib.ADX(h, lo, c, 14),
            "obv": talib.OBV(c, v),
            "cdl_engulfing": talib.CDLENGULFING(o, h, lo, c).astype(float),
        }
        for name, expected in reference.items():
            w = features.feature_spec(name).warmup_bars
            np.testing.assert_allclose(raw[name].to_numpy()[w:], expected[w:], rtol=1e-4, atol=0, err_msg=name)
            if name not in ("obv", "cdl_engulfing"):  # TA-Lib's lookback is the warm-up
                assert np.isnan(expected[:w]).all() and np.isfinite(expected[w]), name


def test_model_ready_transforms(nvda: pd.DataFrame) -> None:
    raw, model = compute_features(nvda, raw=True), compute_features(nvda)
    close, volume = nvda["close"].to_numpy(), nvda["volume"].to_numpy()
    w = 60
    for name in ("sma_20", "ema_50", "bb_upper_20_2", "bb_lower_20_2", "keltner_upper_20"):
        np.testing.assert_allclose(model[name].to_numpy()[w:], raw[name].to_numpy()[w:] / close[w:] - 1, rtol=1e-12)
    for name in ("atr_14", "macd_12_26_9", "macd_hist_12_26_9", "linreg_slope_14"):
        np.testing.assert_allclose(model[name].to_numpy()[w:], raw[name].to_numpy()[w:] / close[w:], rtol=1e-12)
    for name in ("rsi_14", "stoch_d_14_3", "willr_14", "mfi_14", "adx_14", "cci_20", "tsi_25_13"):
        np.testing.assert_allclose(model[name].to_numpy()[w:], raw[name].to_numpy()[w:] / 100, rtol=1e-12)
    # obv: 20-bar change of the cumulative level over the volume traded in those 20 bars.
    obv = raw["obv"].to_numpy()
    window_volume = pd.Series(volume).rolling(20).sum().to_numpy()
    expected = (obv[w:] - obv[w - 20 : -20]) / window_volume[w:]
    np.testing.assert_allclose(model["obv"].to_numpy()[w:], expected, rtol=1e-9)
    assert np.abs(model["obv"].to_numpy()[w:]).max() <= 1.0
    assert raw["obv"].to_numpy()[w:].max() > 1e8  # the cumulative level stays in raw only


def test_pattern_features_against_plain_definitions(indexfut_head: pd.DataFrame) -> None:
    bars = indexfut_head
    o, h, lo, c, v = (bars[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    raw, model = compute_features(bars, raw=True), compute_features(bars)
    rng = h - lo
    flat = rng == 0
    assert flat.any()  # one-minute bars include high == low, where the ratios are defined as 0 / 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_allclose(model["body_range"], np.where(flat, 0.0, (c - o) / rng), rtol=1e-12)
        np.testing.assert_allclose(model["upper_shadow"], np.where(flat, 0.0, (h - np.maximum(o, c)) / rng), rtol=1e-12)
        np.testing.assert_allclose(model["close_pos"], np.where(flat, 0.5, (c - lo) / rng), rtol=1e-12)
    np.testing.assert_allclose(model["gap"].to_numpy()[1:], o[1:] / c[:-1] - 1, rtol=1e-9)

    atr = talib.ATR(h, lo, c, 14)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(atr == 0, 0.0, rng / atr)
    np.testing.assert_allclose(raw["range_atr_14"].to_numpy()[14:], expected[14:], rtol=1e-10)

    fired = talib.CDLENGULFING(o, h, lo, c) != 0
    start = features.feature_spec("since_engulfing").warmup_bars
    since, last = [], None
    for t in range(start, len(c)):
        last = t if fired[t] else last
        since.append(50 if last is None else min(t - last, 50))
    np.testing.assert_array_equal(raw["since_engulfing"].to_numpy()[start:], since)
    np.testing.assert_array_equal(model["since_engulfing"].to_numpy()[start:], np.array(since) / 50)
    counts = pd.Series(fired.astype(float)).rolling(20).sum().to_numpy()
    w = features.feature_spec("count_engulfing_20").warmup_bars
    np.testing.assert_array_equal(raw["count_engulfing_20"].to_numpy()[w:], counts[w:])

    cdl = [n for n in raw.columns if n.startswith("cdl_")]
    np.testing.assert_allclose(raw["pattern_strength"].to_numpy()[14:], raw[cdl].to_numpy()[14:].sum(axis=1))
    np.testing.assert_allclose(model["pattern_strength"].to_numpy()[14:], model[cdl].to_numpy()[14:].sum(axis=1))
    np.testing.assert_allclose(model["vol_confirm"].to_numpy()[19:], v[19:] / talib.SMA(v, 20)[19:], rtol=1e-9)
    trend = c[19:] / talib.SMA(c, 20)[19:] - 1
    np.testing.assert_allclose(model["trend_context_20"].to_numpy()[19:], trend, atol=1e-12)
    np.testing.assert_allclose(
        model["realvol_20"].to_numpy()[20:], pd.Series(np.log(c)).diff().rolling(20).std().to_numpy()[20:], rtol=1e-6
    )


def test_golden_values_nvda(nvda: pd.DataFrame) -> None:
    day = pd.Timestamp("2008-10-10")  # NVDA o 6.32 h 7.33 l 6.28 c 6.81, in the 2008 crash
    raw, model = compute_features(nvda, raw=True).loc[day], compute_features(nvda).loc[day]
    i = nvda.index.get_loc(day)
    assert raw["sma_20"] == pytest.approx(nvda["close"].iloc[i - 19 : i + 1].mean(), rel=1e-12)
    assert raw["sma_20"] == pytest.approx(9.670500, abs=5e-7)
    assert raw["rsi_14"] == pytest.approx(26.081841, abs=5e-7)
    assert model["rsi_14"] == pytest.approx(0.26081841, abs=5e-9)
    assert raw["atr_14"] == pytest.approx(0.896375, abs=5e-7)
    assert raw["macd_12_26_9"] == pytest.approx(-1.172905, abs=5e-7)
    assert raw["adx_14"] == pytest.approx(39.444261, abs=5e-7)
    assert raw["keltner_pos_20"] == pytest.approx(-1.128542, abs=5e-7)
    assert raw["obv"] == 632282900.0
    assert model["obv"] == pytest.approx(-0.057438, abs=5e-7)
    assert raw["tsi_25_13"] == pytest.approx(-34.788445, abs=5e-7)
    assert raw["ulcer_14"] == pytest.approx(24.859012, abs=5e-7)
    assert raw["realvol_20"] == pytest.approx(0.067102, abs=5e-7)
    assert raw["since_engulfing"] == 1.0 and raw["pattern_strength"] == -100.0
    engulfing = compute_features(nvda, raw=True)["cdl_engulfing"]
    counts = engulfing.value_counts().to_dict()
    assert {k: counts.get(k, 0) for k in (-100.0, -80.0, 80.0, 100.0)} == {-100.0: 185, -80.0: 27, 80.0: 31, 100.0: 146}


# --------------------------------------------------------------------------- warm-up, bounds


@pytest.mark.parametrize("dataset", ["nvda", "orcl", "indexfut"])
def test_warmup_is_truthful_and_values_bounded(dataset: str, request: pytest.FixtureRequest) -> None:
    bars = request.getfixturevalue(dataset)
    for raw in (False, True):
        frame = compute_features(bars, raw=raw)
        for s in catalog():
            col = frame[s.name].to_numpy()
            assert np.isnan(col[: s.warmup_bars]).all(), f"{s.name}: value before warm-up"
            assert np.isfinite(col[s.warmup_bars :]).all(), f"{s.name}: non-finite after {s.warmup_bars} bars"
            if not raw:
                assert np.abs(col[s.warmup_bars :]).max() < 1e3, s.name


# ------------------------------------------------------------------------------ no volume


def test_no_volume_data(nvda: pd.DataFrame) -> None:
    assert has_usable_volume(nvda) and usable_features(nvda) == tuple(_names())
    needs_volume = {s.name for s in catalog() if s.needs_volume}
    with_volume = compute_features(nvda)
    for dead in (0.0, np.nan):
        bars = nvda.assign(volume=dead)
        assert not has_usable_volume(bars)
        usable = usable_features(bars)
        assert set(usable) == set(_names()) - needs_volume and list(usable) == [n for n in _names() if n in usable]
        frame = compute_features(bars)
        # A feature not flagged needs_volume must not read the volume at all.
        pd.testing.assert_frame_equal(frame[list(usable)], with_volume[list(usable)])
        assert np.isfinite(frame[list(usable)].to_numpy()[100:]).all()
    # ...and each flagged one does read it.
    shuffled = nvda.assign(volume=np.random.default_rng(0).permutation(nvda["volume"].to_numpy()))
    moved = compute_features(shuffled)
    for name in needs_volume:
        assert not np.allclose(moved[name].to_numpy()[100:], with_volume[name].to_numpy()[100:]), name


def test_dropping_volume_features_warns_once_when_asked(nvda: pd.DataFrame, caplog: pytest.LogCaptureFixture) -> None:
    needs_volume = [s.name for s in catalog() if s.needs_volume]
    assert len(needs_volume) >= 3
    silent = nvda.assign(volume=0.0)
    assert usable_features(silent) == usable_features(silent, warn=True, source="fx.csv")
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1  # the call without warn=True logged nothing
    assert warnings[0].getMessage() == (
        f"fx.csv: volume is missing or zero: {len(needs_volume)} volume features are left out "
        f"({', '.join(needs_volume)})"
    )
    caplog.clear()
    assert usable_features(nvda, warn=True) == tuple(_names())  # volume there: nothing to say
    assert not caplog.records


# ---------------------------------------------------------------------------------- cache


def test_cache_round_trip_and_keys(nvda: pd.DataFrame, tmp_path: Path) -> None:
    fresh = compute_features(nvda)
    pd.testing.assert_frame_equal(load_or_compute(nvda, None), fresh)

    first = load_or_compute(nvda, tmp_path)
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == [f"features-{cache_key(nvda)}.npz"]  # no temp file left behind
    pd.testing.assert_frame_equal(first, fresh)
    second = load_or_compute(nvda, tmp_path)
    pd.testing.assert_frame_equal(second, fresh)

    # The second call really reads the file: a doctored but self-consistent file is believed.
    path = files[0]
    with np.load(path, allow_pickle=False) as npz:
        stored = {k: npz[k] for k in npz.files}
    assert stored["index_ns"].dtype == np.int64 and stored["columns"].dtype.kind == "U"
    stored["values"] = stored["values"].copy()
    stored["values"][-1, 0] = 123.0
    from features.cache import _checksum

    stored["checksum"] = np.array(_checksum(stored["values"]))
    np.savez(path, **stored)
    assert load_or_compute(nvda, tmp_path).iloc[-1, 0] == 123.0

    changed = nvda.copy()
    changed.iloc[100, 3] *= 1.0001
    assert data_hash(changed) != data_hash(nvda) and cache_key(changed) != cache_key(nvda)
    assert cache_key(nvda, raw=True) != cache_key(nvda)
    pd.testing.assert_frame_equal(load_or_compute(changed, tmp_path), compute_features(changed))
    pd.testing.assert_frame_equal(load_or_compute(nvda, tmp_path, raw=True), compute_features(nvda, raw=True))
    assert len(list(tmp_path.glob("features-*.npz"))) == 3

    # The data hash is the bars' identity: not the index's resolution nor the column order.
    ns = nvda.set_axis(nvda.index.as_unit("ns"))
    assert data_hash(ns) == data_hash(nvda) == data_hash(nvda[["volume", "close", "low", "high", "open"]])
    shifted = nvda.set_axis(nvda.index + pd.Timedelta(hours=1))
    assert data_hash(shifted) != data_hash(nvda)
    with pytest.raises(DataError, match="DatetimeIndex"):
        data_hash(nvda.reset_index(drop=True))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "bad_checksum", "wrong_columns"])
def test_corrupt_cache_is_recomputed(nvda: pd.DataFrame, tmp_path: Path, damage: str) -> None:
    bars = nvda.iloc[:600]
    fresh = compute_features(bars)
    load_or_compute(bars, tmp_path)
    (path,) = tmp_path.glob("features-*.npz")
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a zip file" * 10)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        with np.load(path, allow_pickle=False) as npz:
            stored = {k: npz[k] for k in npz.files}
        if damage == "bad_checksum":
            stored["values"] = stored["values"] * 2.0  # values changed, checksum left as it was
        else:
            stored["columns"] = stored["columns"][::-1].copy()
        np.savez(path, **stored)
    pd.testing.assert_frame_equal(load_or_compute(bars, tmp_path), fresh)
    # ...and the bad file was replaced by a good one.
    with np.load(path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["values"], fresh.to_numpy())
