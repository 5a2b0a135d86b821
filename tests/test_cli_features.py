"""``python -m evo features`` end to end in separate processes, and the shared data options.

Each shared data file (the 30889-bar 1-minute file too) goes through the command and the CSV it
writes is compared, value for value, with the catalog computed in this process. A MetaTrader 5
export written by the test covers forex-style volume.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import features as F
from evo.commands._data_args import FORMATS, add_data_arguments, load_from_args
from evo.data import read_csv

ROOT = Path(__file__).resolve().parents[1]


def evo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "evo", *args], capture_output=True, text=True, env=env, cwd=cwd or ROOT, timeout=300
    )


def read_output(path: Path) -> pd.DataFrame:
    """The command's CSV (pandas 3 parses floats exactly: the default precision round-trips)."""
    frame = pd.read_csv(path, index_col="time", parse_dates=["time"])
    frame.index = frame.index.as_unit("ns")
    return frame


def mt5_export(bars: pd.DataFrame, *, tickvol: bool) -> str:
    """A MetaTrader 5 forex export of ``bars``: <VOL> all zero, the volume as <TICKVOL> or absent."""
    lines = ["<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"]
    for t, r in zip(bars.index, bars.itertuples(index=False)):
        tick = repr(r.volume) if tickvol else "0"
        lines.append(
            "\t".join(
                [
                    t.strftime("%Y.%m.%d"),
                    t.strftime("%H:%M:%S"),
                    repr(r.open),
                    repr(r.high),
                    repr(r.low),
                    repr(r.close),
                    tick,
                    "0",
                    "3",
                ]
            )
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ --list


def test_list_json_is_the_catalog() -> None:
    result = evo("features", "--list", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["catalog_version"] == F.CATALOG_VERSION
    rows = payload["features"]
    assert [r["name"] for r in rows] == [s.name for s in F.catalog()]
    for r, s in zip(rows, F.catalog()):
        assert (r["kind"], r["source"], r["warmup_bars"], r["needs_volume"]) == (
            s.kind,
            s.source,
            s.warmup_bars,
            s.needs_volume,
        )
    assert tuple(r["name"] for r in rows if r["model"] == "A") == F.model_a_features()
    assert tuple(r["name"] for r in rows if r["model"] == "B") == F.model_b_features()
    names = {r["name"] for r in rows}
    assert {
        "sma_20",
        "ema_20",
        "rsi_14",
        "atr_14",
        "adx_14",
        "macd_12_26_9",
        "macd_signal_12_26_9",
        "bb_upper_20_2",
        "bb_lower_20_2",
        "stoch_k_14_3",
        "stoch_d_14_3",
        "willr_14",
        "obv",
        "cdl_engulfing",
        "cdl_3blackcrows",
    } <= names


def test_list_table() -> None:
    result = evo("features", "--list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "kind", "source", "warmup_bars", "needs_volume", "model"]
    body = lines[1:-1]
    assert len(body) == len(F.catalog())
    assert body[0].split() == ["cdl_2crows", "pattern", "talib", "12", "no", "A"]
    assert next(line for line in body if line.startswith("obv ")).split() == [
        "obv",
        "indicator",
        "talib",
        "20",
        "yes",
        "B",
    ]
    assert lines[-1].startswith(f"{len(F.catalog())} features (catalog version {F.CATALOG_VERSION})")


# --------------------------------------------------------------------------- --data --out


@pytest.mark.parametrize("name", ["NVDA_1d_1999_2014.csv", "ORCL_1d_1995_2014.csv", "INDEXFUT_1m_2006.csv"])
def test_raw_features_of_each_shared_file(shared_data: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "nested" / "features.csv"
    result = evo("features", "--data", str(shared_data / name), "--out", str(out))
    assert result.returncode == 0, result.stderr
    bars = read_csv(shared_data / name)
    written = read_output(out)
    pd.testing.assert_index_equal(written.index, bars.index)  # one row per input bar, input times
    expected = F.compute_features(bars, raw=True)
    assert list(written.columns) == [s.name for s in F.catalog()]  # these files carry volume
    pd.testing.assert_frame_equal(written, expected, check_exact=True, check_names=False)
    # Raw means the indicator's own value: the 20-bar SMA in price units, TA-Lib's integer signals (+-80, +-100).
    close = bars["close"].to_numpy()
    assert written["sma_20"].iloc[200] == pytest.approx(close[181:201].mean(), rel=1e-12)
    assert set(np.unique(written["cdl_engulfing"].dropna())) <= {-100.0, -80.0, 0.0, 80.0, 100.0}
    assert f"wrote {len(expected.columns)} feature columns (raw) x {len(bars)} bars" in result.stderr
    assert [p.name for p in out.parent.iterdir()] == ["features.csv"]  # no temp file left


def test_model_ready_values(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ready.csv"
    result = evo("features", "--data", str(shared_data / "NVDA_1d_1999_2014.csv"), "--out", str(out), "--model-ready")
    assert result.returncode == 0, result.stderr
    bars = read_csv(shared_data / "NVDA_1d_1999_2014.csv")
    pd.testing.assert_frame_equal(read_output(out), F.compute_features(bars), check_exact=True, check_names=False)


@pytest.fixture(scope="module")
def minute_head(shared_data: Path) -> pd.DataFrame:
    return read_csv(shared_data / "INDEXFUT_1m_2006.csv").iloc[:3000]


def test_mt5_forex_export_uses_tick_volume(minute_head: pd.DataFrame, tmp_path: Path) -> None:
    data = tmp_path / "EURUSD_M1.csv"
    data.write_text(mt5_export(minute_head, tickvol=True))
    out = tmp_path / "f.csv"
    result = evo("features", "--data", str(data), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "<VOL> is all zero; using <TICKVOL>" in result.stderr
    written = read_output(out)
    assert {"obv", "mfi_14", "vol_confirm"} <= set(written.columns)
    pd.testing.assert_frame_equal(
        written, F.compute_features(minute_head, raw=True), check_exact=True, check_names=False
    )


def test_mt5_export_without_volume_leaves_volume_features_out(minute_head: pd.DataFrame, tmp_path: Path) -> None:
    data = tmp_path / "XAUUSD_M1.csv"
    data.write_text(mt5_export(minute_head, tickvol=False))
    out = tmp_path / "f.csv"
    result = evo("features", "--data", str(data), "--out", str(out), "--format", "mt5")
    assert result.returncode == 0, result.stderr
    needs_volume = [s.name for s in F.catalog() if s.needs_volume]
    warning = [line for line in result.stderr.splitlines() if "volume is missing or zero" in line]
    assert len(warning) == 1 and f"{len(needs_volume)} volume features are left out" in warning[0]
    written = read_output(out)
    assert list(written.columns) == [s.name for s in F.catalog() if not s.needs_volume]
    pd.testing.assert_index_equal(written.index, minute_head.index)
    expected = F.compute_features(minute_head.assign(volume=0.0), raw=True)[list(written.columns)]
    pd.testing.assert_frame_equal(written, expected, check_exact=True, check_names=False)


def test_headerless_klines_with_format_option(minute_head: pd.DataFrame, tmp_path: Path) -> None:
    bars = minute_head.iloc[:500]
    data = tmp_path / "BTCUSDT-1m.csv"
    data.write_text(
        "".join(
            f"{t.value // 10**6},{r.open!r},{r.high!r},{r.low!r},{r.close!r},{r.volume!r},"
            f"{(t.value + 59_999 * 10**6) // 10**6},0,1,0,0,0\n"
            for t, r in zip(bars.index, bars.itertuples(index=False))
        )
    )
    out = tmp_path / "f.csv"
    result = evo("features", "--data", str(data), "--format", "klines", "--out", str(out))
    assert result.returncode == 0, result.stderr
    pd.testing.assert_index_equal(read_output(out).index, bars.index)
    refused = evo("features", "--data", str(data), "--format", "yahoo", "--out", str(tmp_path / "g.csv"))
    assert refused.returncode == 2 and "--format klines" in refused.stderr


def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "bad.csv"
    data.write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,10,11,9,10.5,100\n2020-01-03,10,9.5,9,10.5,100\n")
    out = tmp_path / "f.csv"
    result = evo("features", "--data", str(data), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == f"evo: error: {data}: row 3: high is below max(open, close)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


@pytest.mark.parametrize("args, message", [
    ((), "nothing to do"),
    (("--json",), "--json goes with --list"),
    (("--list", "--out", "x.csv"), "either --list or --out"),
])  # fmt: skip
def test_usage_errors(args: tuple[str, ...], message: str) -> None:
    result = evo("features", *args)
    assert result.returncode == 2 and message in result.stderr


def test_out_may_not_overwrite_the_data(tmp_path: Path, shared_data: Path) -> None:
    data = tmp_path / "bars.csv"
    data.write_bytes((shared_data / "NVDA_1d_1999_2014.csv").read_bytes())
    result = evo("features", "--data", str(data), "--out", str(data))
    assert result.returncode == 2 and "would overwrite" in result.stderr
    assert data.read_bytes() == (shared_data / "NVDA_1d_1999_2014.csv").read_bytes()


# ------------------------------------------------------------------------ the data options


def _parser(multiple: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_data_arguments(p, multiple=multiple)
    return p


def test_format_choices_match_the_loader() -> None:
    from evo.data import FORMATS as LOADER_FORMATS

    assert FORMATS == LOADER_FORMATS


def test_data_arguments_single_and_multiple(shared_data: Path) -> None:
    nvda, orcl = str(shared_data / "NVDA_1d_1999_2014.csv"), str(shared_data / "ORCL_1d_1995_2014.csv")
    args = _parser(True).parse_args(["--data", orcl, "--data", nvda, "--format", "yahoo"])
    assert args.data == [orcl, nvda] and args.format == "yahoo" and (args.interval, args.period) == ("1d", "max")
    loaded = load_from_args(args)
    assert [(len(b), label) for b, label in loaded] == [(5036, orcl), (4012, nvda)]

    args = _parser(False).parse_args(["--data", orcl, "--data", nvda])
    assert args.data == nvda  # single: the last one wins, as argparse does
    [(bars, label)] = load_from_args(_parser(False).parse_args([]))
    assert label.startswith("demo:") and len(bars) == 4012
    with pytest.raises(SystemExit):
        _parser(False).parse_args(["--format", "excel"])


def test_interval_without_a_download_is_reported(shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(shared_data / "NVDA_1d_1999_2014.csv")
    load_from_args(_parser(False).parse_args(["--data", path, "--interval", "1h"]))
    assert "apply to yf: downloads only" in caplog.text


def test_help_stays_light() -> None:
    code = (
        "import sys; from evo.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('pandas', 'torch', 'numpy', 'talib') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_higher_timeframe_columns_use_closed_periods_only(shared_data: Path, tmp_path: Path) -> None:
    """`--timeframes 60` on minute data: each `<feature>@x60` value at bar t is what the same command
    writes for the bars up to t alone (no partly formed hour, no future); other multiples are refused."""
    head = read_csv(shared_data / "INDEXFUT_1m_2006.csv").iloc[:2500]
    data = tmp_path / "minute.csv"
    head.rename(columns=str.capitalize).rename_axis("Datetime").to_csv(data)
    out = tmp_path / "tf.csv"
    result = evo("features", "--data", str(data), "--timeframes", "60", "--out", str(out))
    assert result.returncode == 0, result.stderr
    written = read_output(out)
    assert "rsi_14@x60" in written.columns and written.shape[1] == 2 * len(F.catalog())
    assert written["rsi_14@x60"].notna().sum() > 0
    for t in (1500, 1777, 2499):   # truncate the data at bar t: the hourly columns at t do not change
        short = tmp_path / f"short{t}.csv"
        head.iloc[: t + 1].rename(columns=str.capitalize).rename_axis("Datetime").to_csv(short)
        cut = tmp_path / f"cut{t}.csv"
        assert evo("features", "--data", str(short), "--timeframes", "60", "--out", str(cut)).returncode == 0
        hourly = [c for c in written.columns if c.endswith("@x60")]
        pd.testing.assert_series_equal(read_output(cut)[hourly].iloc[t], written[hourly].iloc[t], check_names=False)
    bad = evo("features", "--data", str(data), "--timeframes", "7", "--out", str(tmp_path / "x.csv"))
    assert bad.returncode == 2 and "offers 5, 15, 60" in bad.stderr and not (tmp_path / "x.csv").exists()


def test_a_file_shorter_than_the_warm_up_exits_2_with_one_line(shared_data: Path, tmp_path: Path) -> None:
    """Fewer bars than the longest warm-up (sma_50: 49 bars) would write a CSV where no row has every
    feature (a 3-bar file: almost all NaN) and exit 0; it is refused, and nothing is written."""
    lines = (shared_data / "NVDA_1d_1999_2014.csv").read_text().splitlines()
    longest = max(s.warmup_bars for s in F.catalog())
    for n in (3, longest):
        data = tmp_path / f"short{n}.csv"
        data.write_text("\n".join(lines[: n + 1]) + "\n")
        out = tmp_path / f"f{n}.csv"
        result = evo("features", "--data", str(data), "--out", str(out))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == (
            f"evo: error: {data}: {n} bars are too few for the features: sma_50 needs {longest} bars of "
            f"warm-up, so no bar would have every feature; give at least {longest + 1} bars")
        assert not out.exists()
    data = tmp_path / "enough.csv"
    data.write_text("\n".join(lines[: longest + 2]) + "\n")
    result = evo("features", "--data", str(data), "--out", str(tmp_path / "ok.csv"))
    assert result.returncode == 0, result.stderr
    written = read_output(tmp_path / "ok.csv")
    assert len(written) == longest + 1 and written.iloc[-1].notna().all()


def test_excel_serial_dates_exit_2_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "excel.csv"
    data.write_text("Date,Open,High,Low,Close,Volume\n" + "".join(
        f"{36182 + i},10,11,9,10.5,100\n" for i in range(60)))
    result = evo("features", "--data", str(data), "--out", str(tmp_path / "f.csv"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"{data}: row 2: time 36182 looks like an Excel serial date (1999-01-22)" in result.stderr
