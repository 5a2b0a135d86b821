"""The order plan of a signal under stop-loss / take-profit, measured from the fill, entry bar included.

Imported only inside :func:`backtest.portfolio._backtest` (it needs numba, which ``import backtest``
must not load for ``evo predict``).

Each bar ``i`` becomes three order rows for vectorbt's from-orders simulator, in time order:

- row ``3i``     at ``open[i]``: the signal's order (entry from flat, exit to flat, or a reversal in
  one order when the size is all-in);
- row ``3i + 1`` at ``open[i]``: the entry after a reversal's exit when the size is a fraction
  (a ``SizeType.Percent`` order cannot reverse a position in one order);
- row ``3i + 2`` inside the bar: the stop exit, if the position held after the open touches a level.

Stop rule (the one the bundle states for the live bot): the levels are fractions of the **fill
price**, the entry bar's open plus slippage (``open * (1 + slippage)`` for a long, ``open * (1 -
slippage)`` for a short): a long filled at 100 with ``stop_loss = 0.03`` stops at 97, with
``take_profit = 0.05`` takes profit at 105. They are checked against every bar's low/high from the
entry bar on, the entry bar included; the stop-loss is checked first (a bar that touches both counts
as a loss). A bar that opens beyond a level exits at its open (a gap), otherwise the exit fills at
the level; the exit pays slippage and fees like every fill. After a stop the position stays flat
until the signal changes (no re-entry while the signal keeps asking for the stopped position).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["stop_plan"]


@njit(cache=True)
def stop_plan(open_, high, low, held, size, stop_loss, take_profit, slippage,
              amount, target_amount, percent):  # pragma: no cover - numba
    """Order rows of :mod:`backtest._stops` for ``held`` (the position wanted during each bar).

    Args: float64 ``(N,)`` open/high/low, int8 ``(N,)`` held, ``size`` in (0, 1], ``stop_loss`` /
    ``take_profit`` fractions (NaN = none), ``slippage`` fraction per side; ``amount``,
    ``target_amount``, ``percent``: vectorbt's ``SizeType`` codes.

    Returns ``(order_size, size_type, price, planned)``: float64/int64/float64 ``(3N,)`` rows (NaN size
    = no order) and int8 ``(N,)``, the position held at the close of each bar if every order fills.
    """
    n = open_.shape[0]
    order_size = np.full(3 * n, np.nan)
    size_type = np.zeros(3 * n, dtype=np.int64)
    price = np.empty(3 * n)
    planned = np.zeros(n, dtype=np.int8)
    pos = 0
    sl_level = np.nan
    tp_level = np.nan
    prev_want = 0
    for i in range(n):
        o = open_[i]
        price[3 * i] = o
        price[3 * i + 1] = o
        price[3 * i + 2] = o
        want = held[i]
        if want != prev_want and want != pos:
            if want == 0:
                order_size[3 * i] = 0.0
                size_type[3 * i] = target_amount
            elif size >= 1.0:
                order_size[3 * i] = want * np.inf
                size_type[3 * i] = amount
            else:
                row = 3 * i
                if pos != 0:  # reversal: exit first, then enter with a fraction of the equity
                    order_size[row] = 0.0
                    size_type[row] = target_amount
                    row += 1
                order_size[row] = want * size
                size_type[row] = percent
            pos = want
            if want != 0:
                fill = o * (1.0 + want * slippage)
                sl_level = fill * (1.0 - want * stop_loss)
                tp_level = fill * (1.0 + want * take_profit)
        prev_want = want
        if pos != 0:
            exit_price = np.nan
            if pos > 0:
                if not np.isnan(sl_level):
                    if o <= sl_level:
                        exit_price = o
                    elif low[i] <= sl_level:
                        exit_price = sl_level
                if np.isnan(exit_price) and not np.isnan(tp_level):
                    if o >= tp_level:
                        exit_price = o
                    elif high[i] >= tp_level:
                        exit_price = tp_level
            else:
                if not np.isnan(sl_level):
                    if o >= sl_level:
                        exit_price = o
                    elif high[i] >= sl_level:
                        exit_price = sl_level
                if np.isnan(exit_price) and not np.isnan(tp_level):
                    if o <= tp_level:
                        exit_price = o
                    elif low[i] <= tp_level:
                        exit_price = tp_level
            if not np.isnan(exit_price):
                order_size[3 * i + 2] = 0.0
                size_type[3 * i + 2] = target_amount
                price[3 * i + 2] = exit_price
                pos = 0
        planned[i] = pos
    return order_size, size_type, price, planned
