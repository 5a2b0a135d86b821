"""Reading bars: CSV files, yfinance tickers and the embedded demo dataset.

Every source ends in the same canonical frame: a tz-naive (UTC), strictly increasing
``DatetimeIndex`` named ``time`` and float64 columns ``open, high, low, close, volume``.
Bad input raises :class:`evo.errors.DataError` with one line naming the file, the row (the line
number in the file, header = line 1) and what is wrong.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from evo.errors import DataError

log = logging.getLogger(__name__)

OHLCV = ("open", "high", "low", "close", "volume")
TIME_COLUMNS = ("date", "datetime", "timestamp", "time", "<date>")
DEMO_DATASET = "NVDA_1d_1999_2014.csv"


def default_cache_dir() -> Path:
    """Where downloads and feature matrices are cached: ``$EVO_CACHE_DIR`` or ``~/.cache/evo``."""
    return Path(os.environ.get("EVO_CACHE_DIR", Path.home() / ".cache" / "evo"))


def load_bars(spec: str | None, *, cache_dir: Path | None = None) -> tuple[pd.DataFrame, str]:
    """Load bars from ``spec`` and return ``(bars, label)``.

    ``spec`` is a CSV path, ``yf:TICKER`` (daily bars through yfinance, cached on disk), or
    ``None`` for the demo dataset shipped inside the package (NVIDIA daily 1999-2014).
    ``label`` names the source for logs and the run store.
    """
    if spec is None:
        with resources.as_file(resources.files("evo") / "data" / DEMO_DATASET) as path:
            return read_csv(path), f"demo:{DEMO_DATASET}"
    if spec.startswith("yf:"):
        return load_yfinance(spec[3:], cache_dir=cache_dir or default_cache_dir()), spec
    return read_csv(Path(spec)), str(spec)


def read_csv(path: Path) -> pd.DataFrame:
    """Read a Yahoo-style (``Date,Open,High,Low,Close[,Adj Close],Volume``) or generic CSV
    (``Datetime``/``timestamp`` column) into the canonical frame, validating every row.

    Column names are matched case-insensitively; ``Adj Close`` is ignored (OHLC must share one
    adjustment). A missing volume column becomes zeros (volume features then leave the catalog).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline()
    if not header.strip():
        raise DataError(f"{path}: the file is empty")
    sep = "\t" if "\t" in header else ";" if header.count(";") > header.count(",") else ","
    try:
        raw = pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if raw.empty:
        raise DataError(f"{path}: the file has a header but no rows")
    return to_canonical(raw, source=str(path))


def to_canonical(raw: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Turn a raw table (one row per bar, columns named as in common exports) into the canonical
    frame. ``source`` names the input in error messages."""
    columns = {c.strip().lower().strip("<>"): c for c in raw.columns}
    time_col = next((columns[c.strip("<>")] for c in TIME_COLUMNS if c.strip("<>") in columns), None)
    if time_col is None:
        raise DataError(
            f"{source}: no time column (expected one of Date, Datetime, timestamp, time); "
            f"columns are {list(raw.columns)}"
        )
    missing = [c for c in ("open", "high", "low", "close") if c not in columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}; columns are {list(raw.columns)}")

    times = _parse_times(raw[time_col], source)
    frame = pd.DataFrame(index=pd.DatetimeIndex(times, name="time"))
    for name in ("open", "high", "low", "close"):
        frame[name] = _numeric(raw[columns[name]], name, source)
    volume_col = columns.get("volume") or columns.get("vol") or columns.get("tickvol")
    frame["volume"] = 0.0 if volume_col is None else np.nan_to_num(_numeric(raw[volume_col], "volume", source), nan=0.0)
    # Line numbers for messages: header is line 1, first data row is line 2.
    frame["_line"] = np.arange(2, len(raw) + 2)
    frame = _order_and_dedupe(frame, source)
    _check_prices(frame, source)
    return frame.drop(columns="_line")


def _parse_times(col: pd.Series, source: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(col):
        # Epoch seconds or milliseconds (exchange klines).
        unit = "ms" if col.abs().max() > 1e11 else "s"
        times = pd.to_datetime(col, unit=unit, errors="coerce")
    else:
        times = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
    bad = times.isna().to_numpy().nonzero()[0]
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{source}: row {i + 2}: unparsable timestamp {col.iloc[i]!r}")
    if getattr(times.dt, "tz", None) is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.astype("datetime64[ns]")


def _numeric(col: pd.Series, name: str, source: str) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce")
    bad = (values.isna() & col.notna()).to_numpy().nonzero()[0]
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{source}: row {i + 2}: {name} is not a number ({col.iloc[i]!r})")
    return values.to_numpy(dtype="float64")


def _order_and_dedupe(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    if not frame.index.is_monotonic_increasing:
        log.warning("%s: rows are not in time order; sorting them", source)
        frame = frame.sort_index(kind="stable")
    if frame.index.has_duplicates:
        dup = frame.index.duplicated(keep=False)
        distinct = frame.loc[dup, list(OHLCV)].reset_index().drop_duplicates()
        conflicts = distinct["time"][distinct["time"].duplicated()]
        if len(conflicts):
            lines = frame.loc[frame.index == conflicts.iloc[0], "_line"]
            raise DataError(
                f"{source}: row {int(lines.iloc[1])}: timestamp {conflicts.iloc[0]} appears twice "
                "with different values"
            )
        extra = frame.index.duplicated(keep="first")
        log.warning("%s: dropping %d identical duplicate rows", source, int(extra.sum()))
        frame = frame[~extra]
    return frame


def _check_prices(frame: pd.DataFrame, source: str) -> None:
    prices = frame[["open", "high", "low", "close"]].to_numpy()
    line = frame["_line"].to_numpy()

    def fail(mask: np.ndarray, what: str) -> None:
        if mask.any():
            i = int(mask.nonzero()[0][0])
            raise DataError(f"{source}: row {line[i]}: {what}")

    fail(~np.isfinite(prices).all(axis=1), "a price is NaN or infinite")
    fail((prices <= 0).any(axis=1), "a price is zero or negative")
    o, hi, lo, c = prices.T
    fail(hi < np.maximum(o, c) - 1e-12 * np.abs(hi), "high is below max(open, close)")
    fail(lo > np.minimum(o, c) + 1e-12 * np.abs(lo), "low is above min(open, close)")
    fail(~np.isfinite(frame["volume"].to_numpy()), "volume is infinite")
    fail(frame["volume"].to_numpy() < 0, "volume is negative")


def load_yfinance(ticker: str, *, cache_dir: Path, interval: str = "1d", period: str = "max") -> pd.DataFrame:
    """Daily bars for ``ticker`` through yfinance, cached as CSV under ``cache_dir/yf``.

    yfinance does not raise when offline: it prints an error and returns an empty frame. That
    case, with no cached copy, becomes a DataError.
    """
    if not ticker or not ticker.replace(".", "").replace("-", "").replace("^", "").replace("=", "").isalnum():
        raise DataError(f"yf:{ticker}: not a ticker symbol")
    cache = cache_dir / "yf" / f"{ticker}_{interval}_{period}.csv"
    if cache.exists():
        log.info("yf:%s: using cached download %s", ticker, cache)
        return read_csv(cache)
    import yfinance  # imported here: it is slow and only this path needs it

    try:
        raw = yfinance.download(ticker, interval=interval, period=period, auto_adjust=False,
                                progress=False, multi_level_index=False)
    except Exception as exc:  # noqa: BLE001 - yfinance raises many types for network failures
        raise DataError(f"yf:{ticker}: download failed ({exc}); pass --data FILE.csv instead") from None
    if raw is None or raw.empty:
        raise DataError(
            f"yf:{ticker}: no data downloaded (offline, or unknown ticker) and no cached copy in "
            f"{cache.parent}; pass --data FILE.csv instead"
        )
    raw = raw.reset_index()
    frame = to_canonical(raw, source=f"yf:{ticker}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    frame.rename(columns=str.capitalize).to_csv(tmp, index_label="Datetime")
    os.replace(tmp, cache)
    return frame
