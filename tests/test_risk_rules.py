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
