"""Risk rules and the extra metrics on hand-made series and real data (real vectorbt)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest import (
    CostModel,
    RiskRules,
    backtest_signals,
    calmar_ratio,
    profit_factor,
    sortino_ratio,
    turnover,
    win_rate,
)
from evo.errors import ConfigError

FREE = CostModel(0.0, 0.0)


def bars(close, open_=None, high=None, low=None):
    close = np.asarray(close, dtype=float)
    open_ = close if open_ is None else np.asarray(open_, dtype=float)
    high = np.maximum(open_, close) if high is None else np.asarray(high, dtype=float)
    low = np.minimum(open_, close) if low is None else np.asarray(low, dtype=float)
    idx = pd.date_range("2020-01-01", periods=len(close), freq="D")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=idx)


def test_metric_worked_values():
    assert sortino_ratio(np.array([0.02, -0.01, 0.02, -0.01]), 252) == pytest.approx(11.2250, rel=1e-4)
    r = np.full(252, (1.10) ** (1 / 252) - 1)
    r[10] -= 0.05           # one bad day: drawdown ~5 %
    assert calmar_ratio(r, 252) == pytest.approx((np.prod(1 + r) - 1) / 0.05, rel=0.05)
    assert win_rate(np.array([0.02, -0.01, 0.03, 0.0])) == 0.5
    assert profit_factor(np.array([0.02, -0.01, 0.03, -0.01])) == pytest.approx(2.5)
    assert profit_factor(np.array([0.02])) == 100.0 and profit_factor(np.array([])) == 0.0
    assert turnover(np.array([0, 1, 1, 0]), 252) == 126.0


def test_fixed_fraction_halves_the_first_bar_return():
    b = bars([100, 100, 110, 121], open_=[100, 100, 100, 110])
    full = backtest_signals(b, np.array([1, 1, 1, 0]), costs=FREE, periods_per_year=252)
    half = backtest_signals(b, np.array([1, 1, 1, 0]), costs=FREE, periods_per_year=252, risk=RiskRules(size=0.5))
    assert full.returns[1] == pytest.approx(0.0) and full.returns[2] == pytest.approx(0.10)
    assert half.returns[2] == pytest.approx(0.05, rel=1e-6)
    assert half.turnover < full.turnover


def test_stop_loss_exits_at_the_stop_and_does_not_reenter_while_the_signal_stays_long():
    # Entry at open[1] = 100; bar 2 trades down to 95 (low), a 2 % stop fills at 98.
    b = bars(close=[100, 100, 96, 97, 99, 101], open_=[100, 100, 99, 96, 97, 99],
             low=[100, 99.5, 95, 95.5, 96.5, 98.5], high=[100, 100.5, 99.5, 97.5, 99.5, 101.5])
    sig = np.array([1, 1, 1, 1, 1, 0])
    res = backtest_signals(b, sig, costs=FREE, periods_per_year=252, risk=RiskRules(stop_loss=0.02))
    assert res.trades == 1
    assert res.trade_returns[0] == pytest.approx(-0.02, abs=1e-9)
    assert np.allclose(res.returns[3:], 0.0)      # flat after the stop although the signal is long
    no_stop = backtest_signals(b, sig, costs=FREE, periods_per_year=252)
    assert no_stop.total_return != pytest.approx(res.total_return)


def test_take_profit_exits_at_the_target():
    b = bars(close=[100, 100, 104, 110, 111], open_=[100, 100, 101, 104, 110],
             high=[100, 100.5, 106, 111, 112], low=[100, 99.5, 100.5, 103.5, 109.5])
    res = backtest_signals(b, np.array([1, 1, 1, 1, 0]), costs=FREE, periods_per_year=252,
                           risk=RiskRules(take_profit=0.05))
    assert res.trades == 1 and res.trade_returns[0] == pytest.approx(0.05, abs=1e-9)


def test_circuit_breaker_stops_trading_after_the_breach_and_keeps_the_past(nvda):
    span = nvda.iloc[2000:2600]
    sig = np.ones(len(span), dtype=np.int8)
    free = backtest_signals(span, sig, costs=FREE, periods_per_year=252)
    assert free.max_drawdown > 0.2
    broken = backtest_signals(span, sig, costs=FREE, periods_per_year=252, risk=RiskRules(breaker=0.2))
    equity = np.cumprod(1 + free.returns)
    first = int(np.flatnonzero(1 - equity / np.maximum.accumulate(np.maximum(equity, 1)) > 0.2)[0])
    np.testing.assert_allclose(broken.returns[: first + 1], free.returns[: first + 1])
    assert np.allclose(broken.returns[first + 2:], 0.0)
    assert broken.max_drawdown < free.max_drawdown


@pytest.mark.parametrize("bad", [dict(size=0.0), dict(size=1.5), dict(stop_loss=0.0), dict(take_profit=1.0),
                                 dict(breaker=-0.1)])
def test_invalid_risk_rules(bad):
    with pytest.raises(ConfigError):
        RiskRules(**bad)


def test_stops_are_measured_from_the_fill_not_the_entry_bars_close():
    # Fill at open[1] = 100; the entry bar closes at 110, the next bar's low is 106. A 3 % stop under
    # the fill sits at 97 and never triggers (measured from the close, 110 * 0.97 = 106.7 would).
    b = bars(close=[100, 110, 108, 109], open_=[100, 100, 109, 108],
             low=[100, 99, 106, 107.5], high=[100, 111, 109.5, 109.5])
    res = backtest_signals(b, np.array([1, 1, 1, 1]), costs=FREE, periods_per_year=252,
                           risk=RiskRules(stop_loss=0.03))
    assert res.trades == 1 and res.exposure == 0.75
    assert res.trade_returns[0] == pytest.approx(109 / 100 - 1, abs=1e-12)   # still open, marked to the close
    # Take-profit likewise: 5 % over the fill is 105, touched by the entry bar's own high (111).
    tp = backtest_signals(b, np.array([1, 1, 1, 1]), costs=FREE, periods_per_year=252,
                          risk=RiskRules(take_profit=0.05))
    assert tp.trades == 1 and tp.trade_returns[0] == pytest.approx(0.05, abs=1e-12)
    assert tp.returns[1] == pytest.approx(0.05, abs=1e-12) and np.allclose(tp.returns[2:], 0.0)


def test_the_entry_bar_own_range_triggers_the_stop():
    # Long filled at 100 (open[1]); the entry bar dips to 96 before closing at 101: a 3 % stop at 97
    # fills inside the entry bar, and the position stays flat while the signal stays long.
    b = bars(close=[100, 101, 104, 106], open_=[100, 100, 101, 104],
             low=[100, 96, 100.5, 103.5], high=[100, 101.5, 104.5, 106.5])
    sig = np.array([1, 1, 1, 1])
    res = backtest_signals(b, sig, costs=FREE, periods_per_year=252, risk=RiskRules(stop_loss=0.03))
    assert res.trades == 1 and res.trade_returns[0] == pytest.approx(-0.03, abs=1e-12)
    assert res.returns[1] == pytest.approx(-0.03, abs=1e-12) and np.allclose(res.returns[2:], 0.0)
    assert res.exposure == 0.0          # flat at every close
    # A short filled at 100 whose entry bar spikes to 104 stops at 103.
    s = bars(close=[100, 99, 97, 95], open_=[100, 100, 99, 97],
             low=[100, 98.5, 96.5, 94.5], high=[100, 104, 99.5, 97.5])
    short = backtest_signals(s, -sig, costs=FREE, periods_per_year=252, risk=RiskRules(stop_loss=0.03))
    assert short.trades == 1 and short.trade_returns[0] == pytest.approx(-0.03, abs=1e-12)
    assert np.allclose(short.returns[2:], 0.0)


def test_stop_levels_include_slippage_and_the_stop_exit_pays_it():
    # 10 bps slippage: the long fills at 100.1, a 3 % stop sits at 97.097 and the exit sells at
    # 97.097 * (1 - 0.001). No fees.
    b = bars(close=[100, 101, 104, 106], open_=[100, 100, 101, 104],
             low=[100, 97.05, 100.5, 103.5], high=[100, 101.5, 104.5, 106.5])
    res = backtest_signals(b, np.array([1, 1, 1, 1]), costs=CostModel(0.0, 10.0), periods_per_year=252,
                           risk=RiskRules(stop_loss=0.03))
    fill = 100 * 1.001
    assert res.trades == 1
    assert res.trade_returns[0] == pytest.approx(fill * 0.97 * 0.999 / fill - 1, abs=1e-12)
    # The same bar's low of 97.10 (above 97.097) does not trigger it.
    b.loc[b.index[1], "low"] = 97.10
    held = backtest_signals(b, np.array([1, 1, 1, 1]), costs=CostModel(0.0, 10.0), periods_per_year=252,
                            risk=RiskRules(stop_loss=0.03))
    assert held.exposure == 0.75


def test_a_gap_through_the_stop_exits_at_the_open():
    b = bars(close=[100, 101, 90, 91], open_=[100, 100, 92, 90],
             low=[100, 99, 89, 89.5], high=[100, 101.5, 92.5, 91.5])
    res = backtest_signals(b, np.array([1, 1, 1, 1]), costs=FREE, periods_per_year=252,
                           risk=RiskRules(stop_loss=0.03))
    assert res.trades == 1 and res.trade_returns[0] == pytest.approx(-0.08, abs=1e-12)


def test_stops_with_a_fraction_of_equity_and_a_reversal():
    # Half the equity long at 100, stopped at 97 in the entry bar; the signal turns short at bar 3's
    # open (100) and that short is stopped at 103 (entry bar high 104).
    b = bars(close=[100, 100, 100, 101, 100], open_=[100, 100, 100, 100, 101],
             low=[100, 96, 99, 99.5, 99.5], high=[100, 101, 101, 104, 101.5])
    res = backtest_signals(b, np.array([1, 1, -1, -1, -1]), costs=FREE, periods_per_year=252,
                           risk=RiskRules(size=0.5, stop_loss=0.03))
    assert res.trades == 2
    np.testing.assert_allclose(res.trade_returns, [-0.03, -0.03], atol=1e-12)
    assert res.returns[1] == pytest.approx(-0.015, abs=1e-12)
    assert res.returns[3] == pytest.approx(-0.015, abs=1e-12)


def test_stops_agree_with_vectorbt_from_signals_until_an_entry_bar_touches_a_level(nvda):
    """vectorbt's from_signals (stops from the fill price, StopMarket exits) checks stops from the bar
    after the entry only; on NVDA long/short with 3 % / 6 % stops and costs, backtest_signals gives
    the same returns up to the first entry bar whose own range touches a level, and differs there."""
    from backtest.portfolio import _backtest, _check_ohlcv

    span = nvda.iloc[-939:]
    close = span["close"]
    sig = np.sign(close - close.rolling(20).mean()).fillna(0).to_numpy().astype(np.int8)
    costs, risk = CostModel(5, 5), RiskRules(stop_loss=0.03, take_profit=0.06)
    res = backtest_signals(span, sig, costs=costs, periods_per_year=252, risk=risk)
    o, c = _check_ohlcv(span)
    ref = _backtest(span, o, c, sig, costs, 252, risk, engine="signals")
    held = np.r_[0, sig[:-1]]
    before = np.r_[0, held[:-1]]
    hi, lo = span["high"].to_numpy(), span["low"].to_numpy()
    first = None
    for i in np.flatnonzero((held != 0) & (held != before)):
        d = held[i]
        fill = o[i] * (1 + d * costs.slippage)
        sl, tp = fill * (1 - d * risk.stop_loss), fill * (1 + d * risk.take_profit)
        if (lo[i] <= sl or hi[i] >= tp) if d > 0 else (hi[i] >= sl or lo[i] <= tp):
            first = i
            break
    assert first is not None and first > 50
    np.testing.assert_allclose(res.returns[:first], ref.returns[:first], rtol=1e-9, atol=1e-12)
    assert res.returns[first] != pytest.approx(ref.returns[first], abs=1e-6)
