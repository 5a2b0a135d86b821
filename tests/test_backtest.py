"""Tests for backtest/: purged walk-forward folds, consensus rules, metrics and the vectorbt portfolio.

Real vectorbt, no mocks. Bars come from ../shared/data (fixtures in conftest.py) and from small
synthetic series built here, where every expected number is worked out by hand.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import backtest as bt
from backtest.portfolio import _backtest, _check_ohlcv, _simulate, _simulate_orders
from evo.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------- helpers


def _bars(open_: list[float] | np.ndarray, close: list[float] | np.ndarray) -> pd.DataFrame:
    """A synthetic daily bar frame with the given opens and closes (high/low bracket them)."""
    o = np.asarray(open_, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    return pd.DataFrame(
        {
            "open": o,
            "high": np.maximum(o, c) * 1.01,
            "low": np.minimum(o, c) * 0.99,
            "close": c,
            "volume": 1e6,
        },
        index=pd.date_range("2020-01-01", periods=len(o), freq="D", name="time"),
    )


def _reference_long_flat(ohlcv: pd.DataFrame, signal: np.ndarray, fee: float, slip: float) -> np.ndarray:
    """Per-bar returns of an all-in long/flat account, simulated by hand (no vectorbt).

    The position during bar i is signal[i-1]; entries and exits fill at open[i] with slippage, the
    fee is a fraction of the traded value, and the account is valued at close[i].
    """
    o, c = ohlcv["open"].to_numpy(), ohlcv["close"].to_numpy()
    cash, shares, prev_value = 1.0, 0.0, 1.0
    out = np.zeros(len(o))
    for i in range(len(o)):
        want = signal[i - 1] if i > 0 else 0
        if want == 1 and shares == 0.0:
            price = o[i] * (1 + slip)
            shares = cash / (price * (1 + fee))
            cash = 0.0
        elif want == 0 and shares > 0.0:
            cash = shares * o[i] * (1 - slip) * (1 - fee)
            shares = 0.0
        value = cash + shares * c[i]
        out[i] = value / prev_value - 1
        prev_value = value
    return out


def _sma_signal(close: pd.Series, n: int) -> np.ndarray:
    """1 where close is above its n-bar mean (bars <= t only), else 0: a causal toy strategy."""
    sma = close.rolling(n).mean()
    return (close > sma).to_numpy().astype(np.int8)


# ----------------------------------------------------------------------------------------- folds


def _check_fold_invariants(
    folds: list[bt.Fold], *, n_bars: int, horizon: int, first_bar: int, embargo: int
) -> None:
    gap = horizon + embargo
    assert folds[-1].test[1] == n_bars - 1, "the last test fold must end at n_bars - 1"
    for k, f in enumerate(folds):
        assert f.train[0] == first_bar, "anchored: every fold trains from first_bar"
        assert f.n_train >= 64 and f.n_val >= 16 and f.n_test >= 16
        # Purge: no training / validation label close[t + horizon] reaches the next segment.
        assert max(range(*f.train)) + horizon < f.val[0]
        assert max(range(*f.val)) + horizon < f.test[0]
        assert f.train[1] + gap <= f.val[0] and f.val[1] + gap <= f.test[0]
        assert f.train[0] < f.train[1] <= f.val[0] < f.val[1] <= f.test[0] < f.test[1]
        if k:
            prev = folds[k - 1]
            assert prev.test[1] == f.test[0], "test folds are contiguous"
            assert prev.test[0] < f.test[0], "test folds are in time order"
            assert f.train[1] > prev.train[1], "anchored windows expand"
    sizes = [f.n_test for f in folds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("n_folds", [1, 2, 3, 5])
@pytest.mark.parametrize("horizon", [1, 5, 20])
@pytest.mark.parametrize("embargo", [0, 3])
def test_folds_purged_chronological_contiguous_over_a_grid(n_folds: int, horizon: int, embargo: int) -> None:
    first_bar = 60
    needed = bt.bars_needed(n_folds=n_folds, horizon=horizon, first_bar=first_bar, embargo=embargo)
    for n_bars in sorted({needed, needed + 1, needed + 37, 2 * needed + 5, 4012}):
        folds = bt.walk_forward_folds(
            n_bars, n_folds=n_folds, horizon=horizon, first_bar=first_bar, embargo=embargo
        )
        assert len(folds) == n_folds
        _check_fold_invariants(folds, n_bars=n_bars, horizon=horizon, first_bar=first_bar, embargo=embargo)
        n_test = folds[-1].test[1] - folds[0].test[0]
        assert n_test == math.floor(0.3 * (n_bars - 1 - first_bar))


def test_folds_worked_example_from_the_docstring() -> None:
    folds = bt.walk_forward_folds(1000, n_folds=2, horizon=5, first_bar=100)
    assert folds == [
        bt.Fold(train=(100, 627), val=(632, 725), test=(730, 864)),
        bt.Fold(train=(100, 741), val=(746, 859), test=(864, 999)),
    ]
    assert (folds[0].n_train, folds[0].n_val, folds[0].n_test) == (527, 93, 134)


@pytest.mark.parametrize(
    "n_folds,horizon,first_bar,embargo", [(1, 1, 0, 0), (3, 5, 50, 0), (5, 20, 200, 2), (4, 1, 10, 7)]
)
def test_bars_needed_is_tight_and_the_error_says_it(
    n_folds: int, horizon: int, first_bar: int, embargo: int
) -> None:
    kw = dict(n_folds=n_folds, horizon=horizon, first_bar=first_bar, embargo=embargo)
    needed = bt.bars_needed(**kw)
    _check_fold_invariants(
        bt.walk_forward_folds(needed, **kw),
        n_bars=needed,
        horizon=horizon,
        first_bar=first_bar,
        embargo=embargo,
    )
    with pytest.raises(DataError, match=rf"{needed - 1} bars given, at least {needed} needed"):
        bt.walk_forward_folds(needed - 1, **kw)
    with pytest.raises(DataError, match=rf"at least {needed} needed"):
        bt.walk_forward_folds(first_bar, **kw)  # no decision bars at all
    for n_bars in range(needed, needed + 200):  # every larger n_bars works too
        assert len(bt.walk_forward_folds(n_bars, **kw)) == n_folds


def test_folds_on_real_bars_cover_the_last_30_percent(nvda: pd.DataFrame) -> None:
    folds = bt.walk_forward_folds(len(nvda), n_folds=4, horizon=5, first_bar=120)
    _check_fold_invariants(folds, n_bars=len(nvda), horizon=5, first_bar=120, embargo=0)
    assert folds[0].test[0] == len(nvda) - 1 - math.floor(0.3 * (len(nvda) - 1 - 120))


@pytest.mark.parametrize(
    "kw",
    [
        dict(n_folds=0, horizon=5, first_bar=0),
        dict(n_folds=2, horizon=0, first_bar=0),
        dict(n_folds=2, horizon=5, first_bar=-1),
        dict(n_folds=2, horizon=5, first_bar=0, test_fraction=1.0),
        dict(n_folds=2, horizon=5, first_bar=0, val_fraction=0.0),
        dict(n_folds=2, horizon=5, first_bar=0, embargo=-1),
        dict(n_folds=2.0, horizon=5, first_bar=0),
    ],
)
def test_folds_reject_bad_settings(kw: dict) -> None:
    with pytest.raises(ConfigError):
        bt.walk_forward_folds(1000, **kw)


def test_fold_rejects_out_of_order_segments() -> None:
    with pytest.raises(ConfigError):
        bt.Fold(train=(0, 100), val=(90, 120), test=(130, 150))
    with pytest.raises(ConfigError):
        bt.Fold(train=(0, 100), val=(110, 140), test=(130, 150))
    with pytest.raises(ConfigError):
        bt.Fold(train=(5, 5), val=(10, 20), test=(30, 40))
    with pytest.raises(ConfigError):
        bt.Fold(train=(0.0, 10), val=(10, 20), test=(30, 40))
    fold = bt.Fold(train=(np.int64(0), 10), val=[12, 20], test=(30, 40))
    assert fold.train == (0, 10) and type(fold.train[0]) is int and fold.val == (12, 20)


# ------------------------------------------------------------------------------------- consensus


def _p(*rows: tuple[float, float, float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


# Rows (down, flat, up). Per bar: model A, model B, expected signal for each rule at threshold 0.5.
_CASES = [
    # a                  b                    both either weighted(w=0.5)
    ((0.1, 0.3, 0.6), (0.2, 0.25, 0.55), 1, 1, 1),  # both confident up
    ((0.1, 0.3, 0.6), (0.3, 0.4, 0.3), 0, 1, 0),  # one up, other undecided; mean up 0.45
    ((0.1, 0.1, 0.8), (0.3, 0.4, 0.3), 0, 1, 1),  # mean up 0.55 > 0.5
    ((0.1, 0.3, 0.6), (0.55, 0.3, 0.15), 0, 0, 0),  # A up, B confidently down: either vetoed
    ((0.1, 0.3, 0.6), (0.2, 0.3, 0.5), 0, 1, 1),  # tie: B's 0.5 is not > 0.5; mean 0.55
    ((0.2, 0.3, 0.5), (0.2, 0.3, 0.5), 0, 0, 0),  # ties everywhere: flat
    ((0.6, 0.3, 0.1), (0.7, 0.2, 0.1), -1, -1, -1),  # both down: short side
    ((0.6, 0.3, 0.1), (0.3, 0.4, 0.3), 0, -1, 0),  # one down; mean down 0.45
    ((0.34, 0.33, 0.33), (0.33, 0.34, 0.33), 0, 0, 0),  # nothing confident
]


@pytest.mark.parametrize("rule_idx,rule", list(enumerate(bt.CONSENSUS_RULES)))
def test_consensus_rules_on_hand_made_probabilities(rule_idx: int, rule: str) -> None:
    p_a = _p(*[c[0] for c in _CASES])
    p_b = _p(*[c[1] for c in _CASES])
    expected = np.array([c[2 + rule_idx] for c in _CASES], dtype=np.int8)
    got = bt.consensus_signal(p_a, p_b, rule=rule, threshold=0.5, allow_short=True)
    assert got.dtype == np.int8 and got.shape == (len(_CASES),)
    np.testing.assert_array_equal(got, expected)
    long_only = bt.consensus_signal(p_a, p_b, rule=rule, threshold=0.5)
    np.testing.assert_array_equal(long_only, np.maximum(expected, 0))
    # Swapping the models changes nothing; swapping up and down mirrors the signal.
    np.testing.assert_array_equal(
        bt.consensus_signal(p_b, p_a, rule=rule, threshold=0.5, allow_short=True), expected
    )
    mirrored = bt.consensus_signal(p_a[:, ::-1], p_b[:, ::-1], rule=rule, threshold=0.5, allow_short=True)
    np.testing.assert_array_equal(mirrored, -expected)


def test_consensus_low_threshold_ties_between_up_and_down_stay_flat() -> None:
    # threshold 0.3: p_up == p_down == 0.4 passes the threshold on both sides but wins neither.
    p = _p((0.4, 0.2, 0.4))
    for rule in bt.CONSENSUS_RULES:
        got = bt.consensus_signal(p, p, rule=rule, threshold=0.3, allow_short=True)
        assert got.tolist() == [0], rule
    # 'either' with threshold 0.3: A up 0.45, B down 0.35 -> B vetoes the long and A vetoes the short.
    a, b = _p((0.2, 0.35, 0.45)), _p((0.35, 0.35, 0.3))
    assert bt.consensus_signal(a, b, rule="either", threshold=0.3, allow_short=True).tolist() == [0]
    assert bt.consensus_signal(a, b, rule="weighted", threshold=0.3, allow_short=True).tolist() == [1]


def test_consensus_validates_its_inputs() -> None:
    ok = _p((0.2, 0.3, 0.5))
    with pytest.raises(ConfigError, match="unknown consensus rule"):
        bt.consensus_signal(ok, ok, rule="majority", threshold=0.5)
    for bad in (0.0, 1.0, -0.1, float("nan"), True):
        with pytest.raises(ConfigError, match="threshold"):
            bt.consensus_signal(ok, ok, rule="both", threshold=bad)
    with pytest.raises(DataError, match=r"shape \(N, 3\)"):
        bt.consensus_signal(ok[:, :2], ok[:, :2], rule="both", threshold=0.5)
    with pytest.raises(DataError, match="same bars"):
        bt.consensus_signal(ok, np.vstack([ok, ok]), rule="both", threshold=0.5)
    with pytest.raises(DataError, match="logits"):
        bt.consensus_signal(_p((-1.0, 0.5, 1.5)), ok, rule="both", threshold=0.5)
    with pytest.raises(DataError, match="sum to 1"):
        bt.consensus_signal(_p((0.2, 0.2, 0.2)), ok, rule="both", threshold=0.5)
    with pytest.raises(DataError, match="NaN"):
        bt.consensus_signal(_p((np.nan, 0.5, 0.5)), ok, rule="both", threshold=0.5)


# --------------------------------------------------------------------------------------- metrics


def test_sharpe_ratio_hand_computed() -> None:
    # mean 0.006667, std (ddof=1) 0.015275 -> 0.43644 per bar, * sqrt(252)
    assert bt.sharpe_ratio(np.array([0.01, -0.01, 0.02]), 252) == pytest.approx(6.928203230, rel=1e-9)
    assert bt.sharpe_ratio(np.array([0.01, -0.01, 0.02]), 1) == pytest.approx(0.4364357805, rel=1e-9)
    assert bt.sharpe_ratio(np.array([-0.02, 0.01]), 4) == pytest.approx(
        -0.005 / (0.015 * math.sqrt(2)) * 2, rel=1e-9
    )


# [0.1] * 3 and [1e-3 / 3] * 7 have a floating-point std of ~1e-17 / ~6e-20, not exactly 0.
@pytest.mark.parametrize("returns", [[], [0.05], [0.0] * 10, [0.1] * 3, [1e-3 / 3] * 7])
def test_sharpe_ratio_is_zero_without_spread(returns: list[float]) -> None:
    value = bt.sharpe_ratio(np.array(returns), 252.0)
    assert value == 0.0 and math.isfinite(value)


def test_max_drawdown_and_total_return_hand_computed() -> None:
    assert bt.max_drawdown(np.array([0.1, -0.5, 0.2])) == pytest.approx(0.5, abs=1e-15)
    assert bt.max_drawdown(np.array([-0.2])) == pytest.approx(0.2)  # from the starting capital
    assert bt.max_drawdown(np.array([0.1, 0.2, 0.0])) == 0.0
    assert bt.max_drawdown(np.array([])) == 0.0
    # equity 1.1, 0.99, 1.188, 0.594 -> peak 1.188 -> 0.5; the earlier -10 % dip is smaller
    assert bt.max_drawdown(np.array([0.1, -0.1, 0.2, -0.5])) == pytest.approx(0.5)
    assert bt.max_drawdown(np.array([-1.0, 0.0])) == 1.0
    assert bt.total_return(np.array([0.1, -0.5, 0.2])) == pytest.approx(-0.34)
    assert bt.total_return(np.array([])) == 0.0


def test_metrics_reject_nan_and_bad_annualisation() -> None:
    with pytest.raises(DataError, match="finite"):
        bt.sharpe_ratio(np.array([0.1, np.nan]), 252)
    with pytest.raises(DataError, match="finite"):
        bt.max_drawdown(np.array([np.inf]))
    with pytest.raises(DataError, match="1-D"):
        bt.total_return(np.zeros((2, 2)))
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="periods_per_year"):
            bt.sharpe_ratio(np.array([0.1, 0.2]), bad)


def test_periods_per_year_on_daily_and_intraday_bars(nvda: pd.DataFrame, indexfut: pd.DataFrame) -> None:
    assert bt.periods_per_year(nvda.index) == pytest.approx(252, abs=10)
    # 1-minute bars with overnight gaps: about (bars per trading day) x 252 trading days.
    per_day = len(indexfut) / indexfut.index.normalize().nunique()
    assert bt.periods_per_year(indexfut.index) == pytest.approx(per_day * 252, rel=0.15)
    two_days = pd.DatetimeIndex(["2020-01-01", "2020-01-02"])
    assert bt.periods_per_year(two_days) == pytest.approx(365.25)
    with pytest.raises(DataError, match="at least 2"):
        bt.periods_per_year(two_days[:1])
    with pytest.raises(DataError, match="increasing"):
        bt.periods_per_year(two_days[::-1])
    with pytest.raises(DataError, match="DatetimeIndex"):
        bt.periods_per_year(pd.RangeIndex(5))


# ------------------------------------------------------------------------------------- portfolio


def test_import_backtest_does_not_load_vectorbt() -> None:
    code = (
        "import sys, backtest; print(sorted(m for m in ('vectorbt', 'numba', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_cost_model_units_and_validation() -> None:
    costs = bt.CostModel()
    assert (costs.fees_bps, costs.slippage_bps) == (5.0, 5.0)
    assert costs.fees == pytest.approx(0.0005) and costs.slippage == pytest.approx(0.0005)
    for bad in (
        dict(fees_bps=-1.0),
        dict(slippage_bps=float("nan")),
        dict(fees_bps=10_000.0),
        dict(fees_bps="5"),
    ):
        with pytest.raises(ConfigError, match="bps"):
            bt.CostModel(**bad)


def test_signal_at_t_fills_at_the_open_of_t_plus_1() -> None:
    # Bar 3 closes at 100 and bar 4 gaps up to open at 120: filling at close[3] would show a +15 %
    # gain on bar 4; filling at open[4] shows close[4]/open[4] - 1 = -4.17 %.
    o = [100, 100, 100, 100, 120, 110, 110, 110]
    c = [100, 100, 100, 100, 115, 110, 110, 110]
    bars = _bars(o, c)
    signal = np.zeros(8, dtype=np.int8)
    signal[3] = 1  # decided at the close of bar 3: long during bar 4, out at the open of bar 5
    fee, slip = 0.001, 0.002
    res = bt.backtest_signals(
        bars, signal, costs=bt.CostModel(fees_bps=10, slippage_bps=20), periods_per_year=252
    )
    entry = 120 * (1 + slip)  # open[4] plus slippage
    exit_ = 110 * (1 - slip)  # open[5] minus slippage
    expected = np.zeros(8)
    expected[4] = 115 / (entry * (1 + fee)) - 1
    expected[5] = exit_ * (1 - fee) / 115 - 1
    np.testing.assert_allclose(res.returns, expected, rtol=0, atol=1e-12)
    assert res.total_return == pytest.approx(exit_ * (1 - fee) / (entry * (1 + fee)) - 1, rel=1e-12)
    assert res.trades == 1 and res.traded and res.exposure == pytest.approx(1 / 8)

    # Perturbing bars after t + 1 and later signals leaves the entry bar untouched.
    changed = bars.copy()
    changed.iloc[5:, changed.columns.get_loc("open")] = [50, 60, 70]
    changed.iloc[5:, changed.columns.get_loc("close")] = [55, 65, 75]
    signal2 = signal.copy()
    signal2[4:] = [1, 0, 1, 1]
    res2 = bt.backtest_signals(
        changed, signal2, costs=bt.CostModel(fees_bps=10, slippage_bps=20), periods_per_year=252
    )
    np.testing.assert_array_equal(res2.returns[:5], res.returns[:5])
    assert res2.returns[4] == pytest.approx(115 / (entry * (1 + fee)) - 1, rel=1e-12)


def test_future_signals_and_prices_do_not_change_past_returns(nvda: pd.DataFrame) -> None:
    rng = np.random.default_rng(7)
    signal = rng.integers(-1, 2, len(nvda)).astype(np.int8)
    ppy = bt.periods_per_year(nvda.index)
    full = bt.backtest_signals(nvda, signal, periods_per_year=ppy)
    for k in (1, 250, 1999, len(nvda) - 2):
        # Everything from signal[k] and bar k+1 on is replaced; returns[:k+1] must not move.
        other = signal.copy()
        other[k:] = rng.integers(-1, 2, len(nvda) - k)
        bars = nvda.copy()
        bars.iloc[k + 1 :] = bars.iloc[k + 1 :].to_numpy() * rng.uniform(0.5, 1.5, (len(nvda) - k - 1, 1))
        changed = bt.backtest_signals(bars, other, periods_per_year=ppy)
        truncated = bt.backtest_signals(nvda.iloc[: k + 1], signal[: k + 1], periods_per_year=ppy)
        np.testing.assert_array_equal(changed.returns[: k + 1], full.returns[: k + 1])
        np.testing.assert_array_equal(truncated.returns, full.returns[: k + 1])
        assert not np.array_equal(changed.returns[k + 1 :], full.returns[k + 1 :])


def test_long_always_without_costs_earns_close_last_over_open_1(nvda: pd.DataFrame) -> None:
    ppy = bt.periods_per_year(nvda.index)
    res = bt.backtest_signals(
        nvda, np.ones(len(nvda), dtype=np.int8), costs=bt.CostModel(0, 0), periods_per_year=ppy
    )
    hand = nvda["close"].iloc[-1] / nvda["open"].iloc[1] - 1  # bought at open[1], marked at the last close
    assert res.total_return == pytest.approx(hand, rel=1e-10)
    assert res.returns[0] == 0.0
    assert res.trades == 1 and res.exposure == pytest.approx((len(nvda) - 1) / len(nvda))
    assert res.sharpe == pytest.approx(bt.sharpe_ratio(res.returns, ppy))


@pytest.mark.parametrize("fees_bps,slippage_bps", [(10.0, 0.0), (0.0, 10.0), (5.0, 5.0), (25.0, 0.0)])
def test_one_round_trip_costs_about_two_sides(fees_bps: float, slippage_bps: float) -> None:
    bars = _bars([100.0] * 10, [100.0] * 10)  # prices never move: only costs change the account
    signal = np.array([0, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=np.int8)
    res = bt.backtest_signals(bars, signal, costs=bt.CostModel(fees_bps, slippage_bps), periods_per_year=252)
    f, s = fees_bps * 1e-4, slippage_bps * 1e-4
    assert res.total_return == pytest.approx((1 - s) * (1 - f) / ((1 + s) * (1 + f)) - 1, rel=1e-12)
    assert res.total_return == pytest.approx(-2 * (f + s), rel=0.01)
    assert res.trades == 1 and res.exposure == pytest.approx(0.3)


def test_matches_a_hand_simulation_and_vectorbts_own_drawdown(nvda: pd.DataFrame) -> None:
    signal = _sma_signal(nvda["close"], 50)
    ppy = bt.periods_per_year(nvda.index)
    costs = bt.CostModel(fees_bps=5, slippage_bps=5)
    res = bt.backtest_signals(nvda, signal, costs=costs, periods_per_year=ppy)
    np.testing.assert_allclose(
        res.returns, _reference_long_flat(nvda, signal, 5e-4, 5e-4), rtol=0, atol=1e-10
    )
    pf = _simulate(nvda.index, nvda["open"].to_numpy(), nvda["close"].to_numpy(), signal, costs)
    assert res.max_drawdown == pytest.approx(-float(pf.max_drawdown()), rel=1e-9)
    assert res.total_return == pytest.approx(float(pf.total_return()), rel=1e-9)
    n_entries = int(np.sum(np.diff(np.r_[0, signal[:-1]]) == 1))
    assert res.trades == n_entries == int(pf.trades.count())
    assert res.exposure == pytest.approx(signal[:-1].sum() / len(nvda))


def test_golden_values_on_orcl(orcl: pd.DataFrame) -> None:
    """Pinned regression values: 20-bar SMA long/flat on ORCL, default costs (5 + 5 bps a side)."""
    res = bt.backtest_signals(
        orcl, _sma_signal(orcl["close"], 20), periods_per_year=bt.periods_per_year(orcl.index)
    )
    assert res.trades == GOLDEN_ORCL["trades"]
    assert res.sharpe == pytest.approx(GOLDEN_ORCL["sharpe"], rel=1e-6)
    assert res.max_drawdown == pytest.approx(GOLDEN_ORCL["max_drawdown"], rel=1e-6)
    assert res.total_return == pytest.approx(GOLDEN_ORCL["total_return"], rel=1e-6)
    assert res.exposure == pytest.approx(GOLDEN_ORCL["exposure"], rel=1e-9)


GOLDEN_ORCL = {
    "trades": 310,
    "sharpe": 0.15396899477474174,
    "max_drawdown": 0.8246132164427831,
    "total_return": 0.004893553772925996,
    "exposure": 0.5554011119936457,
}


def test_short_side_and_reversals_hand_computed() -> None:
    o = [100, 100, 100, 100, 100, 100, 100]
    c = [100, 100, 90, 100, 100, 110, 100]
    # held during bar i = signal[i-1]: flat, long, short, short, long, long, flat
    signal = np.array([1, -1, -1, 1, 1, 0, 0], dtype=np.int8)
    res = bt.backtest_signals(_bars(o, c), signal, costs=bt.CostModel(0, 0), periods_per_year=252)
    expected = np.array([0.0, 0.0, 0.1, 0.0, 0.0, 0.1, 0.0])
    # bar 1 long at 100 -> 100; bar 2 short at open 100, close 90: +10 %; bar 3 still short, 90 -> 100
    # is -10/110 of the 110 equity; bar 4 reverse to long at 100, flat close; bar 5 long 100 -> 110;
    # bar 6 exits at its open.
    expected[3] = (110 - 10) / 110 - 1
    expected[6] = 100 / 110 - 1  # exit at the open of bar 6 (100) after the close at 110
    np.testing.assert_allclose(res.returns, expected, atol=1e-12)
    assert res.trades == 3  # long, short, long: the reversal at bar 2 closes one and opens one
    assert res.exposure == pytest.approx(5 / 7)


def _engine_spans(nvda: pd.DataFrame, indexfut: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A daily span the length of the `cpu` budget's NVDA test span, and a 1-minute one (overnight gaps)."""
    return {"nvda": nvda.iloc[-939:], "minute": indexfut.iloc[-3000:]}


@pytest.mark.parametrize("span_name", ["nvda", "minute"])
@pytest.mark.parametrize(
    ("kind", "risk"),
    [
        ("long", bt.RiskRules()),
        ("long", bt.RiskRules(size=0.5)),
        ("long_short", bt.RiskRules()),
        ("long_short", bt.RiskRules(breaker=0.05)),
    ],
)
def test_from_orders_kernels_trade_like_both_vectorbt_engines(
    nvda: pd.DataFrame, indexfut: pd.DataFrame, span_name: str, kind: str, risk: bt.RiskRules
) -> None:
    """backtest_signals' default path (vectorbt's from-orders kernels called directly) gives the
    trades, returns and equity of Portfolio.from_signals and Portfolio.from_orders to 1e-9."""
    span = _engine_spans(nvda, indexfut)[span_name]
    close = span["close"]
    if kind == "long":
        signal = _sma_signal(close, 20)
    else:  # long above the 20-bar mean, short below, flat on a fresh cross: reversals and flats
        sma = close.rolling(20).mean()
        signal = np.sign(close - sma).fillna(0).to_numpy().astype(np.int8)
        signal[np.flatnonzero(np.diff(signal) != 0)[::3] + 1] = 0
        assert {-1, 0, 1} <= set(signal) and (np.r_[0, signal][:-1] * signal == -1).any()
    open_, close_ = _check_ohlcv(span)
    ppy = bt.periods_per_year(span.index)
    costs = bt.CostModel(5, 5)
    assert _simulate_orders(open_, close_, signal, costs, risk.size) is not None  # the fast path ran
    fast = bt.backtest_signals(span, signal, costs=costs, periods_per_year=ppy, risk=risk)
    assert fast.trades >= (1 if risk.breaker else 5)
    for engine in ("signals", "orders"):
        ref = _backtest(span, open_, close_, signal, costs, ppy, risk, engine=engine)
        assert fast.trades == ref.trades, engine
        np.testing.assert_allclose(fast.trade_returns, ref.trade_returns, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fast.returns, ref.returns, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.cumprod(1 + fast.returns), np.cumprod(1 + ref.returns), rtol=1e-9)
        assert fast.exposure == ref.exposure
        for name in ("sharpe", "max_drawdown", "total_return", "turnover", "win_rate", "profit_factor"):
            assert getattr(fast, name) == pytest.approx(getattr(ref, name), rel=1e-9, abs=1e-12), (engine, name)
    if risk.breaker is not None:  # the breaker did cut trading short
        free = bt.backtest_signals(span, signal, costs=costs, periods_per_year=ppy)
        assert fast.trades < free.trades
    pf = _simulate(span.index, open_, close_, signal, costs, risk, engine="orders")
    if risk.breaker is None:
        assert fast.total_return == pytest.approx(float(pf.total_return()), rel=1e-9)


def test_a_blown_short_falls_back_to_from_signals() -> None:
    """Short at 100, the price runs to 250: the account is worth less than the cover costs, so the
    exit fills only in part. The position then no longer follows the signal, the from-orders
    kernels give up, and backtest_signals returns what Portfolio.from_signals does."""
    o = [100, 100, 150, 250, 250, 250, 240, 230]
    c = [100, 100, 200, 250, 250, 250, 240, 230]
    signal = np.array([-1, -1, 0, 0, 1, 1, 0, 0], dtype=np.int8)
    bars = _bars(o, c)
    open_, close_ = _check_ohlcv(bars)
    costs = bt.CostModel(0, 0)
    assert _simulate_orders(open_, close_, signal, costs, 1.0) is None
    res = bt.backtest_signals(bars, signal, costs=costs, periods_per_year=252)
    ref = _backtest(bars, open_, close_, signal, costs, 252, bt.RiskRules(), engine="signals")
    np.testing.assert_array_equal(res.returns, ref.returns)
    assert res.trades == ref.trades and res.exposure == ref.exposure


def test_a_strategy_that_never_trades_scores_zero(nvda: pd.DataFrame, indexfut: pd.DataFrame) -> None:
    for bars in (nvda, indexfut.iloc[:5000], _bars([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])):
        # A long signal on the last bar only is never executed: there is no next bar.
        signal = np.zeros(len(bars), dtype=np.int8)
        signal[-1] = 1
        for sig in (np.zeros(len(bars)), signal):
            res = bt.backtest_signals(bars, sig, periods_per_year=bt.periods_per_year(bars.index))
            assert (res.sharpe, res.max_drawdown, res.total_return, res.exposure) == (0.0, 0.0, 0.0, 0.0)
            assert res.trades == 0 and res.traded is False
            assert res.returns.dtype == np.float64 and res.returns.shape == (len(bars),)
            assert np.all(res.returns == 0.0)


def test_intraday_futures_backtest_is_finite(indexfut: pd.DataFrame) -> None:
    bars = indexfut.iloc[:8000]
    signal = _sma_signal(bars["close"], 30) - (bars["close"] < bars["close"].rolling(30).mean()).to_numpy()
    res = bt.backtest_signals(
        bars, signal.astype(np.int8), periods_per_year=bt.periods_per_year(indexfut.index)
    )
    assert res.traded and res.trades > 50
    assert all(math.isfinite(v) for v in (res.sharpe, res.max_drawdown, res.total_return, res.exposure))
    assert 0.0 < res.max_drawdown < 1.0 and 0.9 < res.exposure <= 1.0


def test_backtest_validates_inputs_with_helpful_messages(nvda: pd.DataFrame) -> None:
    bars = nvda.iloc[:50]
    ok = np.zeros(50, dtype=np.int8)
    with pytest.raises(DataError, match="one value per bar"):
        bt.backtest_signals(bars, ok[:-1], periods_per_year=252)
    with pytest.raises(DataError, match="element 3 is 2"):
        bt.backtest_signals(bars, np.array([0, 0, 0, 2] + [0] * 46), periods_per_year=252)
    with pytest.raises(DataError, match="-1 \\(short\\)"):
        bt.backtest_signals(bars, np.r_[np.nan, np.zeros(49)], periods_per_year=252)
    broken = bars.copy()
    broken.iloc[7, broken.columns.get_loc("open")] = np.nan
    with pytest.raises(DataError, match=r"ohlcv\['open'\] must be finite and > 0; row 7"):
        bt.backtest_signals(broken, ok, periods_per_year=252)
    with pytest.raises(DataError, match="lacks column"):
        bt.backtest_signals(bars.drop(columns="close"), ok, periods_per_year=252)
    with pytest.raises(DataError, match="strictly increasing"):
        bt.backtest_signals(bars.iloc[::-1], ok, periods_per_year=252)
    with pytest.raises(DataError, match="at least 2 bars"):
        bt.backtest_signals(bars.iloc[:1], ok[:1], periods_per_year=252)
    with pytest.raises(DataError, match="index differs"):
        bt.backtest_signals(bars, pd.Series(ok, index=nvda.index[1:51]), periods_per_year=252)
    with pytest.raises(ConfigError, match="periods_per_year"):
        bt.backtest_signals(bars, ok, periods_per_year=0)
    with pytest.raises(ConfigError, match="CostModel"):
        bt.backtest_signals(bars, ok, costs=5, periods_per_year=252)


def test_weighted_consensus_follows_the_weight() -> None:
    a, b = _p((0.1, 0.1, 0.8)), _p((0.3, 0.4, 0.3))
    assert bt.consensus_signal(a, b, rule="weighted", threshold=0.5, weight=0.5).tolist() == [1]   # 0.55
    assert bt.consensus_signal(a, b, rule="weighted", threshold=0.5, weight=0.2).tolist() == [0]   # 0.40
    assert bt.consensus_signal(a, b, rule="weighted", threshold=0.5, weight=1.0).tolist() == [1]   # A alone
    with pytest.raises(ConfigError):
        bt.consensus_signal(a, b, rule="weighted", threshold=0.5, weight=1.5)


def test_periods_per_year_of_intraday_bars_is_bars_per_session_times_sessions(indexfut: pd.DataFrame) -> None:
    """1-minute index future, Jan-Feb 2006: 41 sessions on all 41 weekdays of the span, so 365.25 * 5/7
    sessions a year, times the mean bars of the sessions between the first and the last. Steps over
    calendar time (the old rule) gave 199 534 on the file and 203 470 / 185 203 on its first 80 % /
    last 20 %; the session rule is stable across the search span and the holdout."""
    idx = indexfut.index
    per_session = pd.Series(1, index=idx).groupby(idx.normalize()).size()
    assert len(per_session) == 41 and set(per_session.index.day_of_week) == {0, 1, 2, 3, 4}
    expected = per_session.iloc[1:-1].mean() * 365.25 * 5 / 7
    assert bt.periods_per_year(idx) == pytest.approx(expected, rel=1e-12)
    assert bt.periods_per_year(idx) == pytest.approx(197_750.1, rel=1e-6)
    cut = len(idx) - int(round(0.2 * len(idx)))
    search, holdout = bt.periods_per_year(idx[:cut]), bt.periods_per_year(idx[cut:])
    assert abs(search / holdout - 1) < 0.035 and abs(search / bt.periods_per_year(idx) - 1) < 0.01


def test_periods_per_year_of_synthetic_sessions() -> None:
    # one week Monday..Friday, 10 one-minute bars a day: 10 bars x 260.9 sessions a year
    days = pd.date_range("2024-01-01", periods=5, freq="D")     # 2024-01-01 is a Monday
    week = pd.DatetimeIndex([d + pd.Timedelta(hours=9, minutes=m) for d in days for m in range(10)])
    assert bt.periods_per_year(week) == pytest.approx(10 * 365.25 * 5 / 7, rel=1e-12)
    # a holiday on Wednesday: 4 sessions on 5 weekdays
    holiday = week[(week.normalize() != days[2])]
    assert bt.periods_per_year(holiday) == pytest.approx(10 * 4 / 5 * 365.25 * 5 / 7, rel=1e-12)
    # 24/7 data, 8 days of 1-minute bars: minutes in a year
    crypto = pd.date_range("2024-01-01", periods=8 * 1440, freq="min")
    assert bt.periods_per_year(crypto) == pytest.approx(1440 * 365.25, rel=1e-12)
    # under a week, Monday..Friday is assumed: three days of 10 bars count as 10 x 260.9
    assert bt.periods_per_year(week[:30]) == pytest.approx(10 * 365.25 * 5 / 7, rel=1e-12)


def test_metrics_do_not_overflow() -> None:
    """Bars one second apart annualise to ~3e7 bars a year: the CAGR of 0.1 % a bar overflowed a
    float (an OverflowError in calmar_ratio). Every metric stays finite; figures beyond METRIC_CAP
    are clipped to it."""
    from backtest.metrics import METRIC_CAP

    r = np.full(500, 0.001)
    r[100] = -0.01
    ppy = 365.25 * 24 * 3600
    assert bt.calmar_ratio(r, ppy) == METRIC_CAP
    assert np.isfinite(bt.sharpe_ratio(r, ppy)) and np.isfinite(bt.sortino_ratio(r, ppy))
    doubling = np.r_[np.full(1100, 1.0), -0.5]       # 2 ** 1100 overflows a float
    assert bt.total_return(doubling) == METRIC_CAP
    assert bt.max_drawdown(doubling) == pytest.approx(0.5, rel=1e-12)
    assert bt.calmar_ratio(doubling, 252) == METRIC_CAP
    assert bt.max_drawdown(np.r_[0.1, -1.0, 0.0]) == 1.0 and bt.total_return(np.r_[0.1, -1.0]) == -1.0
    assert bt.calmar_ratio(np.r_[0.1, -1.0], 252) == -1.0
