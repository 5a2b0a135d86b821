"""Anchored walk-forward folds over decision bars, purged so that no label crosses a boundary.

A *decision bar* ``t`` is a row number: the models see bars ``<= t``, the label of ``t`` is the move
from ``close[t]`` to ``close[t + horizon]``, and the signal made at the close of ``t`` trades at the
open of ``t + 1``. The decision bars are ``[first_bar, n_bars - 1)``: ``first_bar`` is the first row
with a full feature warm-up and model window, and the last bar ``n_bars - 1`` is never a decision
bar because there is no next bar to trade on.

Layout of fold ``k`` (``gap = horizon + embargo`` bars)::

    first_bar                                                                    n_bars - 1
    |-- train ------------|gap|-- val --|gap|-- test k --|-- test k+1 --| ... --|
                                            ^ test folds are contiguous and end at n_bars - 1

* The **test** region is the last ``test_fraction`` of the decision bars, cut into ``n_folds``
  contiguous folds in time order (sizes differ by at most one bar).
* **Anchored** (expanding): every fold trains from ``first_bar``; the bars of earlier test folds
  become training bars of later folds.
* The window before ``test.start - gap`` is split into training rows and, after another ``gap``,
  its last ``val_fraction`` as the validation segment (early stopping). Hence
  ``train.stop + gap <= val.start`` and ``val.stop + gap <= test.start``: the label of the last
  training bar uses ``close[train.stop - 1 + horizon] = close[val.start - 1 - embargo]``, so no
  training or validation label reaches into the next segment.

Worked value: ``walk_forward_folds(1000, n_folds=2, horizon=5, first_bar=100)`` has 899 decision
bars; the test region is the last ``floor(0.3 * 899) = 269`` of them, ``[730, 999)``, split into
``[730, 864)`` and ``[864, 999)``. Fold 0 then has the window ``[100, 725)`` (625 rows),
validation ``[632, 725)`` (``floor(0.15 * 625) = 93`` rows) and training ``[100, 627)``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from evo.errors import ConfigError, DataError

__all__ = ["Fold", "bars_needed", "walk_forward_folds"]


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: three half-open ``(start, stop)`` ranges of decision bars (row numbers).

    ``train`` fits the models, ``val`` drives early stopping and ``test`` is scored out of sample.
    Example: ``Fold(train=(100, 627), val=(632, 725), test=(730, 864))`` has ``n_train == 527``.
    """

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            rng = getattr(self, name)
            ok = (
                isinstance(rng, (tuple, list))
                and len(rng) == 2
                and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in rng)
                and 0 <= rng[0] < rng[1]
            )
            if not ok:
                raise ConfigError(
                    f"Fold.{name} must be a (start, stop) pair of ints with 0 <= start < stop, got {rng!r}"
                )
            object.__setattr__(self, name, (int(rng[0]), int(rng[1])))  # numpy ints -> plain ints
        if not (self.train[1] <= self.val[0] and self.val[1] <= self.test[0]):
            raise ConfigError(f"Fold segments must be in time order train < val < test, got {self!r}")

    @property
    def n_train(self) -> int:
        """Number of training decision bars."""
        return self.train[1] - self.train[0]

    @property
    def n_val(self) -> int:
        """Number of validation decision bars."""
        return self.val[1] - self.val[0]

    @property
    def n_test(self) -> int:
        """Number of test decision bars."""
        return self.test[1] - self.test[0]


def _check_params(
    n_folds: int,
    horizon: int,
    first_bar: int,
    test_fraction: float,
    val_fraction: float,
    embargo: int,
    min_train: int,
    min_val: int,
    min_test: int,
) -> None:
    ints = {
        "n_folds": (n_folds, 1),
        "horizon": (horizon, 1),
        "first_bar": (first_bar, 0),
        "embargo": (embargo, 0),
        "min_train": (min_train, 1),
        "min_val": (min_val, 1),
        "min_test": (min_test, 1),
    }
    for name, (value, low) in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{name} must be an int >= {low} (bars), got {value!r}")
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
            raise ConfigError(
                f"{name} must be a fraction strictly between 0 and 1 (0.3 = 30 %), got {value!r}"
            )


def _plan(
    n_bars: int,
    n_folds: int,
    horizon: int,
    first_bar: int,
    test_fraction: float,
    val_fraction: float,
    embargo: int,
    min_train: int,
    min_val: int,
    min_test: int,
) -> tuple[list[Fold] | None, str]:
    """Folds for ``n_bars``, or ``(None, reason)`` when a segment would be too short.

    Every segment length is non-decreasing in ``n_bars`` (floors of fractions of non-decreasing
    counts), so feasibility is monotone and :func:`bars_needed` can bisect.
    """
    gap = horizon + embargo
    n_decision = n_bars - 1 - first_bar
    if n_decision <= 0:
        return None, f"there are no decision bars in [first_bar={first_bar}, n_bars-1={n_bars - 1})"
    n_test_total = math.floor(test_fraction * n_decision)
    if n_test_total // n_folds < min_test:
        return None, (
            f"the test region of {n_test_total} bars gives {n_folds} folds of "
            f"{n_test_total // n_folds} bars (< min_test={min_test})"
        )
    test_start = n_bars - 1 - n_test_total
    edges = [test_start + (k * n_test_total) // n_folds for k in range(n_folds + 1)]
    folds: list[Fold] = []
    for k in range(n_folds):
        ts, te = edges[k], edges[k + 1]
        window = ts - gap - first_bar  # rows available for train + gap + val
        n_val = math.floor(val_fraction * max(window, 0))
        n_train = window - n_val - gap
        if n_val < min_val or n_train < min_train:
            return None, (
                f"fold {k} would have {max(n_train, 0)} training rows (min_train={min_train}) and "
                f"{n_val} validation rows (min_val={min_val})"
            )
        val = (ts - gap - n_val, ts - gap)
        train = (first_bar, val[0] - gap)
        folds.append(Fold(train=train, val=val, test=(ts, te)))
    return folds, ""


def bars_needed(
    *,
    n_folds: int,
    horizon: int,
    first_bar: int,
    test_fraction: float = 0.3,
    val_fraction: float = 0.15,
    embargo: int = 0,
    min_train: int = 64,
    min_val: int = 16,
    min_test: int = 16,
) -> int:
    """The smallest ``n_bars`` for which :func:`walk_forward_folds` succeeds with these settings.

    Every larger ``n_bars`` succeeds too. Example: ``bars_needed(n_folds=3, horizon=5,
    first_bar=50)`` is the fewest bars (rows of OHLCV) that give three folds with at least 64
    training, 16 validation and 16 test rows each.
    """
    args = (n_folds, horizon, first_bar, test_fraction, val_fraction, embargo, min_train, min_val, min_test)
    _check_params(*args)
    lo = first_bar + 1  # infeasible: no decision bars
    hi = max(2 * lo, 64)
    while _plan(hi, *args)[0] is None:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:  # invariant: lo infeasible, hi feasible
        mid = (lo + hi) // 2
        if _plan(mid, *args)[0] is None:
            lo = mid
        else:
            hi = mid
    return hi


def walk_forward_folds(
    n_bars: int,
    *,
    n_folds: int,
    horizon: int,
    first_bar: int,
    test_fraction: float = 0.3,
    val_fraction: float = 0.15,
    embargo: int = 0,
    min_train: int = 64,
    min_val: int = 16,
    min_test: int = 16,
) -> list[Fold]:
    """Anchored walk-forward folds over the decision bars ``[first_bar, n_bars - 1)``.

    Args:
        n_bars: rows of OHLCV (bars), e.g. 4012 for the NVDA daily file.
        n_folds: number of test folds (>= 1); the test region is cut into this many contiguous
            pieces in time order, the last one ending at ``n_bars - 1``.
        horizon: label horizon in bars (>= 1): the label of ``t`` uses ``close[t + horizon]``.
        first_bar: first usable decision bar (row number, >= 0), i.e. after feature warm-up and
            the model window.
        test_fraction: fraction of the decision bars held out for testing (0.3 = the last 30 %).
        val_fraction: fraction of each fold's pre-test window used for validation (0.15 = 15 %).
        embargo: extra bars (>= 0) added to each purge gap; the gap is ``horizon + embargo`` bars.
        min_train, min_val, min_test: minimum rows per segment (bars).

    Returns:
        ``n_folds`` :class:`Fold` objects in time order, with
        ``train.stop + horizon + embargo <= val.start`` and
        ``val.stop + horizon + embargo <= test.start``.

    Raises:
        ConfigError: a parameter is out of range.
        DataError: ``n_bars`` is too small; the message gives the number of bars needed
            (see :func:`bars_needed`).
    """
    _check_params(
        n_folds, horizon, first_bar, test_fraction, val_fraction, embargo, min_train, min_val, min_test
    )
    if not isinstance(n_bars, int) or isinstance(n_bars, bool) or n_bars < 0:
        raise DataError(f"n_bars must be a non-negative int (rows of OHLCV), got {n_bars!r}")
    folds, reason = _plan(
        n_bars,
        n_folds,
        horizon,
        first_bar,
        test_fraction,
        val_fraction,
        embargo,
        min_train,
        min_val,
        min_test,
    )
    if folds is None:
        needed = bars_needed(
            n_folds=n_folds,
            horizon=horizon,
            first_bar=first_bar,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            embargo=embargo,
            min_train=min_train,
            min_val=min_val,
            min_test=min_test,
        )
        raise DataError(
            f"too few bars for walk-forward evaluation: {n_bars} bars given, at least {needed} needed "
            f"for n_folds={n_folds}, horizon={horizon}, first_bar={first_bar}, embargo={embargo} "
            f"({reason}). Use more bars, fewer folds, a shorter window/warm-up or a shorter horizon."
        )
    return folds
