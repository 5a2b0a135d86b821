"""Reading bars: real files load into the canonical frame; bad input is one clear DataError."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from evo.data import load_bars, load_many, read_csv, to_canonical
from evo.errors import DataError
from features import data_hash as bars_hash

GOOD = """Date,Open,High,Low,Close,Adj Close,Volume
2020-01-02,10,11,9,10.5,10.4,1000
2020-01-03,10.5,11.5,10,11,10.9,1200
2020-01-06,11,12,10.5,11.5,11.4,900
"""


def write(tmp_path, text, name="bars.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shared_files_load(shared_data):
    for name, n in (("NVDA_1d_1999_2014.csv", 4012), ("ORCL_1d_1995_2014.csv", 5036),
                    ("INDEXFUT_1m_2006.csv", 30889)):
        bars = read_csv(shared_data / name)
        assert len(bars) == n
        assert list(bars.columns) == ["open", "high", "low", "close", "volume"]
        assert bars.index.is_monotonic_increasing and not bars.index.has_duplicates
        assert all(bars.dtypes == "float64")


def test_demo_dataset_is_embedded_and_equals_the_shared_file(shared_data):
    bars, label = load_bars(None)
    assert label.startswith("demo:")
    assert bars_hash(bars) == bars_hash(read_csv(shared_data / "NVDA_1d_1999_2014.csv"))


def test_generic_csv_with_timestamp_column_and_no_volume(tmp_path):
    text = "timestamp,open,high,low,close\n2020-01-01 00:00,1,2,0.5,1.5\n2020-01-01 00:01,1.5,2,1,1.2\n"
    bars = read_csv(write(tmp_path, text))
    assert len(bars) == 2 and (bars["volume"] == 0).all()


def test_epoch_millisecond_klines(tmp_path):
    text = "timestamp,open,high,low,close,volume\n1600000000000,1,2,0.5,1.5,3\n1600000060000,1.5,2,1,1.2,4\n"
    bars = read_csv(write(tmp_path, text))
    assert bars.index[1] - bars.index[0] == pd.Timedelta(minutes=1)
    assert bars.index[0].year == 2020


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("Date,Open,High,Low,Close,Volume\n", "no rows"),
    (GOOD.replace("Low,", "Lo,"), "missing column"),
    (GOOD.replace("2020-01-03", "not-a-date"), "row 3: unparsable timestamp"),
    (GOOD.replace("10.5,11.5,10,11", "10.5,11.5,10,nan"), "row 3: a price is NaN"),
    (GOOD.replace("10.5,11.5,10,11", "10.5,11.5,10,inf"), "row 3: a price is NaN or infinite"),
    (GOOD.replace("11,12,10.5,11.5", "11,12,-1,11.5"), "row 4: a price is zero or negative"),
    (GOOD.replace("11,12,10.5,11.5", "11,11.2,10.5,11.5"), "row 4: high is below"),
    (GOOD.replace("10,11,9,10.5", "10,11,10.2,10.5"), "row 2: low is above"),
    (GOOD.replace("10.5,11.5,10,11,", "10.5,11.5,10,abc,"), "row 3: close is not a number"),
    (GOOD + "2020-01-06,11,12,10.5,11.6,11.4,900\n", "appears twice with different values"),
])
def test_bad_input_is_one_clear_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as info:
        read_csv(path)
    text_of_error = str(info.value)
    assert str(path) in text_of_error and message in text_of_error
    assert "\n" not in text_of_error


def test_identical_duplicates_dropped_and_unsorted_rows_sorted(tmp_path, caplog):
    lines = GOOD.strip().splitlines()
    text = "\n".join([lines[0], lines[3], lines[1], lines[2], lines[2]]) + "\n"
    bars = read_csv(write(tmp_path, text))
    assert len(bars) == 3 and bars.index.is_monotonic_increasing
    assert "sorting" in caplog.text and "duplicate" in caplog.text


def test_missing_file():
    with pytest.raises(DataError, match="no such file"):
        read_csv("/nonexistent/bars.csv")


def test_yfinance_offline_without_cache_is_a_clear_error(tmp_path, monkeypatch):
    # No network here: yfinance prints an error and returns an empty frame instead of raising.
    # (If a network is ever present, the ticker below does not exist, which takes the same path.)
    with pytest.raises(DataError, match="no data downloaded|download failed"):
        load_bars("yf:EVO-NO-SUCH-TICKER-XYZ", cache_dir=tmp_path)


def test_yfinance_uses_the_cache_without_network(tmp_path):
    cache = tmp_path / "yf" / "ABC_1d_max.csv"
    cache.parent.mkdir(parents=True)
    cache.write_text(GOOD)
    bars, label = load_bars("yf:ABC", cache_dir=tmp_path)
    assert label == "yf:ABC" and len(bars) == 3


def test_bars_hash_changes_with_any_value(nvda):
    other = nvda.copy()
    other.iloc[100, 3] *= 1.0001
    assert bars_hash(other) != bars_hash(nvda)


def test_to_canonical_converts_timezones_to_utc():
    raw = pd.DataFrame({"Datetime": ["2020-01-01 10:00+02:00", "2020-01-01 11:00+02:00"],
                        "Open": [1.0, 1.0], "High": [1.0, 1.0], "Low": [1.0, 1.0], "Close": [1.0, 1.0]})
    bars = to_canonical(raw, source="x")
    assert bars.index[0] == pd.Timestamp("2020-01-01 08:00") and bars.index.tz is None
    assert np.isfinite(bars.to_numpy()).all()


# ------------------------------------------------------------------ formats: MT5, klines, ';'
#
# Writers turn canonical bars into the text each source produces. A cell may be a string, which
# is written as it is: that is how the bad-input cases below plant a bad value in a real file.


def _num(value, comma: bool = False) -> str:
    text = value if isinstance(value, str) else repr(float(value))
    return text.replace(".", ",") if comma and not isinstance(value, str) else text


def _cells(bars, drop=None):
    cols = [c for c in ("open", "high", "low", "close", "volume") if c != drop]
    for t, row in zip(bars.index, bars[cols].itertuples(index=False)):
        yield t, cols, list(row)


def as_yahoo(bars, drop=None) -> str:
    cols = [c for c in ("open", "high", "low", "close") if c != drop]
    lines = ["Date," + ",".join(c.capitalize() for c in cols) + ",Adj Close,Volume"]
    for t, row in zip(bars.index, bars.itertuples(index=False)):
        stamp = t if isinstance(t, str) else t.strftime("%Y-%m-%d %H:%M:%S")
        values = [getattr(row, c) for c in cols]
        lines.append(",".join([stamp, *map(_num, values), _num(row.close), _num(row.volume)]))
    return "\n".join(lines) + "\n"


def as_semicolon(bars, drop=None) -> str:
    """European spreadsheet export: ';' separated, day-first dates, decimal commas."""
    lines = []
    for t, cols, values in _cells(bars, drop):
        if not lines:
            lines.append(";".join(["Date", *(c.capitalize() for c in cols)]))
        stamp = t if isinstance(t, str) else t.strftime("%d.%m.%Y %H:%M")
        lines.append(";".join([stamp, *(_num(v, comma=True) for v in values)]))
    return "\n".join(lines) + "\n"


def as_mt5(bars, drop=None, *, vol_zero=True, daily=False) -> str:
    """MetaTrader 5 export: tab separated, <DATE> <TIME> ...; forex-style <VOL> all zero, the
    volume in <TICKVOL> (vol_zero=True) or the other way round."""
    names = {"open": "<OPEN>", "high": "<HIGH>", "low": "<LOW>", "close": "<CLOSE>"}
    head = ["<DATE>"] + ([] if daily else ["<TIME>"])
    head += [names[c] for c in ("open", "high", "low", "close") if c != drop] + ["<TICKVOL>", "<VOL>", "<SPREAD>"]
    lines = ["\t".join(head)]
    for t, row in zip(bars.index, bars.itertuples(index=False)):
        if isinstance(t, str):
            stamp = [t] + ([] if daily else ["00:05:00"])
        else:
            stamp = [t.strftime("%Y.%m.%d")] + ([] if daily else [t.strftime("%H:%M:%S")])
        values = [getattr(row, c) for c in ("open", "high", "low", "close") if c != drop]
        vol = _num(row.volume)
        tick, real = (vol, "0") if vol_zero else ("0", vol)
        lines.append("\t".join([*stamp, *map(_num, values), tick, real, "12"]))
    return "\n".join(lines) + "\n"


def as_klines(bars, drop=None, *, header=False, unit_ns=1_000_000) -> str:
    """Binance kline CSV: 12 columns, epoch open_time (ms by default), no header."""
    lines = ["open_time,open,high,low,close,volume,close_time,quote_volume,trades,taker_base,taker_quote,ignore"
             ] if header else []
    for t, cols, values in _cells(bars, drop):
        if isinstance(t, str):
            stamp, close_time = t, "0"
        else:
            stamp = str(t.value // unit_ns)
            close_time = str((t.value + 59_999_000_000) // unit_ns)
        lines.append(",".join([stamp, *map(_num, values), close_time, "0", "10", "0", "0", "0"]))
    return "\n".join(lines) + "\n"


WRITERS = {"yahoo": as_yahoo, "generic": as_semicolon, "mt5": as_mt5, "klines": as_klines}
FIRST_LINE = {"yahoo": 2, "generic": 2, "mt5": 2, "klines": 1}


@pytest.fixture(scope="module")
def minute_bars(shared_data):
    """The real 1-minute index-future bars as evo reads them."""
    return read_csv(shared_data / "INDEXFUT_1m_2006.csv")


@pytest.mark.parametrize("fmt", ["generic", "mt5", "klines"])
def test_real_minute_file_in_each_format_loads_the_same_bars(tmp_path, minute_bars, fmt):
    path = write(tmp_path, WRITERS[fmt](minute_bars))
    detected = read_csv(path)
    forced = read_csv(path, fmt=fmt)
    pd.testing.assert_frame_equal(detected, forced)
    pd.testing.assert_index_equal(detected.index, minute_bars.index)
    pd.testing.assert_frame_equal(detected, minute_bars, check_exact=False, rtol=1e-13)


def test_mt5_forex_export_takes_the_tick_volume(tmp_path, minute_bars, caplog):
    bars = minute_bars.iloc[:50]
    loaded = read_csv(write(tmp_path, as_mt5(bars, vol_zero=True)))
    np.testing.assert_array_equal(loaded["volume"].to_numpy(), bars["volume"].to_numpy())
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "<VOL> is all zero; using <TICKVOL>" in warnings[0]
    caplog.clear()
    # A real <VOL> wins over the tick count, silently.
    loaded = read_csv(write(tmp_path, as_mt5(bars, vol_zero=False), "real.csv"))
    np.testing.assert_array_equal(loaded["volume"].to_numpy(), bars["volume"].to_numpy())
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_mt5_without_any_volume_loads_with_zero_volume(tmp_path, minute_bars):
    from features import has_usable_volume

    bars = minute_bars.iloc[:50].assign(volume=0.0)
    loaded = read_csv(write(tmp_path, as_mt5(bars)))
    assert (loaded["volume"] == 0).all() and not has_usable_volume(loaded)
    pd.testing.assert_frame_equal(loaded[["open", "high", "low", "close"]], bars[["open", "high", "low", "close"]])


def test_mt5_daily_export_and_utf16(tmp_path, nvda):
    bars = nvda.iloc[:300]
    text = as_mt5(bars, daily=True)
    assert text.startswith("<DATE>\t<OPEN>")
    daily = read_csv(write(tmp_path, text))
    pd.testing.assert_index_equal(daily.index, bars.index.as_unit("ns"))
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(text.encode("utf-16"))  # with a BOM, as Windows tools write it
    pd.testing.assert_frame_equal(read_csv(utf16), daily)


@pytest.mark.parametrize("unit_ns, header", [(1_000_000, False), (1_000_000_000, False), (1_000, False),
                                             (1_000_000, True)])
def test_klines_epoch_units_and_header(tmp_path, minute_bars, unit_ns, header):
    """Seconds, milliseconds and microseconds (Binance's spot files since 2025) all land on the same
    times; with or without a header."""
    bars = minute_bars.iloc[:200]
    loaded = read_csv(write(tmp_path, as_klines(bars, header=header, unit_ns=unit_ns)), fmt="klines")
    pd.testing.assert_index_equal(loaded.index, bars.index)


def test_headerless_klines_need_the_klines_format_when_forced_otherwise(tmp_path, minute_bars):
    path = write(tmp_path, as_klines(minute_bars.iloc[:20]))
    with pytest.raises(DataError, match="line 1 is not a header.*--format klines"):
        read_csv(path, fmt="generic")
    assert len(read_csv(path, fmt="klines")) == 20


def test_forced_format_must_match_the_header(tmp_path, minute_bars):
    path = write(tmp_path, as_yahoo(minute_bars.iloc[:20]))
    with pytest.raises(DataError, match="not a MetaTrader 5 export"):
        read_csv(path, fmt="mt5")
    with pytest.raises(DataError, match="not a Yahoo CSV"):
        read_csv(write(tmp_path, as_semicolon(minute_bars.iloc[:20]).replace("Date", "timestamp"), "g.csv"),
                 fmt="yahoo")
    from evo.errors import ConfigError

    with pytest.raises(ConfigError, match="not one of"):
        read_csv(path, fmt="excel")


def test_day_first_dates_and_decimal_commas(tmp_path):
    text = "Date;Open;High;Low;Close;Volume\n31.01.2024;1,5;2,25;1,0;1,2;100\n01.02.2024;1,2;2,0;1,0;1,5;0\n"
    bars = read_csv(write(tmp_path, text))
    assert list(bars.index) == [pd.Timestamp("2024-01-31"), pd.Timestamp("2024-02-01")]
    assert bars["high"].tolist() == [2.25, 2.0]
    mixed = "Date,Open,High,Low,Close\n13/01/2024,1,2,0.5,1\n01/14/2024,1,2,0.5,1\n"
    with pytest.raises(DataError, match="row 3: date '01/14/2024' is month-first but row 2"):
        read_csv(write(tmp_path, mixed, "mixed.csv"))


def test_split_date_and_time_columns_and_yyyymmdd(tmp_path):
    text = "<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,<HIGH>,<LOW>,<CLOSE>,<VOL>\n" \
           "X,5,20240102,500,1,2,0.5,1.5,7\nX,5,20240102,1000,1,2,0.5,1.5,8\nX,5,20240102,130500,1,2,0.5,1.5,9\n"
    bars = read_csv(write(tmp_path, text))
    assert list(bars.index.strftime("%H:%M")) == ["00:05", "00:10", "13:05"]
    daily = read_csv(write(tmp_path, "date,open,high,low,close\n20240102,1,2,0.5,1\n20240103,1,2,0.5,1\n", "d.csv"))
    assert list(daily.index) == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]


def test_yfinance_three_line_header(tmp_path):
    """What ``yfinance.download(...).to_csv()`` writes: Price/Ticker/Date header lines."""
    text = ("Price,Adj Close,Close,High,Low,Open,Volume\nTicker,NVDA,NVDA,NVDA,NVDA,NVDA,NVDA\nDate,,,,,,\n"
            "2020-01-02,5.9,5.99,6.0,5.9,5.95,1000\n2020-01-03,5.8,5.87,5.92,5.85,5.9,abc\n")
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=r"row 5: volume is not a number"):
        read_csv(path)
    bars = read_csv(write(tmp_path, text.replace("abc", "900"), "ok.csv"))
    assert bars.loc["2020-01-02", "close"] == 5.99 and bars.loc["2020-01-03", "open"] == 5.9


BAD_CASES = {
    # name: (mutation of a 6-bar frame whose cells may become strings, expected message, data row)
    "unparsable timestamp": (lambda f: f.rename(index={f.index[2]: "2006-13-45 25:00"}), "unparsable timestamp", 2),
    "NaN price": (lambda f: f.assign(close=f["close"].astype(object).where(f.index != f.index[3], "nan")),
                  "a price is NaN or infinite", 3),
    "infinite price": (lambda f: f.assign(open=f["open"].astype(object).where(f.index != f.index[1], "inf")),
                       "a price is NaN or infinite", 1),
    "non-positive price": (lambda f: f.assign(low=f["low"].where(f.index != f.index[4], 0.0)),
                           "a price is zero or negative", 4),
    "high below": (lambda f: f.assign(high=f["high"].where(f.index != f.index[2], f["low"])),
                   "high is below max(open, close)", 2),
    "low above": (lambda f: f.assign(low=f["low"].where(f.index != f.index[5], f["high"])),
                  "low is above min(open, close)", 5),
    "conflicting duplicate": (lambda f: pd.concat([f, f.iloc[[2]].assign(close=f["low"].iloc[2])]),
                              "appears twice with different values", 6),
}


def _bad_frame(minute_bars, case):
    frame = minute_bars.iloc[100:106].copy()
    frame.index = frame.index.astype(object)
    return BAD_CASES[case][0](frame)


@pytest.mark.parametrize("fmt", list(WRITERS))
@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_in_every_format_names_file_and_row(tmp_path, minute_bars, fmt, case):
    frame = _bad_frame(minute_bars, case)
    if case == "unparsable timestamp" and fmt == "klines":
        frame = frame.rename(index={frame.index[2]: "16OO000OOO"})
    path = write(tmp_path, WRITERS[fmt](frame))
    with pytest.raises(DataError) as info:
        read_csv(path, fmt=fmt)
    message = str(info.value)
    row = BAD_CASES[case][2] + FIRST_LINE[fmt]
    assert message.startswith(f"{path}: row {row}: ") and BAD_CASES[case][1] in message
    assert "\n" not in message


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_missing_price_column_and_empty_file_in_every_format(tmp_path, minute_bars, fmt):
    path = write(tmp_path, WRITERS[fmt](minute_bars.iloc[:5], drop="low"))
    expected = "missing column(s) low"
    if fmt == "klines":  # no names to miss: five columns are enough (volume is optional), four are not
        path = write(tmp_path, "\n".join(",".join(line.split(",")[:4]) for line in
                                         as_klines(minute_bars.iloc[:5]).splitlines()) + "\n")
        expected = "row 1: 4 columns; a headerless kline file needs at least 5"
    with pytest.raises(DataError, match=re.escape(f"{path}: ") + ".*" + re.escape(expected)):
        read_csv(path, fmt=fmt)
    empty = write(tmp_path, "\n\n", "empty.csv")
    with pytest.raises(DataError, match=re.escape(f"{empty}: the file is empty")):
        read_csv(empty, fmt=fmt)


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_unsorted_rows_and_identical_duplicates_in_every_format(tmp_path, minute_bars, fmt, caplog):
    bars = minute_bars.iloc[200:210]
    shuffled = bars.iloc[[3, 0, 1, 2, 9, 4, 5, 5, 6, 7, 8, 8]]
    loaded = read_csv(write(tmp_path, WRITERS[fmt](shuffled)), fmt=fmt)
    pd.testing.assert_index_equal(loaded.index, bars.index)
    pd.testing.assert_frame_equal(loaded, bars, check_exact=False, rtol=1e-13)
    assert "not in time order; sorting" in caplog.text and "dropping 2 identical duplicate rows" in caplog.text


# ------------------------------------------------------------------- load_bars / load_many


def test_load_many_reads_each_instrument_in_order(shared_data):
    specs = [str(shared_data / "ORCL_1d_1995_2014.csv"), str(shared_data / "NVDA_1d_1999_2014.csv")]
    loaded = load_many(specs)
    assert [label for _, label in loaded] == specs
    assert [len(bars) for bars, _ in loaded] == [5036, 4012]
    with pytest.raises(DataError, match="given twice"):
        load_many([specs[0], specs[0]])
    with pytest.raises(DataError, match="no data source"):
        load_many([])


def test_load_bars_format_override(tmp_path, minute_bars):
    path = write(tmp_path, as_klines(minute_bars.iloc[:30]))
    bars, label = load_bars(str(path), fmt="klines")
    assert label == str(path) and len(bars) == 30
    with pytest.raises(DataError, match="--format klines"):
        load_bars(str(path), fmt="mt5")


def test_yfinance_cache_is_keyed_by_interval_and_period(tmp_path, caplog):
    ticker = "EVO-NO-SUCH-TICKER-XYZ"
    cache = tmp_path / "yf" / f"{ticker}_1h_60d.csv"
    cache.parent.mkdir(parents=True)
    cache.write_text(GOOD)
    bars, label = load_bars(f"yf:{ticker}", interval="1h", period="60d", cache_dir=tmp_path)
    assert len(bars) == 3 and label == f"yf:{ticker} interval=1h period=60d"
    # Daily bars of the same ticker are another download: not cached, and there is no network
    # (or, with one, no such ticker), so a one-line error carrying yfinance's reason.
    with pytest.raises(DataError) as info:
        load_bars(f"yf:{ticker}", cache_dir=tmp_path)
    assert "no data downloaded" in str(info.value) and "\n" not in str(info.value)
    assert not [r for r in caplog.records if r.name.startswith("yfinance")]  # its log lines stay out


@pytest.mark.parametrize("kwargs, message", [({"interval": "7m"}, "interval '7m' is not one of"),
                                             ({"period": "3w"}, "period '3w' is not a number of d, wk, mo or y")])
def test_yfinance_rejects_unknown_interval_and_period_before_downloading(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        load_bars("yf:NVDA", cache_dir=tmp_path, **kwargs)


# ------------------------------------------------------------------------------------- dates


def test_excel_serial_dates_are_refused_with_the_row(tmp_path):
    """36182 is 1999-01-22 in Excel; read as epoch seconds it is 1970-01-01 10:03:02, bars one second
    apart (and an OverflowError later when the Calmar ratio annualised them)."""
    text = "Date,Open,High,Low,Close,Volume\n36182,10,11,9,10.5,1000\n36185,10.5,11.5,10,11,1200\n"
    with pytest.raises(DataError, match=r"bars\.csv: row 2: time 36182 looks like an Excel serial date \(1999-01-22\)"):
        read_csv(write(tmp_path, text))
    small = "timestamp,open,high,low,close\n5,1,2,0.5,1.5\n6,1.5,2,1,1.2\n"
    with pytest.raises(DataError, match=r"row 2: time 5 reads as 1970-01-01 00:00:05 \(epoch\), before 1971"):
        read_csv(write(tmp_path, small, "small.csv"))


def test_zoned_daily_stamps_keep_the_exchanges_date():
    """A Tokyo Friday stamped 2024-01-05 00:00+09:00 is Thursday 15:00 in UTC: daily bars keep the
    local date; New York dates across a DST change keep theirs; zoned intraday bars go to UTC."""
    def raw(times):
        n = len(times)
        return pd.DataFrame({"Date": times, "Open": [1.0] * n, "High": [1.0] * n, "Low": [1.0] * n,
                             "Close": [1.0] * n})

    tokyo = to_canonical(raw(["2024-01-04 00:00:00+09:00", "2024-01-05 00:00:00+09:00",
                              "2024-01-09 00:00:00+09:00"]), source="x")
    assert list(tokyo.index) == [pd.Timestamp("2024-01-04"), pd.Timestamp("2024-01-05"), pd.Timestamp("2024-01-09")]
    assert tokyo.index[1].day_name() == "Friday"
    aware = pd.Series(pd.date_range("2024-01-04", periods=3, freq="D", tz="Asia/Tokyo"))   # as yfinance gives them
    expected = pd.DatetimeIndex(["2024-01-04", "2024-01-05", "2024-01-06"], name="time").as_unit("ns")
    pd.testing.assert_index_equal(to_canonical(raw(aware), source="x").index, expected)
    new_york = to_canonical(raw(["2024-03-08 00:00:00-05:00", "2024-03-11 00:00:00-04:00"]), source="x")
    assert list(new_york.index) == [pd.Timestamp("2024-03-08"), pd.Timestamp("2024-03-11")]
    intraday = to_canonical(raw(["2024-01-05 09:00+09:00", "2024-01-05 09:01+09:00"]), source="x")
    assert intraday.index[0] == pd.Timestamp("2024-01-05 00:00")
    plain = to_canonical(raw(["2024-01-04", "2024-01-05"]), source="x")
    assert list(plain.index) == [pd.Timestamp("2024-01-04"), pd.Timestamp("2024-01-05")]


def test_the_holdout_is_annualised_like_the_search_span(indexfut):
    from backtest import periods_per_year
    from evo.config import budget_from_dict
    from evo.evaluation.dataset import prepare_run_data

    bars = indexfut.iloc[:9000]
    budget = budget_from_dict("tiny", {
        "search": {"embedding_dim": [8], "num_blocks": [1, 1], "num_heads": [2], "seq_len": [8], "horizon": [1],
                   "max_features_a": 4, "max_features_b": 4, "slstm_share": 0.0},
        "evaluate": {"folds": 2, "holdout_fraction": 0.2},
    })
    ds, holdout = prepare_run_data(bars, "indexfut", budget)
    holdout.unseal()
    assert holdout.dataset.periods_per_year == ds.periods_per_year == periods_per_year(ds.bars.index)
    assert len(holdout.dataset.bars) == len(bars)
