"""Reading bars: real files load into the canonical frame; bad input is one clear DataError."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evo.data import load_bars, read_csv, to_canonical
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
