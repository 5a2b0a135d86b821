"""The yfinance cache: topped up with the bars since its last one, the running bar never kept.

No network: each test writes the cache file itself and passes ``load_yfinance`` a download
function that returns what yfinance would (OHLCV columns, a ``Date``/``Datetime`` index) and
records how it was called.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evo.data import load_yfinance, read_csv
from evo.errors import DataError


class FakeYahoo:
    """A download function: ``bars`` (a canonical frame) as yfinance returns them, from ``start``'s
    day on or all of them for a ``period``; ``fail=True`` raises as an offline yfinance may."""

    def __init__(self, bars: pd.DataFrame, fail: bool = False):
        self.bars, self.fail, self.calls = bars, fail, []

    def __call__(self, ticker, *, interval, period=None, start=None):
        self.calls.append({"ticker": ticker, "interval": interval, "period": period, "start": start})
        if self.fail:
            raise ConnectionError("no route to host")
        out = self.bars if start is None else self.bars[self.bars.index >= pd.Timestamp(start).normalize()]
        out = out.rename(columns=str.capitalize)
        out.index = out.index.rename("Datetime" if interval.endswith(("m", "h")) else "Date")
        return out


def write_cache(tmp_path, bars: pd.DataFrame, name: str = "NVDA_1d_max.csv"):
    path = tmp_path / "yf" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    bars.rename(columns=str.capitalize).to_csv(path, index_label="Datetime")
    return path


def test_a_cached_download_is_topped_up_and_the_newer_bars_win(nvda, tmp_path):
    """The cache ends at bar 100; the download has bars 100..110 (bar 100 revised) plus today's
    running bar: the result is bars 0..110 with the revised bar 100, without the running one."""
    cache = write_cache(tmp_path, nvda.iloc[:101])
    market = nvda.iloc[100:111].copy()
    market.iloc[0, market.columns.get_loc("close")] *= 1.001          # the feed revised the last cached bar
    market.iloc[0, market.columns.get_loc("high")] = market.iloc[0][["open", "close", "high"]].max()
    now = market.index[-1] + pd.Timedelta(hours=20)                    # bar 110 is still running
    fake = FakeYahoo(market)
    bars = load_yfinance("NVDA", cache_dir=tmp_path, download=fake, now=now)
    assert fake.calls == [{"ticker": "NVDA", "interval": "1d", "period": None, "start": nvda.index[100]}]
    assert list(bars.index) == list(nvda.index[:110])                  # merged, one row per day, bar 110 dropped
    assert bars["close"].iloc[100] == market["close"].iloc[0]          # the newer download wins
    np.testing.assert_allclose(bars.iloc[:100].to_numpy(), nvda.iloc[:100].to_numpy(), rtol=1e-12)
    # the cache now holds the merged closed bars: the next call, a day later, starts from bar 109
    written = read_csv(cache)
    assert list(written.index) == list(bars.index)
    np.testing.assert_allclose(written.to_numpy(), bars.to_numpy(), rtol=1e-12)
    fake.calls.clear()
    again = load_yfinance("NVDA", cache_dir=tmp_path, download=fake, now=now + pd.Timedelta(days=1))
    assert fake.calls[0]["start"] == nvda.index[109] and again.index[-1] == nvda.index[110]


def test_an_up_to_date_cache_is_not_downloaded_again(nvda, tmp_path):
    write_cache(tmp_path, nvda.iloc[:50])
    fake = FakeYahoo(nvda)
    now = nvda.index[49] + pd.Timedelta(days=1, hours=12)               # the next bar has not closed yet
    bars = load_yfinance("NVDA", cache_dir=tmp_path, download=fake, now=now)
    assert fake.calls == [] and len(bars) == 50


def test_offline_the_cached_bars_are_used_as_they_are(nvda, tmp_path, caplog):
    write_cache(tmp_path, nvda.iloc[:50])
    bars = load_yfinance("NVDA", cache_dir=tmp_path, download=FakeYahoo(nvda, fail=True),
                         now=pd.Timestamp("2024-06-03"))
    assert len(bars) == 50 and "could not top up" in caplog.text and "no route to host" in caplog.text


def test_a_first_download_drops_the_running_bar_and_is_cached(nvda, tmp_path):
    fake = FakeYahoo(nvda.iloc[:30])
    now = nvda.index[29] + pd.Timedelta(hours=6)
    bars = load_yfinance("NVDA", cache_dir=tmp_path, download=fake, now=now)
    assert fake.calls[0]["period"] == "max" and list(bars.index) == list(nvda.index[:29])
    assert len(read_csv(tmp_path / "yf" / "NVDA_1d_max.csv")) == 29
    with pytest.raises(DataError, match="no data downloaded.*no route to host"):
        load_yfinance("ORCL", cache_dir=tmp_path, download=FakeYahoo(nvda, fail=True), now=now)


def test_intraday_running_bar_is_dropped(indexfut, tmp_path):
    """A 1-minute bar stamped 10:37 closes at 10:38: at 10:37:30 it is still running."""
    bars = indexfut.iloc[:100]
    write_cache(tmp_path, bars.iloc[:60], "FUT_1m_5d.csv")
    now = bars.index[89] + pd.Timedelta(seconds=30)
    got = load_yfinance("FUT", cache_dir=tmp_path, interval="1m", period="5d", download=FakeYahoo(bars), now=now)
    assert got.index[-1] == bars.index[88] and len(got) == 89


def test_a_split_in_the_new_download_fetches_the_whole_history_again(nvda, tmp_path, caplog):
    """yfinance re-bases past prices after a split: a top-up would glue two price scales."""
    write_cache(tmp_path, nvda.iloc[:101])
    rebased = nvda.iloc[:111].copy()
    rebased[["open", "high", "low", "close"]] /= 2.0
    fake = FakeYahoo(rebased)
    bars = load_yfinance("NVDA", cache_dir=tmp_path, download=fake, now=nvda.index[110] + pd.Timedelta(days=1))
    assert [c["period"] for c in fake.calls] == [None, "max"] and "split" in caplog.text
    assert bars["close"].iloc[0] == pytest.approx(nvda["close"].iloc[0] / 2.0) and len(bars) == 111
