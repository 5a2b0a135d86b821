"""`evo live`: the paper account against the backtest, the ledger, the feed's rules, kill -9 and
restart, and the reconciliation.

The paper account is checked against :func:`backtest.backtest_signals` (vectorbt) on real NVIDIA
bars with random signals under every risk rule. The runner tests use one bundle per module (the
tiny budget of test_bundle.py, ~2 s of training on the last 1500 NVIDIA daily bars) whose models
read finite-memory features only, so its tail is short and a decision costs a few milliseconds; its
risk block has stops, a fraction size, shorts and a breaker, so the ledger's fills exercise them all.
"""

from __future__ import annotations

import numpy as np
import pytest

from backtest import CostModel, RiskRules, backtest_signals
from evo.deploy.paper import PaperAccount, RiskSpec

RISKS = {
    "all-in": RiskSpec(),
    "stops-half": RiskSpec(size=0.5, stop_loss=0.03, take_profit=0.05),
    "stop-breaker": RiskSpec(stop_loss=0.02, breaker=0.1),
    "no-costs-breaker": RiskSpec(fees_bps=0, slippage_bps=0, breaker=0.15),
}


def paper_run(bars, signal: np.ndarray, spec: RiskSpec) -> tuple[np.ndarray, np.ndarray, PaperAccount]:
    """(equity per close, fills as (bar, units, price, fees) rows, the account) of ``signal`` traded
    bar by bar: the decision at bar t is the position wanted during t+1."""
    account, want, equity, fills = PaperAccount(risk=spec), 0, [], []
    for i, (o, h, lo, c) in enumerate(bars[["open", "high", "low", "close"]].to_numpy()):
        fills += [(i, f.units, f.price, f.fees) for f in account.on_bar(o, h, lo, c, want)]
        equity.append(account.equity)
        want = account.target(int(signal[i]))
    return np.array(equity), np.array(fills, dtype=np.float64).reshape(-1, 4), account


@pytest.mark.parametrize("short", [False, True])
@pytest.mark.parametrize("name", sorted(RISKS))
def test_paper_account_fills_and_equity_equal_the_backtests(nvda, name, short):
    """The live bookkeeping is vectorbt's, bar by bar: same fills (units, price, fees) and the same
    equity at every close (measured: identical to 1e-15)."""
    spec = RISKS[name]
    bars = nvda.iloc[-600:]
    rng = np.random.default_rng(7)
    signal = rng.choice([-1, 0, 1] if short else [0, 1], size=len(bars) // 5 + 1).astype(np.int8)
    signal = np.repeat(signal, 5)[: len(bars)]          # held for 5 bars: positions last, stops get hit
    bt = backtest_signals(bars, signal, costs=CostModel(spec.fees_bps, spec.slippage_bps), periods_per_year=252,
                          risk=RiskRules(size=spec.size, stop_loss=spec.stop_loss, take_profit=spec.take_profit,
                                         breaker=spec.breaker))
    equity, fills, account = paper_run(bars, signal, spec)
    assert bt.trades >= 2 and len(fills) == len(bt.fills)
    np.testing.assert_allclose(fills, bt.fills, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(equity, bt.equity, rtol=1e-12)
    assert account.tripped == (spec.breaker is not None and bool(np.any(1 - bt.equity / np.maximum.accumulate(
        np.maximum(bt.equity, 1.0)) > spec.breaker)))
    # the state survives a JSON round trip (what the ledger stores per bar)
    import json

    again = PaperAccount.from_state(spec, json.loads(json.dumps(account.state())))
    assert again == account


def test_paper_account_stops_are_measured_from_the_fill_in_the_entry_bar():
    """A long filled at 100 * 1.0005 with a 2 % stop stops at 98.049 inside its own entry bar."""
    spec = RiskSpec(fees_bps=5, slippage_bps=5, stop_loss=0.02)
    acc = PaperAccount(risk=spec)
    assert acc.on_bar(100, 101, 99, 100, 0) == []
    fills = acc.on_bar(100.0, 100.5, 97.0, 99.0, 1)
    assert [f.reason for f in fills] == ["entry", "stop_loss"]
    assert fills[0].price == pytest.approx(100.05) and fills[1].price == pytest.approx(100.05 * 0.98 * 0.9995)
    assert acc.pos == 0 and acc.units == 0.0
    assert acc.on_bar(99, 100, 98, 99, 1) == []          # no re-entry while the signal stays long
    assert [f.reason for f in acc.on_bar(99, 100, 98, 99, 0) + acc.on_bar(99, 100, 98, 99, 1)] == ["entry"]
