"""Shared fixtures: the real market data in ../shared/data, loaded into evo's canonical bar frame."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

# Deterministic, single-threaded torch in tests (CI has 2 cores; results must not depend on it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _read_bars(name: str) -> pd.DataFrame:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared data file {path} is not there")
    raw = pd.read_csv(path)
    time_col = "Date" if "Date" in raw.columns else "Datetime"
    frame = pd.DataFrame(
        {c.lower(): raw[c].astype("float64") for c in ("Open", "High", "Low", "Close", "Volume")}
    )
    frame.index = pd.DatetimeIndex(pd.to_datetime(raw[time_col]), name="time")
    return frame


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def nvda() -> pd.DataFrame:
    """NVIDIA daily bars 1999-2014 (4012 bars, split-adjusted OHLC)."""
    return _read_bars("NVDA_1d_1999_2014.csv")


@pytest.fixture(scope="session")
def orcl() -> pd.DataFrame:
    """Oracle daily bars 1995-2014 (5036 bars)."""
    return _read_bars("ORCL_1d_1995_2014.csv")


@pytest.fixture(scope="session")
def indexfut() -> pd.DataFrame:
    """A European index future, 1-minute bars, Jan-Feb 2006 (30889 bars, overnight gaps)."""
    return _read_bars("INDEXFUT_1m_2006.csv")


@pytest.fixture
def float64():
    """torch's default dtype float64 for one test: comparisons about the algorithm, not the host's
    float32 kernels (they differ in the last bits between an EPYC and a Xeon)."""
    import torch

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)
