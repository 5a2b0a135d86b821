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


# ------------------------------------------------------------------------------------ the runner

import contextlib  # noqa: E402
import json as _json  # noqa: E402
import sqlite3  # noqa: E402

import pandas as pd  # noqa: E402

from evo.deploy.ledger import Ledger  # noqa: E402
from evo.deploy.live import FileFeed, LiveConfig, LiveRunner, YfFeed, missing_slots  # noqa: E402
from evo.errors import StoreError  # noqa: E402

HEADER = "Date,Open,High,Low,Close,Volume\n"


def live_genome():
    from evo.genome import Genome, ModelGenes

    return Genome(model_a=ModelGenes(("body_range", "close_pos", "gap"), 8, 1, 2, (0,), 0.0),
                  model_b=ModelGenes(("logret_5", "bb_pctb_20_2", "realvol_20"), 8, 1, 2, (), 0.0),
                  seq_len=8, horizon=2, consensus="weighted", threshold=0.36)


@pytest.fixture(scope="module")
def lbundle(nvda, tmp_path_factory):
    """(path, Bundle): finite-memory features (tail_bars = min_bars = 28), shorts, a 3 % stop, a 6 %
    take-profit, half-size positions and a 30 % breaker."""
    from test_bundle import TINY, record

    from evo.config import budget_from_dict
    from evo.deploy.bundle import Bundle
    from evo.deploy.export import train_final, write_member_bundle
    from evo.evaluation.dataset import prepare_dataset
    from evo.search.records import Record

    g = live_genome()
    base = record(g)
    rec = Record(key=base.key, genome=base.genome, generation=0,
                 result={**base.result, "risk": {"threshold": 0.36, "weight": 0.6, "stop_loss": 0.03,
                                                 "take_profit": 0.06, "size": 0.5}})
    budget = budget_from_dict("tiny", {**TINY, "evaluate": {**TINY["evaluate"], "allow_short": True, "breaker": 0.3}})
    ds = prepare_dataset(nvda.iloc[-1500:].copy(), "nvda", budget)
    fit = train_final(rec, ds, budget, seed=1)
    path = tmp_path_factory.mktemp("live") / "live.evo"
    write_member_bundle(fit, rec, ds, budget, path)
    return path, Bundle.load(path)


def row(t, values) -> str:
    o, h, lo, c, v = map(float, values)
    return f"{pd.Timestamp(t).date()},{o!r},{h!r},{lo!r},{c!r},{v!r}\n"


def append(path, bars: pd.DataFrame, *, header: bool = False) -> None:
    with open(path, "a") as fh:
        fh.write((HEADER if header else "") + "".join(row(t, v) for t, v in zip(bars.index, bars.to_numpy())))


@contextlib.contextmanager
def runner(b, tmp_path, *, closed="next", now=None, feed=None, **config):
    ledger = Ledger.open(tmp_path / "ledger.sqlite", {"bundle_sha256": "test", "source": "feed", "closed": closed})
    decisions = []
    try:
        yield LiveRunner(b, ledger, feed or FileFeed(tmp_path / "feed.csv"), LiveConfig(closed=closed, **config),
                         emit=decisions.append, now=now, sleep=lambda s: None), decisions
    finally:
        ledger.close()


def table(tmp_path, name: str) -> list[dict]:
    with Ledger.open(tmp_path / "ledger.sqlite") as led:
        return led.rows(name)


def events(tmp_path, kind: str) -> list[dict]:
    return [e for e in table(tmp_path, "events") if e["kind"] == kind]


def test_the_runner_decides_each_closed_bar_once_and_reconciles(lbundle, nvda, tmp_path):
    """Bars arrive in bursts of 1..6; under ``--closed next`` each is decided once, when the next row
    appears, and the ledger equals the backtest (decisions, fills, equity) with zero differences."""
    from evo.deploy.reconcile import reconcile

    _, b = lbundle
    bars = nvda.iloc[-300:]
    feed = tmp_path / "feed.csv"
    append(feed, bars.iloc[:40], header=True)
    rng = np.random.default_rng(3)
    n = 40
    with runner(b, tmp_path) as (r, out):
        assert r.poll() == (1, True)                 # primes on 38 closed bars, decides the 39th
        while n < len(bars):
            k = min(len(bars), n + int(rng.integers(1, 7)))
            append(feed, bars.iloc[n:k])
            n = k
            r.poll()
        assert r.poll() == (0, True)                 # nothing new: nothing decided twice
    decided = [d["time"] for d in table(tmp_path, "decisions")]
    assert decided == [t.isoformat() for t in bars.index[38:-1]] == [d["time"] for d in out]
    assert {d["signal"] for d in out} == {"long", "flat", "short"}
    reasons = {f["reason"] for f in table(tmp_path, "fills")}
    assert {"entry", "exit", "stop_loss"} <= reasons
    with Ledger.open(tmp_path / "ledger.sqlite") as led:
        result = reconcile(led, b, nvda)
    assert result.ok, [d.line() for d in result.differences[:5]]
    assert result.bars == len(decided) and result.fills == len(table(tmp_path, "fills"))


def test_closed_clock_decides_the_last_row_once_its_interval_has_passed(lbundle, nvda, tmp_path):
    _, b = lbundle
    bars = nvda.iloc[-60:]
    append(tmp_path / "feed.csv", bars, header=True)
    last = bars.index[-1]
    clock = {"now": last + pd.Timedelta(hours=12)}   # the last daily bar (stamped at its open) still runs
    with runner(b, tmp_path, closed="clock", now=lambda: clock["now"]) as (r, out):
        assert r.poll() == (1, True) and out[-1]["time"] == bars.index[-2].isoformat()
        clock["now"] = last + pd.Timedelta(days=1)
        assert r.poll() == (1, True) and out[-1]["time"] == last.isoformat()
        assert r.poll() == (0, True)


def test_a_gap_is_logged_and_flags_its_decision(lbundle, nvda, tmp_path):
    _, b = lbundle
    bars = nvda.loc["2014-06-02":"2014-08-29"]
    holed = bars.drop(index=[pd.Timestamp("2014-08-13")])    # a Wednesday
    append(tmp_path / "feed.csv", holed.iloc[:40], header=True)
    with runner(b, tmp_path) as (r, out):
        r.poll()
        append(tmp_path / "feed.csv", holed.iloc[40:])
        r.poll()
    flagged = {d["time"]: d["flags"] for d in out if "gap" in d["flags"]}
    assert list(flagged) == ["2014-08-14T00:00:00"]
    gap = events(tmp_path, "gap")
    assert [(e["time"], _json.loads(e["detail"])["missing"]) for e in gap] == [("2014-08-14T00:00:00", 1)]
    assert missing_slots(pd.Timestamp("2014-07-03"), pd.Timestamp("2014-07-07"), b.bar_clock()) == 1  # July 4th
    assert missing_slots(pd.Timestamp("2014-08-08"), pd.Timestamp("2014-08-11"), b.bar_clock()) == 0  # a weekend


def test_duplicates_are_ignored_out_of_order_rows_and_bad_bars_refused(lbundle, nvda, tmp_path):
    _, b = lbundle
    bars = nvda.iloc[-80:]
    feed = tmp_path / "feed.csv"
    append(feed, bars.iloc[:50], header=True)
    with runner(b, tmp_path) as (r, out):
        r.poll()
        before = len(table(tmp_path, "decisions"))
        append(feed, bars.iloc[[45, 48]])                         # the same bars again
        bad = bars.iloc[[50]].copy()
        bad["high"] = bad["low"] * 0.5                              # high below low
        old = nvda.loc[[pd.Timestamp("2014-01-02")]]                # long before the newest bar, never seen
        append(feed, old)
        append(feed, bad)
        append(feed, bars.iloc[50:53])
        r.poll()
        r.poll()                                                    # read again: nothing logged twice
    assert len(table(tmp_path, "decisions")) == before + 3        # 49 (closed by 50), 50, 51
    assert [e["time"] for e in events(tmp_path, "duplicate")] == [bars.index[45].isoformat(),
                                                                  bars.index[48].isoformat()]
    assert [e["time"] for e in events(tmp_path, "out_of_order")] == ["2014-01-02T00:00:00"]
    assert [e["time"] for e in events(tmp_path, "bad_bar")] == [bars.index[50].isoformat()]
    decided = [d["time"] for d in table(tmp_path, "decisions")]
    assert "2014-01-02T00:00:00" not in decided and decided == sorted(set(decided))
    # the refused bad row did not become the bar: the good row with its time, after it, did
    stored = {x["time"]: x for x in table(tmp_path, "bars")}
    assert stored[bars.index[50].isoformat()]["high"] == bars["high"].iloc[50]


def test_a_revised_bar_is_logged_its_decision_stands_and_later_ones_are_flagged(lbundle, nvda, tmp_path):
    _, b = lbundle
    bars = nvda.iloc[-80:]
    feed = tmp_path / "feed.csv"
    append(feed, bars.iloc[:50], header=True)
    with runner(b, tmp_path) as (r, out):
        r.poll()
        r.poll()
        first = table(tmp_path, "decisions")
        revised = bars.iloc[[48]].copy()
        revised["close"] *= 1.01
        revised["high"] = revised[["high", "close"]].max(axis=1)
        append(feed, revised)
        append(feed, bars.iloc[50:60])
        r.poll()
    ev = events(tmp_path, "revised")
    assert len(ev) == 1 and ev[0]["time"] == bars.index[48].isoformat()
    detail = _json.loads(ev[0]["detail"])
    assert detail["accepted"] and detail["first"][3] == bars["close"].iloc[48]
    assert detail["now"][3] != detail["first"][3]
    assert table(tmp_path, "decisions")[: len(first)] == first     # append-only: nothing rewritten
    flags = {d["time"]: d["flags"] for d in out}
    window = [t.isoformat() for t in bars.index[49:48 + b.seq_len]]   # later decisions with bar 48 in their window
    assert all("revised" in flags[t] for t in window)
    assert "revised" not in flags[bars.index[48 + b.seq_len].isoformat()]
    stored = {x["time"]: x["close"] for x in table(tmp_path, "bars")}
    assert stored[bars.index[48].isoformat()] == bars["close"].iloc[48]   # the bar as first seen


def test_a_stale_feed_is_logged_once_and_decides_nothing(lbundle, nvda, tmp_path):
    _, b = lbundle
    bars = nvda.iloc[-60:]
    append(tmp_path / "feed.csv", bars, header=True)
    clock = {"now": bars.index[-1] + pd.Timedelta(days=1)}
    with runner(b, tmp_path, now=lambda: clock["now"], max_age=pd.Timedelta(days=4)) as (r, out):
        assert r.poll()[0] == 1 and not events(tmp_path, "stale")
        clock["now"] += pd.Timedelta(days=10)
        assert r.poll() == (0, True) and r.poll() == (0, True)
        # a bar that closed long ago is still decided when it arrives, flagged late
        append(tmp_path / "feed.csv", nvda.iloc[[-1]].set_axis([bars.index[-1] + pd.Timedelta(days=1)]))
        assert r.poll()[0] == 1 and "late" in out[-1]["flags"]
    stale = events(tmp_path, "stale")
    assert [e["time"] for e in stale] == [bars.index[-1].isoformat()]


def test_a_torn_last_line_waits_for_its_newline(lbundle, nvda, tmp_path):
    _, b = lbundle
    bars = nvda.iloc[-50:]
    feed = tmp_path / "feed.csv"
    append(feed, bars.iloc[:40], header=True)
    with runner(b, tmp_path) as (r, out):
        r.poll()
        text = row(bars.index[40], bars.iloc[40].to_numpy()) + row(bars.index[41], bars.iloc[41].to_numpy())
        with open(feed, "a") as fh:
            fh.write(text[:-7])                       # the writer is in the middle of row 41
        assert r.poll() == (1, True)                  # row 40 closes bar 39; row 41 is not read yet
        with open(feed, "a") as fh:
            fh.write(text[-7:])
        assert r.poll() == (1, True) and out[-1]["time"] == bars.index[40].isoformat()
    assert not table(tmp_path, "events")


def test_offline_yfinance_logs_one_line_and_backs_off(lbundle, nvda, tmp_path, caplog):
    """No network here: the download function is injected; it fails twice, then serves bars."""
    _, b = lbundle
    bars = nvda.iloc[-60:]
    calls = []

    def download(ticker, *, interval, period=None, start=None):
        calls.append(start or period)
        if len(calls) <= 2:
            raise ConnectionError("Failed to resolve 'query1.finance.yahoo.com'")
        return bars.rename(columns=str.capitalize)

    sleeps = []
    feed = YfFeed("NVDA", "1d", "max", download=download, now=lambda: bars.index[-1] + pd.Timedelta(days=3))
    with runner(b, tmp_path, closed="clock", feed=feed, poll_seconds=30, max_backoff_seconds=100,
                now=lambda: bars.index[-1] + pd.Timedelta(days=3)) as (r, out):
        r.sleep = sleeps.append
        assert r.run(max_polls=4) == 1
    assert sleeps == [60, 100, 30]                    # doubled after each failure, capped, back to the poll
    down = events(tmp_path, "feed_down")
    assert len(down) == 1 and "Failed to resolve" in _json.loads(down[0]["detail"])["error"]
    lines = [m for m in caplog.messages if "yf:NVDA" in m]
    assert any("no bars" in m and "Failed to resolve" in m for m in lines)
    assert any("retrying in 60 s" in m for m in lines) and out[-1]["time"] == bars.index[-1].isoformat()


def test_the_ledger_is_append_only_and_belongs_to_one_bundle_and_feed(lbundle, nvda, tmp_path):
    _, b = lbundle
    append(tmp_path / "feed.csv", nvda.iloc[-40:], header=True)
    with runner(b, tmp_path) as (r, _):
        r.poll()
    conn = sqlite3.connect(tmp_path / "ledger.sqlite")
    for stmt in ("UPDATE decisions SET signal = 'long'", "DELETE FROM bars", "UPDATE meta SET value = ''"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(stmt)
    conn.close()
    with pytest.raises(StoreError, match="another source"):
        Ledger.open(tmp_path / "ledger.sqlite", {"bundle_sha256": "test", "source": "other.csv", "closed": "next"})
    with pytest.raises(StoreError, match="no such ledger"):
        Ledger.open(tmp_path / "nothing.sqlite")


# ------------------------------------------------------------------------------- the command line

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from evo.cli import main  # noqa: E402


def cli(capsys, *args: str) -> tuple[int, list[str], list[str]]:
    rc = main(["live", *args])
    out = capsys.readouterr()
    return rc, out.out.splitlines(), [line for line in out.err.splitlines() if line.strip()]


def test_cli_decides_prints_and_reconciles_and_a_changed_bar_exits_1(lbundle, nvda, tmp_path, capsys):
    path, b = lbundle
    bars = nvda.iloc[-120:]
    feed, ledger, data = tmp_path / "feed.csv", str(tmp_path / "ledger.sqlite"), tmp_path / "data.csv"
    append(feed, bars.iloc[:60], header=True)
    append(data, bars, header=True)
    run = ["--bundle", str(path), "--follow", str(feed), "--ledger", ledger, "--once", "--allow-stale", "--no-verify"]
    rc, out, _ = cli(capsys, *run, "--json")
    assert rc == 0 and len(out) == 1 and _json.loads(out[0])["time"] == bars.index[58].isoformat()
    append(feed, bars.iloc[60:])
    rc, out, _ = cli(capsys, *run)
    assert rc == 0 and len(out) == 60 and all("at the next open" in line and "equity" in line for line in out)

    rc, out, err = cli(capsys, "--reconcile", ledger, "--data", str(data), "--no-verify", "--plot",
                       str(tmp_path / "eq.html"))
    assert rc == 0 and out[-1].startswith("reconciled 61 bars") and " 0 differ" in out[-1]
    assert "plotly" in (tmp_path / "eq.html").read_text()[:100000].lower()

    changed = bars.copy()
    changed.iloc[100, changed.columns.get_loc("open")] *= 0.98      # a decided bar whose open the ledger filled at
    changed.iloc[100, changed.columns.get_loc("low")] = changed.iloc[100][["open", "low"]].min()
    append(tmp_path / "changed.csv", changed, header=True)
    rc, out, _ = cli(capsys, "--reconcile", ledger, "--data", str(tmp_path / "changed.csv"), "--no-verify", "--json")
    diffs = [_json.loads(line) for line in out]
    assert rc == 1 and diffs[0] == {"time": bars.index[100].isoformat(), "what": "bar",
                                    "ledger": bars.iloc[100].tolist(), "backtest": changed.iloc[100].tolist()}

    rc, _, err = cli(capsys, "--reconcile", ledger)
    assert rc == 2 and len(err) == 1 and err[0].startswith("evo: error:") and "--data" in err[0]
    rc, _, err = cli(capsys, "--bundle", str(path), "--follow", str(feed))
    assert rc == 2 and len(err) == 1 and "--ledger" in err[0]


def _decided(ledger) -> list[str]:
    if not ledger.exists():
        return []
    conn = sqlite3.connect(ledger, timeout=30)
    try:
        return [r[0] for r in conn.execute("SELECT time FROM decisions ORDER BY seq")]
    except sqlite3.OperationalError:          # created, schema not committed yet
        return []
    finally:
        conn.close()


def _wait(cond, what: str, tries: int = 1200) -> None:
    """Poll ``cond`` every 0.1 s, at most ``tries`` times (a bound, not a timing assert)."""
    for _ in range(tries):
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.mark.slow
def test_kill_9_at_random_moments_then_restart_misses_no_bar_and_decides_none_twice(lbundle, shared_data, tmp_path,
                                                                                     capsys):
    """The shared NVIDIA file is replayed line by line into a followed file while the runner (a real
    ``python -m evo live`` process) is killed with SIGKILL four times, mid-work, and restarted with
    the same arguments. Every bar from the first decision to the last closed one is decided exactly
    once, and the ledger reconciles with the backtest over the shared file with zero differences."""
    path, _ = lbundle
    source = shared_data / "NVDA_1d_1999_2014.csv"
    header, *rows = source.read_text().splitlines(keepends=True)
    rows = rows[-160:]
    feed, ledger = tmp_path / "feed.csv", tmp_path / "ledger.sqlite"
    feed.write_text(header + "".join(rows[:40]))
    cmd = [sys.executable, "-m", "evo", "live", "--bundle", str(path), "--follow", str(feed), "--ledger", str(ledger),
           "--poll", "0.05", "--allow-stale", "--no-verify", "--json"]
    log = open(tmp_path / "runner.log", "a")

    def start():
        return subprocess.Popen(cmd, stdout=log, stderr=log, env={**os.environ, "OMP_NUM_THREADS": "1"})

    rng = np.random.default_rng(19)
    kill_at = sorted(rng.choice(np.arange(50, 150), size=4, replace=False))
    proc, n, kills = start(), 40, 0
    try:
        _wait(lambda: len(_decided(ledger)) >= 1, "the first decision")
        while n < len(rows):
            k = min(len(rows), n + int(rng.integers(1, 6)))
            with open(feed, "a") as fh:
                fh.write("".join(rows[n:k]))
            n = k
            if kills < len(kill_at) and n >= kill_at[kills]:
                time.sleep(rng.uniform(0.0, 0.25))       # anywhere: reading, deciding, inside a transaction
                proc.kill()
                proc.wait()
                kills += 1
                proc = start()
                before = len(_decided(ledger))
                _wait(lambda: len(_decided(ledger)) > before or n - 1 - 38 <= before, "the restarted runner")
            else:
                time.sleep(0.05)
        last = source.read_text().splitlines()[-2].split(",")[0]
        _wait(lambda: (_decided(ledger) or [""])[-1].startswith(last), "the last closed bar")
    finally:
        proc.kill()
        proc.wait()
        log.close()
    assert kills == 4
    decided = _decided(ledger)
    times = [pd.Timestamp(r.split(",")[0]).isoformat() for r in rows]
    assert decided == times[38:-1]                       # none missed, none twice, in order
    conn = sqlite3.connect(ledger)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    bar_times = [r[0] for r in conn.execute("SELECT time FROM bars ORDER BY seq")]
    assert bar_times == times[38 - 27:-1]                # 27 primed bars, then every closed one
    assert conn.execute("SELECT COUNT(*) FROM equity").fetchone()[0] == len(decided)
    conn.close()
    assert main(["live", "--reconcile", str(ledger), "--data", str(source), "--no-verify"]) == 0
    assert f"reconciled {len(decided)} bars" in capsys.readouterr().out


@pytest.mark.slow
def test_live_in_a_fresh_process_imports_no_search_library(lbundle, nvda, tmp_path):
    path, _ = lbundle
    append(tmp_path / "feed.csv", nvda.iloc[-50:], header=True)
    args = ["live", "--bundle", str(path), "--follow", str(tmp_path / "feed.csv"), "--ledger",
            str(tmp_path / "l.sqlite"), "--once", "--allow-stale", "--json"]
    code = ("import sys; from evo.cli import main; "
            f"rc = main({args!r}); "
            "bad = sorted(m for m in ('deap', 'optuna', 'nevergrad', 'vectorbt') if m in sys.modules); "
            "print('LOADED', bad); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout and proc.stdout.count('"signal"') == 1
