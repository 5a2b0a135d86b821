"""The data a search judges genomes on: bars, their feature matrix and the walk-forward layout
shared by every genome (:class:`Dataset`), and the sealed holdout cut off its end."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from evo.config import Budget
from evo.errors import DataError
from evo.genome import FeaturePools


@dataclass(frozen=True)
class Dataset:
    """Bars and their feature matrix, with the walk-forward layout shared by every genome.

    ``first_bar`` is the first decision bar any genome of the space can use: the catalog's
    longest warm-up plus the longest window, so every genome is judged on the same test bars.
    """

    bars: pd.DataFrame
    features: pd.DataFrame
    label: str
    data_hash: str
    pools: FeaturePools
    warmup: dict[str, int]
    first_bar: int
    periods_per_year: float
    clock: Any = None             # features.timeframes.BarClock of the bars
    frames: dict = field(default_factory=dict)   # higher timeframes' rows (evo.pipeline.inputs.Frame) by multiplier

    @property
    def n_bars(self) -> int:
        return len(self.bars)


def prepare_dataset(bars: pd.DataFrame, label: str, budget: Budget, *, cache_dir=None) -> Dataset:
    """Compute (or load from cache) the feature matrix and fix the layout for ``budget``.

    Raises DataError when the data are too short for the budget's windows, horizon and folds,
    saying how many bars are needed.
    """
    import features as F
    from backtest import bars_needed, periods_per_year
    from evo.pipeline.inputs import build_frames, first_decision_bar
    from features.timeframes import infer_clock

    space = budget.search
    usable = set(F.usable_features(bars))
    clock = infer_clock(bars.index) if len(bars) > 1 else None
    timeframes = tuple(m for m in clock.multipliers() if m in space.timeframes) if clock else (1,)
    pools = FeaturePools(
        a=tuple(n for n in F.model_a_features() if n in usable),
        b=tuple(n for n in F.model_b_features() if n in usable),
        timeframes=timeframes,
    )
    warmup = {s.name: int(s.warmup_bars) for s in F.catalog()}
    worst_warmup = max(warmup[n] for n in pools.a + pools.b)
    first_bar = worst_warmup + max(space.seq_len) - 1
    frames = {}
    if len(timeframes) > 1:  # the slowest timeframe needs its own warm-up and window of closed periods
        frames = {m: f for m, f in build_frames(bars, None, clock, timeframes).items() if m != 1}
        first_bar = max(first_bar, first_decision_bar(frames, worst_warmup + max(space.seq_len)))
    ev = budget.evaluate
    need = bars_needed(n_folds=ev.folds, horizon=max(space.horizon), first_bar=first_bar,
                       test_fraction=ev.test_fraction, val_fraction=ev.val_fraction, embargo=ev.embargo)
    search_bars = len(bars) - holdout_bars(len(bars), ev.holdout_fraction)
    if search_bars < need:
        total = need if ev.holdout_fraction == 0 else math.ceil(need / (1.0 - ev.holdout_fraction)) + 1
        raise DataError(
            f"{label}: {len(bars)} bars are too few for budget {budget.name!r} "
            f"(windows up to {max(space.seq_len)}, horizon up to {max(space.horizon)}, {ev.folds} folds, "
            f"{worst_warmup} bars of indicator warm-up, {ev.holdout_fraction:.0%} holdout): "
            f"needs at least {total}"
        )
    feats = F.load_or_compute(bars, cache_dir)
    return Dataset(bars=bars, features=feats, label=label, data_hash=F.data_hash(bars)[:16], pools=pools,
                   warmup=warmup, first_bar=first_bar, periods_per_year=periods_per_year(bars.index),
                   clock=clock, frames=frames)


def holdout_bars(n_bars: int, fraction: float) -> int:
    """Bars at the end kept for the holdout (0 when ``fraction`` is 0)."""
    return int(round(n_bars * fraction)) if fraction > 0 else 0


def head(ds: Dataset, n: int) -> Dataset:
    """The dataset of the first ``n`` bars (copies: nothing after them stays reachable). Features
    at bar t use bars <= t, so slicing equals recomputing on the shorter data."""
    from backtest import periods_per_year
    from evo.pipeline.inputs import truncate_frames

    return replace(ds, bars=ds.bars.iloc[:n].copy(), features=ds.features.iloc[:n].copy(),
                   periods_per_year=periods_per_year(ds.bars.index[:n]), frames=truncate_frames(ds.frames, n))


class HoldoutSealed(RuntimeError):
    """The holdout was read before the search ended: a bug, never a user error."""


class Holdout:
    """The untouched end of the data, sealed while the search runs.

    ``dataset`` (all bars, the holdout included) raises :class:`HoldoutSealed` until
    :meth:`unseal` is called after the last generation; the search itself only ever holds the
    dataset of the bars before ``cut``. One annualisation for both: the holdout's Sharpe is scaled by
    the bars per year measured on the search span (``backtest.periods_per_year`` of the bars before
    ``cut``), so the two figures compare and the holdout's own calendar is not needed to score it.
    """

    def __init__(self, full: Dataset, cut: int):
        from backtest import periods_per_year

        full = replace(full, periods_per_year=periods_per_year(full.bars.index[:cut]))
        self._full, self.cut, self.sealed = full, cut, True
        self.start = full.bars.index[cut].isoformat()
        self.end = full.bars.index[-1].isoformat()

    def unseal(self) -> None:
        self.sealed = False

    @property
    def dataset(self) -> Dataset:
        if self.sealed:
            raise HoldoutSealed("the holdout is sealed until the search has ended")
        return self._full


def prepare_run_data(bars: pd.DataFrame, label: str, budget: Budget, *,
                     cache_dir=None) -> tuple[Dataset, Holdout | None]:
    """The search's dataset (the bars before the holdout) and the sealed holdout."""
    full = prepare_dataset(bars, label, budget, cache_dir=cache_dir)
    n_hold = holdout_bars(full.n_bars, budget.evaluate.holdout_fraction)
    if n_hold == 0:
        return full, None
    if n_hold < 32 + max(budget.search.horizon):
        raise DataError(f"{label}: the {budget.evaluate.holdout_fraction:.0%} holdout is only {n_hold} bars; "
                        "give more data or set evaluate.holdout_fraction = 0")
    cut = full.n_bars - n_hold
    return head(full, cut), Holdout(full, cut)   # the holdout annualised like the search span
