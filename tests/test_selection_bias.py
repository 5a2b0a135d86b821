"""The honesty figures of a run (DSR, PBO) over its trials: trials that never trade are left out,
low-fidelity screens count, and every figure says how many trials it used. Records made here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evo.commands.front import print_front
from evo.reporting.front import TRIALS_RULE, front_payload, latest_screens, selection_bias
from evo.search.records import Record
from evo.search.store import RunStore

T = 400
GENOME = {
    "model_a": {"features": ["body_range", "close_pos"], "embedding_dim": 8, "num_blocks": 1, "num_heads": 2,
                "slstm_at": [], "dropout": 0.0},
    "model_b": {"features": ["logret_1", "rsi_7"], "embedding_dim": 8, "num_blocks": 1, "num_heads": 2,
                "slstm_at": [], "dropout": 0.0},
    "seq_len": 8, "horizon": 1, "consensus": "weighted", "threshold": 0.4,
}


def record(key: str, returns: np.ndarray, *, fidelity: str = "full", trades: int | None = None) -> Record:
    r = np.asarray(returns, dtype=np.float64)
    traded = bool(np.any(r != 0))
    trades = (12 if traded else 0) if trades is None else trades
    equity = np.cumprod(1 + r)
    result = {"returns": r.tolist(), "sharpe": float(r.mean() / r.std() * np.sqrt(252)) if traded else 0.0,
              "max_drawdown": float(np.max(1 - equity / np.maximum.accumulate(np.maximum(equity, 1)))),
              "total_return": float(equity[-1] - 1), "trades": trades, "exposure": 0.5 if traded else 0.0,
              "traded": trades > 0, "enough_trades": trades >= 10, "accuracy_a": 0.5, "accuracy_b": 0.5,
              "lr_a": 1e-3, "lr_b": 1e-3, "test_bars": T, "seconds": 1.0,
              "test_start": "2010-01-01T00:00:00", "test_end": "2011-07-01T00:00:00"}
    return Record(key, GENOME, 0, result, None, fidelity)


def trading(n: int, seed: int, *, prefix: str = "g", fidelity: str = "full", edge: float = 0.0) -> list[Record]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        r = rng.normal(0.0, 0.01, T)
        if i == 0:
            r += edge
        out.append(record(f"{prefix}{i:02d}", r, fidelity=fidelity))
    return out


def idle(n: int, *, prefix: str = "z", fidelity: str = "full") -> list[Record]:
    return [record(f"{prefix}{i:02d}", np.zeros(T), fidelity=fidelity) for i in range(n)]


def test_dsr_and_pbo_leave_out_trials_that_never_traded():
    active = trading(6, seed=1, edge=0.002)
    alone = selection_bias(active)
    with_idle = selection_bias(active + idle(5))
    assert with_idle.dsr == alone.dsr and set(alone.dsr) == {r.key for r in active}
    assert with_idle.pbo == alone.pbo is not None
    assert (with_idle.trials, with_idle.no_trade, with_idle.dsr_trials, with_idle.pbo_trials) == (11, 5, 6, 6)
    assert (alone.trials, alone.no_trade, alone.dsr_trials) == (6, 0, 6)
    # a record claiming trades but with flat returns is not a trial that traded either
    flat = record("y00", np.zeros(T), trades=12)
    assert selection_bias(active + [flat]).dsr == alone.dsr


def test_a_run_whose_trials_never_trade_says_not_meaningful():
    for records in (idle(8), trading(1, seed=2) + idle(8)):
        bias = selection_bias(records)
        assert bias.pbo is None and bias.dsr == {}
        assert bias.pbo_note.startswith("not meaningful") and bias.dsr_note.startswith("not meaningful")
        payload = front_payload({r.key: r for r in records}, {}, "run")
        assert payload["pbo"] is None and payload["pbo_note"] == bias.pbo_note
        assert payload["no_trade"] == 8 and payload["trials"] == len(records)
        json.dumps(payload, allow_nan=False)


def test_low_fidelity_screens_count_as_trials_for_dsr_and_pbo():
    full = trading(4, seed=3, edge=0.002)
    screens = trading(20, seed=4, prefix="s", fidelity="low") + idle(2, prefix="q", fidelity="low")
    odd = record("s99", np.random.default_rng(5).normal(0, 0.01, T - 7), fidelity="low")  # another span
    bias = selection_bias(full, screens + [odd])
    assert (bias.trials, bias.screens, bias.no_trade, bias.dsr_trials, bias.pbo_trials) == (27, 23, 2, 25, 24)
    unscreened = selection_bias(full)
    assert unscreened.dsr_trials == 4
    assert bias.dsr["g00"] < unscreened.dsr["g00"]    # more trials: a higher bar for the best one
    payload = front_payload({r.key: r for r in full}, {}, "run", screens=screens)
    assert payload["dsr_trials"] == 24 and payload["low_fidelity"] == 22 and payload["evaluated"] == 4
    assert payload["trials_rule"] == TRIALS_RULE and "screen" in TRIALS_RULE
    # a resumed run may journal a screen twice: it is one trial
    assert [r.key for r in latest_screens(full + screens + screens[:3])] == sorted(r.key for r in screens)


def test_evo_front_prints_how_many_trials_each_figure_used(tmp_path, capsys):
    store = RunStore.create(tmp_path / "run", {})
    for r in trading(5, seed=6, edge=0.003) + idle(3) + trading(4, seed=7, prefix="s", fidelity="low"):
        store.append(r)
    print_front(RunStore.open(tmp_path / "run"), as_json=False, top=None)
    out = capsys.readouterr().out
    assert "DSR over 9 trials, PBO over 9; 3 of 12 never traded" in " ".join(out.split())
    print_front(RunStore.open(tmp_path / "run"), as_json=True, top=None)
    payload = json.loads(capsys.readouterr().out)
    assert (payload["trials"], payload["dsr_trials"], payload["no_trade"], payload["low_fidelity"]) == (12, 9, 3, 4)
    assert payload["members"] and all(m["dsr"] is not None for m in payload["members"])

    idle_store = RunStore.create(tmp_path / "idle", {})
    for r in idle(4):
        idle_store.append(r)
    print_front(RunStore.open(tmp_path / "idle"), as_json=False, top=None)
    out = " ".join(capsys.readouterr().out.split())
    assert "DSR not meaningful, PBO not meaningful" in out and "PBO 0.00" not in out
    assert "not meaningful: 0 trial(s) traded, fewer than 2" in out


@pytest.mark.parametrize("seed", [0, 1])
def test_selection_figures_do_not_depend_on_the_order_of_the_records(seed):
    records = trading(5, seed=8) + idle(4)
    rng = np.random.default_rng(seed)
    shuffled = [records[i] for i in rng.permutation(len(records))]
    a, b = selection_bias(records), selection_bias(shuffled)
    assert a == b


def test_the_report_honesty_table_says_how_many_trials_each_figure_used():
    from html import unescape

    from evo.reporting.report import honesty_table

    records = {r.key: r for r in trading(3, seed=9) + idle(2)}
    page = unescape(honesty_table(front_payload(records, {}, "run"), records, [], None))
    assert "trials that never traded (left out of DSR and PBO)</td><td>2<" in page
    assert "trials DSR's expected maximum counts (the trading ones)</td><td>3<" in page
    assert " over 3 trading trials" in page
    idle_only = {r.key: r for r in idle(3)}
    page = unescape(honesty_table(front_payload(idle_only, {}, "run"), idle_only, [], None))
    assert "not meaningful: 0 trial(s) traded, fewer than 2" in page
