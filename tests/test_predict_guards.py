"""What `predict` and the live stream refuse: bars without volume for a volume model, too short a
history for the indicators to settle, and a stale last bar.

One bundle per module (the tiny budget of test_bundle.py, ~2 s of training on the last 1500
NVIDIA daily bars): model B reads OBV (a volume feature) and the recursive EMA 10 and RSI 14, so
``tail_bars`` (302) lies far above ``min_bars`` (28).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_bundle import TINY, record

from evo.cli import main
from evo.config import budget_from_dict
from evo.deploy.bundle import Bundle
from evo.deploy.export import train_final, write_member_bundle
from evo.errors import DataError
from evo.evaluation.dataset import prepare_dataset
from evo.genome import Genome, ModelGenes


def volume_genome() -> Genome:
    return Genome(
        model_a=ModelGenes(("body_range", "close_pos", "vol_confirm"), 8, 1, 2, (), 0.0),
        model_b=ModelGenes(("obv", "ema_10", "rsi_14"), 8, 1, 2, (), 0.0),
        seq_len=8, horizon=2, consensus="weighted", threshold=0.36,
    )


@pytest.fixture(scope="module")
def vbundle(nvda, tmp_path_factory) -> tuple:
    """(path, Bundle) of a bundle whose models read volume features."""
    budget = budget_from_dict("tiny", TINY)
    ds = prepare_dataset(nvda.iloc[-1500:].copy(), "nvda", budget)
    g = volume_genome()
    fit = train_final(record(g), ds, budget, seed=1)
    path = tmp_path_factory.mktemp("vbundle") / "volume.evo"
    write_member_bundle(fit, record(g), ds, budget, path)
    return path, Bundle.load(path)


def write_csv(path, bars: pd.DataFrame, *, volume: bool = True):
    """Bars as a Yahoo-style CSV (``Date,Open,High,Low,Close[,Volume]``)."""
    out = bars.rename(columns=str.capitalize)
    if not volume:
        out = out.drop(columns="Volume")
    out.to_csv(path, index_label="Date")
    return path


def predict(capsys, *args: str, replay: bool = True) -> tuple[int, str, list[str]]:
    """``evo predict ARGS``: (exit code, stdout, stderr lines). The NVIDIA bars end in 2014:
    ``replay`` adds ``--allow-stale``, as replaying a history file takes."""
    rc = main(["predict", *args, *(["--allow-stale"] if replay else [])])
    captured = capsys.readouterr()
    return rc, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def error_line(err: list[str]) -> str:
    lines = [line for line in err if line.startswith("evo: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_the_bundle_knows_its_volume_features(vbundle):
    _, b = vbundle
    assert b.volume_features == ("vol_confirm", "obv")
    assert b.min_bars == 8 + 20 and b.tail_bars == 302


# ------------------------------------------------------------------------- item 3: volume

@pytest.mark.parametrize("how", ["zero", "missing"])
def test_predict_refuses_bars_without_volume_for_a_volume_model(vbundle, nvda, tmp_path, capsys, how):
    """FX/CFD files carry no volume: OBV and the volume confirmation would be computed from zeros
    (measured: a confident "long" where the same bars with volume say "flat")."""
    path, _ = vbundle
    bars = nvda.iloc[-600:].copy()
    if how == "zero":
        bars["volume"] = 0.0
    csv = write_csv(tmp_path / "fx.csv", bars, volume=how == "zero")
    for extra in ([], ["--stream", "--bars", "3"]):
        rc, out, err = predict(capsys, "--bundle", str(path), "--data", str(csv), *extra)
        assert rc == 2 and out == ""
        line = error_line(err)
        assert str(csv) in line and "volume" in line and "obv" in line and "vol_confirm" in line
    # the same bars with their volume decide
    rc, out, _ = predict(capsys, "--bundle", str(path), "--data", str(write_csv(tmp_path / "v.csv", nvda.iloc[-600:])),
                         "--json")
    assert rc == 0 and json.loads(out)["signal"] in ("long", "flat")


def test_decide_and_step_refuse_bars_without_volume(vbundle, nvda):
    _, b = vbundle
    bars = nvda.iloc[-400:].copy()
    flat = bars.assign(volume=0.0)
    with pytest.raises(DataError, match="obv"):
        b.decide(flat)
    b.reset()
    b.prime(flat.iloc[:-1])
    with pytest.raises(DataError, match="volume features"):
        b.step(flat.iloc[-1])
    assert b.bars_seen == len(flat) - 1          # the refused bar left no trace
    # a volume-less bar now and then (a halt) is not a volume-less feed
    b.reset()
    b.prime(bars.iloc[:-1])
    d = b.step(flat.iloc[-1])
    assert d is not None and d.time == bars.index[-1].isoformat()


# -------------------------------------------------------------------- item 5: short history

def test_predict_with_too_few_bars_names_the_file(vbundle, nvda, tmp_path, capsys):
    path, b = vbundle
    csv = write_csv(tmp_path / "short.csv", nvda.iloc[-(b.min_bars - 1):])
    for extra in ([], ["--stream"], ["--allow-unsettled"]):
        rc, _, err = predict(capsys, "--bundle", str(path), "--data", str(csv), *extra)
        assert rc == 2
        line = error_line(err)
        assert str(csv) in line and f"at least {b.min_bars}" in line


def test_predict_refuses_an_unsettled_history_unless_allowed_and_then_marks_it(vbundle, nvda, tmp_path, capsys):
    """With min_bars but fewer than tail_bars bars the recursive indicators still carry their
    seeds (measured on this bundle over 50 dates: model B's p_up moves by up to 0.084 against the full
    history and 2 signals change)."""
    path, b = vbundle
    short = write_csv(tmp_path / "recent.csv", nvda.iloc[-(b.min_bars + 20):])
    for extra in ([], ["--stream"], ["--bars", "3"], ["--stream", "--bars", "3"]):
        rc, out, err = predict(capsys, "--bundle", str(path), "--data", str(short), *extra)
        assert rc == 2 and out == ""
        line = error_line(err)
        assert str(short) in line and str(b.tail_bars) in line and "--allow-unsettled" in line

    rc, out, _ = predict(capsys, "--bundle", str(path), "--data", str(short), "--allow-unsettled",
                         "--json", "--bars", "3")
    assert rc == 0 and [d["settled"] for d in json.loads(out)] == [False] * 3
    rc, out, _ = predict(capsys, "--bundle", str(path), "--data", str(short), "--allow-unsettled")
    assert rc == 0 and "UNSETTLED" in out
    rc, out, _ = predict(capsys, "--bundle", str(path), "--data", str(short), "--allow-unsettled",
                         "--stream", "--json")
    streamed = [json.loads(line) for line in out.splitlines()]
    assert len(streamed) == 21 and not any(d["settled"] for d in streamed)

    # exactly tail_bars bars: the last decision is settled, the one before is not
    enough = write_csv(tmp_path / "enough.csv", nvda.iloc[-b.tail_bars:])
    rc, out, _ = predict(capsys, "--bundle", str(path), "--data", str(enough), "--json")
    assert rc == 0 and json.loads(out)["settled"] is True
    rc, _, err = predict(capsys, "--bundle", str(path), "--data", str(enough), "--bars", "2")
    assert rc == 2 and str(b.tail_bars + 1) in error_line(err)
    # --stream without --bars starts deciding at the first settled bar
    rc, out, _ = predict(capsys, "--bundle", str(path), "--data", str(enough), "--stream", "--json")
    assert rc == 0 and [json.loads(line)["settled"] for line in out.splitlines()] == [True]


def test_unsettled_decisions_really_differ_from_settled_ones(vbundle, nvda):
    """The control: the guard above is not about nothing."""
    _, b = vbundle
    bars = nvda.iloc[-1200:]
    full = b.probabilities(bars, last=50)
    short = [b.probabilities(bars.iloc[: len(bars) - 49 + i][-b.min_bars:], last=1) for i in range(50)]
    moved = max(abs(s.p_b[0, 2] - f) for s, f in zip(short, full.p_b[:, 2]))
    assert moved > 1e-3
    assert b.decide(bars.iloc[-b.min_bars:])[0].settled is False
    assert b.decide(bars.iloc[-b.tail_bars:])[0].settled is True


def test_step_marks_decisions_settled_once_the_stream_holds_tail_bars(vbundle, nvda):
    _, b = vbundle
    b.reset()
    bars = nvda.iloc[-(b.tail_bars + 2):]
    b.prime(bars.iloc[: b.tail_bars - 2])
    marks = [b.step(row).settled for _, row in bars.iloc[b.tail_bars - 2:].iterrows()]
    assert marks == [False, True, True, True]


# ------------------------------------------------------------------- item 4: stale bars

def test_predict_refuses_a_stale_last_bar_unless_replaying(vbundle, nvda, tmp_path, capsys):
    path, _ = vbundle
    old = write_csv(tmp_path / "old.csv", nvda.iloc[-400:])          # ends 2014-12-31
    rc, out, err = predict(capsys, "--bundle", str(path), "--data", str(old), replay=False)
    assert rc == 2 and out == ""
    line = error_line(err)
    assert str(old) in line and "2014-12-31" in line and "--allow-stale" in line and "4.0 days" in line
    for flag in (["--allow-stale"], ["--max-age", "none"], ["--max-age", "0"]):
        rc, out, err = predict(capsys, "--bundle", str(path), "--data", str(old), *flag, replay=False)
        assert rc == 0 and ("long" in out or "flat" in out)
        assert any("closed" in e and "days ago" in e for e in err)
    rc, _, err = predict(capsys, "--bundle", str(path), "--data", str(old), "--max-age", "soon", replay=False)
    assert rc == 2 and "--max-age" in error_line(err)

    # the same bars moved to end two days ago (closed 1 to 4 days ago, whatever the weekday): fresh
    fresh = nvda.iloc[-400:].copy()
    end = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() - pd.Timedelta(days=2)
    fresh.index = pd.DatetimeIndex(pd.bdate_range(end=end, periods=len(fresh)), name="time")
    new = write_csv(tmp_path / "new.csv", fresh)
    rc, out, err = predict(capsys, "--bundle", str(path), "--data", str(new), replay=False)
    assert rc == 0 and ("long" in out or "flat" in out)
    assert any("closed" in e and "limit 4.0 days" in e for e in err)
    rc, _, err = predict(capsys, "--bundle", str(path), "--data", str(new), "--max-age", "1h", replay=False)
    assert rc == 2 and "stale" in error_line(err)


def test_bar_age_and_its_default_limit():
    from evo.pipeline.stream import bar_age, default_max_age, parse_max_age
    from features.timeframes import BarClock

    daily, minute, closing = BarClock(86400), BarClock(60), BarClock(300, "close")
    now = pd.Timestamp("2024-01-08 10:00")                    # a Monday
    assert bar_age(pd.Timestamp("2024-01-05"), daily, now) == pd.Timedelta(days=2, hours=10)   # Friday's bar
    assert bar_age(pd.Timestamp("2024-01-08 09:58"), minute, now) == pd.Timedelta(minutes=1)
    assert bar_age(pd.Timestamp("2024-01-08 09:55"), closing, now) == pd.Timedelta(minutes=5)
    assert bar_age(pd.Timestamp("2024-01-08 09:59:30"), minute, now) < pd.Timedelta(0)      # still running
    assert default_max_age(daily) == pd.Timedelta(days=4)
    assert default_max_age(minute) == pd.Timedelta(minutes=3)
    assert default_max_age(BarClock(7 * 86400)) == pd.Timedelta(days=21)
    assert parse_max_age("90min") == pd.Timedelta(minutes=90) and parse_max_age("none") is None
    with pytest.raises(DataError):
        parse_max_age("-2h")
    assert np.isfinite(bar_age(pd.Timestamp("2014-12-31"), daily, now).total_seconds())


def test_predict_on_yf_uses_the_cache_when_fresh_and_refuses_it_when_stale(vbundle, nvda, tmp_path, monkeypatch,
                                                                           capsys):
    """A daily job on ``yf:`` used to decide on the first day's cached download forever. Now a stale
    cache is topped up first; offline (no such ticker here) it stays stale and predict refuses."""
    path, _ = vbundle
    monkeypatch.setenv("EVO_CACHE_DIR", str(tmp_path))
    ticker = "EVO-NO-SUCH-TICKER-XYZ"
    cache = tmp_path / "yf" / f"{ticker}_1d_max.csv"
    cache.parent.mkdir(parents=True)
    nvda.iloc[-400:].rename(columns=str.capitalize).to_csv(cache, index_label="Date")      # ends 2014-12-31
    rc, out, err = predict(capsys, "--bundle", str(path), "--data", f"yf:{ticker}", replay=False)
    assert rc == 2 and out == ""
    assert any("could not top up" in e for e in err) and "2014-12-31" in error_line(err)

    fresh = nvda.iloc[-400:].copy()
    yesterday = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() - pd.Timedelta(days=1)
    fresh.index = pd.DatetimeIndex(pd.date_range(end=yesterday, periods=len(fresh), freq="D"), name="time")
    fresh.rename(columns=str.capitalize).to_csv(cache, index_label="Date")   # up to date: nothing to download
    rc, out, err = predict(capsys, "--bundle", str(path), "--data", f"yf:{ticker}", "--json", replay=False)
    assert rc == 0 and json.loads(out)["time"] == yesterday.isoformat()
