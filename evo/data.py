"""Reading bars: CSV exports (Yahoo, MetaTrader 5, exchange klines, generic), yfinance tickers and
the embedded demo dataset.

Every source ends in the same canonical frame: a tz-naive, strictly increasing ``DatetimeIndex``
named ``time`` and float64 columns ``open, high, low, close, volume``. Times with a zone or an
epoch are converted to UTC; times without one (MetaTrader's broker server time, a Yahoo date) are
kept as written. Daily (or coarser) bars stamped with a zone keep the exchange's own date and
wall time instead (``2024-01-05 00:00+09:00`` is Friday 2024-01-05, not Thursday 15:00 UTC).
Numeric times before 1971 (an Excel serial date such as ``36182`` read as epoch seconds) are
refused. Each bar is labelled by the time it opened, as every supported export does.

File formats (``fmt``; ``"auto"`` detects them from the first lines):

- ``yahoo``: ``Date,Open,High,Low,Close[,Adj Close],Volume`` (``Adj Close`` is ignored: OHLC must
  share one adjustment), also the three-line header pandas writes for a yfinance download
  (``Price,...`` / ``Ticker,...`` / ``Date,,,``).
- ``mt5``: a MetaTrader 5 export, tab separated, header
  ``<DATE> <TIME> <OPEN> <HIGH> <LOW> <CLOSE> <TICKVOL> <VOL> <SPREAD>`` (``<TIME>`` absent in daily
  exports), dates ``2024.01.02``, times ``00:05:00``. Forex/CFD exports carry ``<VOL>`` all zero;
  then ``<TICKVOL>`` (ticks per bar) becomes the volume, with a warning.
- ``klines``: exchange klines with an epoch ``open_time`` (seconds, milliseconds or microseconds,
  told apart by magnitude), with a header or without one (Binance's 12 columns ``open_time, open,
  high, low, close, volume, close_time, ...``; the first six are read).
- ``generic``: a header with a ``Datetime``/``timestamp``/``time``/``Date`` column (or ``Date``
  and ``Time`` columns together) and ``Open, High, Low, Close[, Volume]`` in any case, in any
  order. ISO times with or without a zone, epoch numbers, ``YYYYMMDD`` integers, and day-first
  dates (``31.01.2024``) where the day gives it away or the separator is a dot.

Any of them may be separated by ``,``, ``;`` or tab, and ``;``/tab files may use a decimal comma
(``1,2345``). UTF-8 and UTF-16 (with a BOM) are read. A missing or all-zero volume still loads:
the volume features then leave the catalog (:func:`features.usable_features`).

Bad input raises :class:`evo.errors.DataError` with one line naming the file, the row (the line
number in the file: header = line 1, so a headerless file's first bar is row 1) and what is wrong.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from evo.errors import ConfigError, DataError

log = logging.getLogger(__name__)

OHLCV = ("open", "high", "low", "close", "volume")
FORMATS = ("auto", "yahoo", "generic", "mt5", "klines")
"""Values of ``fmt`` (the CLI's ``--format``): ``auto`` detects the others."""

TIME_COLUMNS = ("datetime", "timestamp", "date", "time", "open_time", "date_time")
"""Time column names (after lower-casing, stripping ``<>`` and turning spaces into ``_``), in
order of preference; ``date`` and ``time`` together are joined into one timestamp."""
REAL_VOLUME_COLUMNS = ("volume", "vol", "real_volume")
TICK_VOLUME_COLUMNS = ("tickvol", "tick_volume")
KLINE_COLUMNS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trades",
    "taker_buy_base_volume", "taker_buy_quote_volume", "ignore",
)  # fmt: skip
"""Binance's kline columns, the names given to a headerless kline file's columns."""

YF_INTERVALS = ("1m", "2m", "5m", "15m", "30m", "60m", "90m", "1h", "1d", "5d", "1wk", "1mo", "3mo")
YF_PERIOD = re.compile(r"^([1-9]\d*(d|wk|mo|y)|ytd|max)$")
"""yfinance's period syntax: ``60d``, ``2wk``, ``6mo``, ``10y``, ``ytd``, ``max``."""
DEMO_DATASET = "NVDA_1d_1999_2014.csv"


def default_cache_dir() -> Path:
    """Where downloads and feature matrices are cached: ``$EVO_CACHE_DIR`` or ``~/.cache/evo``."""
    return Path(os.environ.get("EVO_CACHE_DIR", Path.home() / ".cache" / "evo"))


def load_bars(
    spec: str | None,
    *,
    fmt: str = "auto",
    interval: str = "1d",
    period: str = "max",
    cache_dir: Path | None = None,
) -> tuple[pd.DataFrame, str]:
    """Load bars from ``spec`` and return ``(bars, label)``.

    ``spec`` is a CSV path (read as ``fmt``, one of :data:`FORMATS`), ``yf:TICKER`` (bars of
    ``interval`` over ``period`` through yfinance, cached under ``cache_dir/yf``; ``cache_dir``
    defaults to :func:`default_cache_dir`), or ``None`` for the demo dataset shipped inside the
    package (NVIDIA daily 1999-2014). ``fmt`` applies to files only, ``interval``/``period`` to
    ``yf:`` only. ``label`` names the source for logs and the run store: the path, ``yf:TICKER``
    (with ``interval``/``period`` appended when they are not the defaults) or ``demo:...``.
    """
    _check_fmt(fmt)
    if spec is None:
        with resources.as_file(resources.files("evo") / "data" / DEMO_DATASET) as path:
            return read_csv(path), f"demo:{DEMO_DATASET}"
    if spec.startswith("yf:"):
        ticker = spec[3:]
        bars = load_yfinance(ticker, cache_dir=cache_dir or default_cache_dir(), interval=interval, period=period)
        label = spec if (interval, period) == ("1d", "max") else f"{spec} interval={interval} period={period}"
        return bars, label
    return read_csv(Path(spec), fmt=fmt), str(spec)


def load_many(
    specs: Sequence[str | None],
    *,
    fmt: str = "auto",
    interval: str = "1d",
    period: str = "max",
    cache_dir: Path | None = None,
) -> list[tuple[pd.DataFrame, str]]:
    """:func:`load_bars` of each spec, in order: one ``(bars, label)`` per instrument.

    The keyword arguments apply to every spec. Raises :class:`evo.errors.DataError` when
    ``specs`` is empty or names one source twice; the first bad source stops the load.
    """
    if not specs:
        raise DataError("no data source given")
    seen: set[str | None] = set()
    loaded = []
    for spec in specs:
        if spec in seen:
            raise DataError(f"{spec if spec is not None else 'the demo dataset'}: given twice")
        seen.add(spec)
        loaded.append(load_bars(spec, fmt=fmt, interval=interval, period=period, cache_dir=cache_dir))
    return loaded


def _check_fmt(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


# ------------------------------------------------------------------------------------ files


@dataclass(frozen=True)
class _Layout:
    """How to hand a file to ``pandas.read_csv``, as sniffed from its first lines."""

    fmt: str  # the format read: yahoo | generic | mt5 | klines
    sep: str
    decimal: str
    encoding: str
    names: tuple[str, ...] | None  # column names of a headerless file
    skiprows: tuple[int, ...]  # 0-based lines after the header to skip (yfinance's extra header)
    first_line: int  # the line number of the first bar (header = line 1)
    time_name: str | None  # the time column's name where the header row lacks it (yfinance)


_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d+$")


def _is_number(text: str) -> bool:
    return bool(_NUMBER.match(text.strip().strip('"')))


def _sniff(path: Path, fmt: str) -> _Layout:
    """Encoding, separator, decimal mark, header and format of ``path`` from its first lines."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    text = head.decode(encoding, errors="replace")
    lines = [line for line in text.splitlines() if line.strip()][:4]
    if not lines:
        raise DataError(f"{path}: the file is empty")
    header = lines[0]
    sep = "\t" if "\t" in header else ";" if header.count(";") > header.count(",") else ","
    fields = [f.strip().strip('"') for f in header.split(sep)]
    lowered = [f.lower() for f in fields]
    headerless = _is_number(fields[0])
    yf_multi = len(lines) >= 3 and lines[1].split(sep)[0].strip().lower() == "ticker"

    if headerless:
        detected = "klines"
    elif "<date>" in lowered:
        detected = "mt5"
    elif yf_multi or (lowered[0] in ("date", "datetime") and "adj close" in lowered):
        detected = "yahoo"
    else:
        detected = "generic"
    if fmt == "auto":
        fmt = detected
    elif headerless and fmt != "klines":
        raise DataError(
            f"{path}: line 1 is not a header ({header.strip()[:60]!r}); for a headerless kline file use --format klines"
        )
    elif fmt == "mt5" and "<date>" not in lowered:
        raise DataError(f"{path}: not a MetaTrader 5 export: the header has no <DATE> column ({header.strip()[:80]!r})")
    elif fmt == "yahoo" and not yf_multi and not {"date", "datetime"} & set(lowered):
        raise DataError(f"{path}: not a Yahoo CSV: the header has no Date or Datetime column ({header.strip()[:80]!r})")
    log.debug("%s: reading as %s (separator %r, encoding %s)", path, fmt, sep, encoding)

    sample = lines[1] if not headerless and len(lines) > 1 else lines[0]
    if yf_multi and len(lines) > 3:
        sample = lines[3]
    decimal = "," if sep != "," and any(_DECIMAL_COMMA.match(f.strip()) for f in sample.split(sep)) else "."

    names = None
    first_line = 2
    skiprows: tuple[int, ...] = ()
    time_name = None
    if headerless:
        n = len(fields)
        if n < 5:
            raise DataError(
                f"{path}: row 1: {n} columns; a headerless kline file needs at least 5 "
                "(open_time, open, high, low, close[, volume, ...])"
            )
        names = tuple(KLINE_COLUMNS[i] if i < len(KLINE_COLUMNS) else f"extra_{i}" for i in range(n))
        first_line = 1
    elif yf_multi:
        skiprows = (1, 2)
        first_line = 4
        third = lines[2].split(sep)[0].strip() if len(lines) > 2 else ""
        time_name = third if third.lower() in ("date", "datetime") else "Date"
    return _Layout(fmt, sep, decimal, encoding, names, skiprows, first_line, time_name)


def read_csv(path: Path | str, *, fmt: str = "auto") -> pd.DataFrame:
    """Read a bar file in format ``fmt`` (see the module docstring) into the canonical frame,
    validating every row.

    Column names are matched case-insensitively, ignoring MetaTrader's ``<>``. Raises
    :class:`evo.errors.DataError` (file, row, problem) on anything that is not clean bars:
    a missing OHLC column, an unparsable time, NaN/infinite/non-positive prices, a high below
    max(open, close) or a low above min(open, close), one time with two different bars, an
    empty file. Unsorted rows are sorted and identical duplicate rows dropped, with a warning.
    """
    _check_fmt(fmt)
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a data file")
    layout = _sniff(path, fmt)
    try:
        raw = pd.read_csv(
            path,
            sep=layout.sep,
            decimal=layout.decimal,
            encoding=layout.encoding,
            encoding_errors="replace",
            header=None if layout.names else 0,
            names=list(layout.names) if layout.names else None,
            skiprows=list(layout.skiprows) or None,
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if raw.empty:
        raise DataError(f"{path}: the file has a header but no rows")
    if layout.time_name:
        raw = raw.rename(columns={raw.columns[0]: layout.time_name})
    return to_canonical(raw, source=str(path), first_line=layout.first_line)


def _norm(name: object) -> str:
    return re.sub(r"\s+", "_", str(name).strip().strip('"').lower().strip("<>").strip())


def to_canonical(raw: pd.DataFrame, *, source: str, first_line: int = 2) -> pd.DataFrame:
    """Turn a raw table (one row per bar, columns named as in common exports) into the canonical
    frame. ``source`` names the input in error messages; ``first_line`` is the line number of
    ``raw``'s first row in that input (2 under a one-line header)."""
    frame = _rows_as_written(raw, source=source, first_line=first_line)
    frame = _order_and_dedupe(frame, source)
    _check_prices(frame, source)
    return frame.drop(columns="_line")


def _rows_as_written(raw: pd.DataFrame, *, source: str, first_line: int) -> pd.DataFrame:
    """The canonical columns and ``_line`` (line numbers) of ``raw``, in its order, prices unchecked."""
    columns: dict[str, object] = {}
    for c in raw.columns:
        columns.setdefault(_norm(c), c)
    missing = [c for c in ("open", "high", "low", "close") if c not in columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}; columns are {list(raw.columns)}")
    if "date" in columns and "time" in columns:
        stamps = _join_date_time(raw[columns["date"]], raw[columns["time"]])
    else:
        time_col = next((columns[c] for c in TIME_COLUMNS if c in columns), None)
        if time_col is None:
            raise DataError(
                f"{source}: no time column (expected one of Date, Datetime, timestamp, time, open_time); "
                f"columns are {list(raw.columns)}"
            )
        stamps = raw[time_col]

    times = _parse_times(stamps, source, first_line)
    frame = pd.DataFrame(index=pd.DatetimeIndex(times, name="time"))
    for name in ("open", "high", "low", "close"):
        frame[name] = _numeric(raw[columns[name]], name, source, first_line)
    frame["volume"] = _volume(raw, columns, source, first_line)
    frame["_line"] = np.arange(first_line, first_line + len(raw))
    return frame


def read_rows(path: Path | str, *, fmt: str = "auto") -> pd.DataFrame:
    """The bars of a file that is still being written (``evo live --follow``), as written.

    Only complete lines count: a last line without its newline is still being written and is left
    for the next read. Unlike :func:`read_csv`, rows stay in file order, duplicated times and rows
    out of order are kept and prices are not checked (the live runner judges each row itself).
    Returns the canonical columns plus ``line`` (the line number in the file, header = line 1);
    no rows (an empty or header-only file) is an empty frame. Raises :class:`DataError` for a
    missing file or a line that does not parse (a time or price that is not one).
    """
    _check_fmt(fmt)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in OHLCV}, index=pd.DatetimeIndex([], name="time"))
    empty["line"] = pd.Series(dtype="int64")
    data = path.read_bytes()
    if not data.strip():
        return empty
    layout = _sniff(path, fmt)
    text = data.decode(layout.encoding, errors="replace")
    text = text[: text.rfind("\n") + 1]
    try:
        raw = pd.read_csv(io.StringIO(text), sep=layout.sep, decimal=layout.decimal,
                          header=None if layout.names else 0, names=list(layout.names) if layout.names else None,
                          skiprows=list(layout.skiprows) or None, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        return empty
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if raw.empty:
        return empty
    if layout.time_name:
        raw = raw.rename(columns={raw.columns[0]: layout.time_name})
    frame = _rows_as_written(raw, source=str(path), first_line=layout.first_line)
    return frame.rename(columns={"_line": "line"})


def _join_date_time(date: pd.Series, clock: pd.Series) -> pd.Series:
    """``date`` and ``clock`` columns as one string column; numeric ``HHMMSS`` clocks get their
    leading zeros back (``500`` is 00:05:00), numeric ``YYYYMMDD`` dates become text."""

    def text(col: pd.Series, width: int) -> pd.Series:
        if pd.api.types.is_numeric_dtype(col):
            whole = col.notna() & (col == col.round())
            out = col.astype(str)
            out[whole] = col[whole].astype("int64").astype(str).str.zfill(width)
            return out
        return col.astype(str).str.strip()

    return text(date, 8) + " " + text(clock, 6)


def _parse_times(col: pd.Series, source: str, first_line: int = 2) -> pd.Series:
    """Timestamps as tz-naive ``datetime64[ns]``: zoned times in UTC (daily zoned ones at their own
    wall time), naive ones as written; numeric ones as epochs (refused before 1971)."""
    if pd.api.types.is_bool_dtype(col):
        numbers = None
    elif pd.api.types.is_numeric_dtype(col):
        numbers = col.astype("float64")
    else:
        # Text: a column of epoch numbers with a stray word in it is still an epoch column.
        numbers = None
        if any(_is_number(str(v)) for v in col.head(50)):
            numbers = pd.to_numeric(col, errors="coerce")
            if numbers.notna().mean() <= 0.5:
                numbers = None
    if numbers is not None:
        times = _from_numbers(numbers)
    else:
        text = col.astype(str).str.strip()
        try:
            times = pd.to_datetime(text, format="ISO8601", utc=True)
        except (ValueError, OverflowError):
            dayfirst = _day_first(text, source, first_line)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "could not infer format": expected for mixed input
                times = pd.to_datetime(text, format="mixed", dayfirst=dayfirst, utc=True, errors="coerce")
    bad = times.isna().to_numpy().nonzero()[0]
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{source}: row {i + first_line}: unparsable timestamp {col.iloc[i]!r}")
    if numbers is not None:
        _check_epoch(times, numbers, source, first_line)
    if getattr(times.dt, "tz", None) is not None:
        local = None if numbers is not None else _local_wall_time(col.astype(str).str.strip(), times)
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
        if local is not None and _one_bar_per_day(local):
            # Daily (or coarser) bars stamped with a zone: the exchange's own date is the bar's date
            # (a Tokyo Friday, 2024-01-05 00:00+09:00, is Thursday 15:00 in UTC). Keep the wall time.
            times = local
    return times.astype("datetime64[ns]")


# A clock time followed by a zone: 00:00:00+09:00, 10:00Z, 09:30:00.000-0500, 16:00 UTC.
_ZONED_CLOCK = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(Z|UTC|GMT|([+-])(\d{2}):?(\d{2})?)$",
                          re.IGNORECASE)


def _local_wall_time(text: pd.Series, utc: pd.Series) -> pd.Series | None:
    """The times as written (tz-naive wall time in each one's own zone): ``utc`` plus the offset that
    ``text`` states, when every time in ``text`` is a clock time with a zone; else None."""
    if not len(text) or not _ZONED_CLOCK.search(text.iloc[0]):
        return None
    zone = text.str.extract(_ZONED_CLOCK)
    if zone[0].isna().any():  # some time has no zone
        return None
    sign = np.where(zone[1] == "-", -1.0, 1.0)
    hours = pd.to_numeric(zone[2], errors="coerce").fillna(0.0).to_numpy()
    minutes = pd.to_numeric(zone[3], errors="coerce").fillna(0.0).to_numpy()
    offset = pd.to_timedelta(sign * (hours * 60.0 + minutes), unit="min")
    naive = pd.DatetimeIndex(utc).tz_convert("UTC").tz_localize(None)
    return pd.Series(naive + offset, index=text.index)


def _one_bar_per_day(times: pd.Series) -> bool:
    """True for daily or coarser bars: every bar at the same time of day, no two on one date."""
    t = pd.DatetimeIndex(times)
    day = t.normalize()
    return bool((t - day).nunique() == 1 and day.is_unique)


# Numeric times that land before this are not bar times (epoch 0 is 1970-01-01).
_EARLIEST_EPOCH = pd.Timestamp("1971-01-01")
_EXCEL_SERIALS = (10_958, 73_051)  # 1930-01-01 .. 2100-01-01 as Excel serial dates (days since 1899-12-30)


def _check_epoch(times: pd.Series, numbers: pd.Series, source: str, first_line: int) -> None:
    """Refuse numeric times that read as implausible epochs: before 1971, e.g. Excel serial dates
    (``36182`` is 1999-01-22 in Excel, 10:03:02 on 1970-01-01 as epoch seconds, and would make bars
    one second apart)."""
    t = pd.DatetimeIndex(times)
    if t.tz is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    early = (t < _EARLIEST_EPOCH).nonzero()[0]
    if not len(early):
        return
    i = int(early[0])
    value = numbers.iloc[i]
    shown = int(value) if float(value).is_integer() else float(value)
    values = numbers.to_numpy(dtype="float64")
    if ((values >= _EXCEL_SERIALS[0]) & (values <= _EXCEL_SERIALS[1])).all():
        excel = pd.Timestamp("1899-12-30") + pd.to_timedelta(float(value), unit="D")
        raise DataError(
            f"{source}: row {i + first_line}: time {shown} looks like an Excel serial date ({excel.date()}), "
            f"not an epoch (it would read as {t[i]}); save the time column as dates (YYYY-MM-DD)")
    raise DataError(
        f"{source}: row {i + first_line}: time {shown} reads as {t[i]} (epoch), before 1971: not a plausible "
        "bar time; give ISO times or epoch seconds/milliseconds")


def _from_numbers(numbers: pd.Series) -> pd.Series:
    """Numeric times: ``YYYYMMDD`` integers, else epoch seconds/ms/us/ns told apart by the magnitude
    of the largest (NaN stays NaT)."""
    values = numbers.to_numpy(dtype="float64")
    finite = np.isfinite(values)
    if not finite.any():
        return pd.Series(pd.NaT, index=numbers.index, dtype="datetime64[ns]")
    whole = finite & (values == np.round(np.where(finite, values, 0.0)))
    if whole.all() and ((values >= 19000101) & (values <= 21001231)).all():
        # YYYYMMDD integers: as epoch seconds they would all fall in August 1970.
        return pd.to_datetime(numbers.astype("int64").astype(str), format="%Y%m%d", errors="coerce")
    top = np.abs(values[finite]).max()
    unit = "ns" if top > 1e17 else "us" if top > 1e14 else "ms" if top > 1e11 else "s"
    return pd.to_datetime(numbers.where(finite), unit=unit, errors="coerce")


def _day_first(text: pd.Series, source: str, first_line: int) -> bool:
    """Whether ``dd.mm.yyyy``-like dates put the day first: yes if some first field exceeds 12,
    no if some second field does, and by the separator (dot: day first) when no date tells."""
    parts = text.str.extract(r"^(\d{1,2})([./-])(\d{1,2})[./-]\d{2,4}\b")
    if parts[0].isna().all():
        return False
    first = pd.to_numeric(parts[0], errors="coerce")
    second = pd.to_numeric(parts[2], errors="coerce")
    over_first = (first > 12).to_numpy().nonzero()[0]
    over_second = (second > 12).to_numpy().nonzero()[0]
    if len(over_first) and len(over_second):
        i, j = int(over_first[0]), int(over_second[0])
        raise DataError(
            f"{source}: row {j + first_line}: date {text.iloc[j]!r} is month-first but row "
            f"{i + first_line} ({text.iloc[i]!r}) is day-first"
        )
    if len(over_first) or len(over_second):
        return bool(len(over_first))
    dot = bool((parts[1] == ".").any())
    log.warning(
        "%s: dates like %r could be day- or month-first; reading them %s-first",
        source,
        text.iloc[0],
        "day" if dot else "month",
    )
    return dot


def _numeric(col: pd.Series, name: str, source: str, first_line: int = 2) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce")
    bad = (values.isna() & col.notna()).to_numpy().nonzero()[0]
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{source}: row {i + first_line}: {name} is not a number ({col.iloc[i]!r})")
    return values.to_numpy(dtype="float64")


def _volume(raw: pd.DataFrame, columns: dict[str, object], source: str, first_line: int) -> np.ndarray:
    """The volume column (empty cells are 0). A real volume that is all zero, as forex/CFD feeds
    write it, gives way to a tick volume column when there is one (logged)."""

    def read(key: str) -> np.ndarray:
        v = _numeric(raw[columns[key]], "volume", source, first_line)
        return np.where(np.isnan(v), 0.0, v)

    real_key = next((c for c in REAL_VOLUME_COLUMNS if c in columns), None)
    tick_key = next((c for c in TICK_VOLUME_COLUMNS if c in columns), None)
    real = read(real_key) if real_key else None
    if real is not None and (real != 0).any():
        return real
    if tick_key is not None:
        tick = read(tick_key)
        if (tick != 0).any():
            why = f"{columns[real_key]} is all zero" if real_key else "no volume column"
            log.warning("%s: %s; using %s (ticks per bar) as the volume", source, why, columns[tick_key])
            return tick
    return real if real is not None else np.zeros(len(raw))


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
                f"{source}: row {int(lines.iloc[1])}: timestamp {conflicts.iloc[0]} appears twice with "
                f"different values (also row {int(lines.iloc[0])})"
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


# -------------------------------------------------------------------------------- yfinance


YF_SPANS = {"1m": "1min", "2m": "2min", "5m": "5min", "15m": "15min", "30m": "30min", "60m": "60min", "90m": "90min",
            "1h": "1h", "1d": "1D", "5d": "5D", "1wk": "7D", "1mo": "1MS", "3mo": "3MS"}
"""How long one bar of each yfinance interval lasts (a pandas offset: months are calendar months)."""
REBASE_TOLERANCE = 0.01
"""A top-up whose bars on the cached times close more than this (a fraction) away from the cached
ones means yfinance re-based the history (a split): the whole period is downloaded again."""

Downloader = Callable[..., "pd.DataFrame | None"]
"""``download(ticker, *, interval, period=None, start=None) -> raw frame`` (yfinance's columns and
index); tests pass their own, evo uses :func:`_yf_download`."""


def closed_bars(bars: pd.DataFrame, interval: str, now: pd.Timestamp) -> pd.DataFrame:
    """``bars`` without the bars that have not closed at ``now`` (tz-naive UTC): yfinance returns
    the running bar (today's daily bar during the session, the current minute), whose values
    still change; a bar labelled ``t`` closes at ``t`` + one ``interval``."""
    if not len(bars):
        return bars
    closes = bars.index + pd.tseries.frequencies.to_offset(YF_SPANS[interval])
    return bars[closes <= now]


def _merge_bars(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` topped up with ``new``: one row per time, ``new``'s where both have one."""
    both = pd.concat([old[~old.index.isin(new.index)], new])
    return both.sort_index(kind="stable")


def load_yfinance(ticker: str, *, cache_dir: Path, interval: str = "1d", period: str = "max",
                  download: Downloader | None = None, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Closed bars of ``interval`` over ``period`` for ``ticker`` through yfinance, cached as CSV
    under ``cache_dir/yf/<ticker>_<interval>_<period>.csv``.

    A cached copy is topped up on every call with the bars from its last cached bar on (that bar
    again, as the newer download may revise it: on overlapping times the newer bar wins), unless
    no new bar can have closed since; the merged bars are written back. Offline, the cached bars
    are used as they are (with a warning: ``evo predict --max-age`` judges whether they are fresh
    enough). A bar that has not closed at ``now`` (default: the current UTC time) is dropped,
    never cached nor returned (:func:`closed_bars`). ``download`` replaces yfinance (tests).

    yfinance does not raise when offline: it logs an error and returns an empty frame. That
    case, with no cached copy, becomes a DataError carrying yfinance's reason; yfinance's own log
    lines are kept out of the terminal.
    """
    if not ticker or not ticker.replace(".", "").replace("-", "").replace("^", "").replace("=", "").isalnum():
        raise DataError(f"yf:{ticker}: not a ticker symbol")
    if interval not in YF_INTERVALS:
        raise DataError(f"yf:{ticker}: interval {interval!r} is not one of {', '.join(YF_INTERVALS)}")
    if not YF_PERIOD.match(period):
        raise DataError(f"yf:{ticker}: period {period!r} is not a number of d, wk, mo or y (60d, 6mo, 2y), ytd or max")
    download = download or _yf_download
    now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else pd.Timestamp(now)
    cache = cache_dir / "yf" / f"{ticker}_{interval}_{period}.csv"
    cached = read_csv(cache) if cache.exists() else None
    if cached is not None:
        span = pd.tseries.frequencies.to_offset(YF_SPANS[interval])
        last = cached.index[-1]
        if last + span + span > now:   # the bar after the last cached one has not closed yet
            log.info("yf:%s: using cached download %s (up to date: last bar %s)", ticker, cache, last)
            return closed_bars(cached, interval, now)
        frame, reason = _fetch(download, ticker, interval, now, start=last)
        if frame is not None:
            both = cached.index.intersection(frame.index)
            moved = (frame.loc[both, "close"] / cached.loc[both, "close"] - 1.0).abs()
            if len(both) and moved.max() > REBASE_TOLERANCE:
                log.warning("yf:%s: the bar at %s closes %.1f %% away from the cached one (a split re-based the "
                            "history?); downloading the whole %s again", ticker, moved.idxmax(), 100 * moved.max(),
                            period)
                frame, reason = _fetch(download, ticker, interval, now, period=period)
            else:
                log.info("yf:%s: topped up %s with %d bar(s) after %s", ticker, cache,
                         int((frame.index > last).sum()), last)
                frame = _merge_bars(cached, frame)
        if frame is None or not len(frame):
            log.warning("yf:%s: could not top up the cached download %s (%s); using its bars up to %s",
                        ticker, cache, reason, last)
            return closed_bars(cached, interval, now)
    else:
        frame, reason = _fetch(download, ticker, interval, now, period=period)
        if frame is None:
            raise DataError(
                f"yf:{ticker}: no data downloaded (offline, unknown ticker, or no {interval} bars over {period})"
                f"{': ' + reason if reason else ''}; no cached copy in {cache.parent}; pass --data FILE.csv instead"
            )
        if not len(frame):
            raise DataError(f"yf:{ticker}: no closed {interval} bar yet; pass --data FILE.csv instead")
    from evo.fileio import atomic_path

    with atomic_path(cache) as tmp:
        frame.rename(columns=str.capitalize).to_csv(tmp, index_label="Datetime")
    return frame


def fetch_yfinance(ticker: str, *, interval: str, period: str | None = None, start: pd.Timestamp | None = None,
                   download: Downloader | None = None,
                   now: pd.Timestamp | None = None) -> tuple[pd.DataFrame | None, str]:
    """One uncached download for a live poll (``evo live --source yf:``): ``(closed bars, "")``, or
    ``(None, why not)`` when offline or nothing came back; never raises for a network failure."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else pd.Timestamp(now)
    when = {"start": start} if start is not None else {"period": period or "7d"}
    return _fetch(download or _yf_download, ticker, interval, now, **when)


def _fetch(download: Downloader, ticker: str, interval: str, now: pd.Timestamp,
           **when) -> tuple[pd.DataFrame | None, str]:
    """``(closed bars, "")`` downloaded over ``when`` (``period=`` or ``start=``), or ``(None, why
    not)`` when the download raised or returned nothing."""
    try:
        raw = download(ticker, interval=interval, **when)
    except DataError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - yfinance raises many types for network failures
        return None, f"download failed ({exc})"
    if raw is None or raw.empty:
        return None, (raw.attrs.get("reason") if raw is not None else "") or "nothing returned"
    return closed_bars(to_canonical(raw.reset_index(), source=f"yf:{ticker}"), interval, now), ""


def _yf_download(ticker: str, *, interval: str, period: str | None = None,
                 start: pd.Timestamp | None = None) -> pd.DataFrame | None:
    """yfinance's download of ``ticker`` over ``period`` or from ``start``'s day (UTC) on, with its
    log lines kept off the terminal. Offline it returns an empty frame whose ``attrs["reason"]``
    holds yfinance's last error."""
    import yfinance  # imported here: it is slow and only this path needs it

    errors = _Capture()
    yf_log = logging.getLogger("yfinance")
    saved = yf_log.handlers[:], yf_log.propagate
    yf_log.handlers[:] = [errors]
    yf_log.propagate = False
    when = {"start": pd.Timestamp(start).strftime("%Y-%m-%d")} if start is not None else {"period": period}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # yfinance's own pandas deprecation warnings
            raw = yfinance.download(ticker, interval=interval, auto_adjust=False, progress=False,
                                    multi_level_index=False, **when)
    finally:
        yf_log.handlers[:], yf_log.propagate = saved
    raw = pd.DataFrame() if raw is None else raw
    if raw.empty:
        raw.attrs["reason"] = errors.reason
    return raw


class _Capture(logging.Handler):
    """Keeps yfinance's log records off the terminal; remembers its last error as the reason."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reason = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().split())
        log.debug("yfinance: %s", message)
        if record.levelno >= logging.ERROR and message and not message.endswith("Failed download:"):
            self.reason = message.split(" See https://")[0][:200]
