"""The paper account of ``evo live``: the backtest's fills and equity, bar by bar, in plain numpy.

:func:`backtest.backtest_signals` scores a whole signal at once with vectorbt's order simulator.
A live runner gets one bar at a time and must not import vectorbt (``evo predict``'s rule), so
:class:`PaperAccount` re-implements exactly what that simulator does for evo's orders, one bar
per :meth:`PaperAccount.on_bar` call, and ``evo live --reconcile`` checks it against the real one.

Rules (those of :mod:`backtest.portfolio` and :mod:`backtest._stops`, stated in every bundle's
``risk``):

- **Timing.** The decision made at the close of bar ``t`` is the position wanted during bar
  ``t+1``; its order fills at ``open[t+1]``. The account is marked to each bar's close.
- **Costs.** Every fill pays ``slippage_bps`` (a buy at an open of 100 with 5 bps fills at 100.05,
  a sell at 99.95) and ``fees_bps`` of the traded value, per side.
- **Size.** ``size`` = 1: an entry (or a long <-> short reversal, one order) uses all the cash,
  fees included: ``units = cash / (fill x (1 + fee))``. ``size`` < 1: that fraction of the cash
  (long) or of the short capacity (short); a reversal exits first, then enters.
- **Stops.** ``stop_loss``/``take_profit`` are fractions of the entry's fill price, checked against
  the low/high of every bar from the entry bar itself on, the stop-loss first; a bar that opens
  beyond a level exits at its open, else at the level; the exit pays slippage and fees. A stopped
  position is not re-entered until the signal changes.
- **Breaker.** Once the equity at a close lies more than ``breaker`` below its running peak (the
  peak starts at 1.0), the decision at that close and every later one is flat.

The account starts with 1.0 of cash (returns are fractions, so only the scale depends on it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from evo.errors import BundleError

__all__ = ["REL_TOL", "Fill", "PaperAccount", "RiskSpec"]

REL_TOL = 1e-9     # vectorbt's float comparisons (vectorbt.utils.math_): relative and absolute tolerance
ABS_TOL = 1e-12
MIN_UNITS = 1e-8   # vectorbt's default min_size: a smaller order is rejected
INIT_CASH = 1.0


def _close(a: float, b: float) -> bool:
    """``a`` equals ``b`` within the tolerances; never for NaN or an infinity (vectorbt's ``is_close_nb``)."""
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return False
    return a == b or abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), ABS_TOL)


def _add(a: float, b: float) -> float:
    """``a + b``, exactly 0.0 where the sum is zero within the tolerance (vectorbt's ``add_nb``)."""
    zero = _close(abs(a), abs(b)) if _sign(a) != _sign(b) else _close(a + b, 0.0)
    return 0.0 if zero else a + b


def _sign(x: float) -> int:
    return int(x > 0) - int(x < 0)


def _less(a: float, b: float) -> bool:
    return not _close(a, b) and a < b


@dataclass(frozen=True)
class RiskSpec:
    """A bundle's costs and risk rules (``manifest["risk"]``) as the paper account applies them.

    ``fees_bps``/``slippage_bps`` per side (5 = 0.05 %); ``size`` a fraction of equity in (0, 1];
    ``stop_loss``/``take_profit`` fractions of the fill price or None; ``breaker`` a drawdown
    fraction or None (off).
    """

    fees_bps: float = 5.0
    slippage_bps: float = 5.0
    size: float = 1.0
    stop_loss: float | None = None
    take_profit: float | None = None
    breaker: float | None = None

    @classmethod
    def from_manifest(cls, risk: dict[str, Any]) -> RiskSpec:
        """From a bundle manifest's ``risk`` block (a breaker of 0 is off)."""
        try:
            breaker = float(risk.get("breaker") or 0.0)
            return cls(fees_bps=float(risk["fees_bps"]), slippage_bps=float(risk["slippage_bps"]),
                       size=float(risk.get("size", 1.0)),
                       stop_loss=None if risk.get("stop_loss") is None else float(risk["stop_loss"]),
                       take_profit=None if risk.get("take_profit") is None else float(risk["take_profit"]),
                       breaker=breaker if breaker > 0 else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"the bundle's risk block cannot be applied ({exc!r})") from None

    @property
    def fees(self) -> float:
        return self.fees_bps * 1e-4

    @property
    def slippage(self) -> float:
        return self.slippage_bps * 1e-4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Fill:
    """One filled order: ``units`` signed (> 0 bought), ``price`` with slippage, ``fees`` paid,
    ``reason``: ``entry``, ``exit``, ``reverse``, ``stop_loss`` or ``take_profit``."""

    reason: str
    units: float
    price: float
    fees: float


@dataclass
class PaperAccount:
    """Cash, units and the stop levels of one simulated account (all floats; JSON round-trips it).

    ``cash``, ``units`` (negative = short), ``debt`` and ``free_cash`` follow vectorbt's simulator
    state; ``pos`` is the position the plan holds (-1, 0, 1), ``prev_want`` the position wanted
    during the previous bar, ``sl``/``tp`` the active levels (None = none), ``peak`` the highest
    equity at a close (>= 1.0), ``tripped`` whether the breaker has fired.
    """

    risk: RiskSpec = field(default_factory=RiskSpec)
    cash: float = INIT_CASH
    units: float = 0.0
    debt: float = 0.0
    free_cash: float = INIT_CASH
    pos: int = 0
    prev_want: int = 0
    sl: float | None = None
    tp: float | None = None
    peak: float = INIT_CASH
    tripped: bool = False
    equity: float = INIT_CASH

    # -- state ---------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The account as a JSON-able dict (without ``risk``): what the ledger stores per bar."""
        d = asdict(self)
        del d["risk"]
        return d

    @classmethod
    def from_state(cls, risk: RiskSpec, state: dict[str, Any]) -> PaperAccount:
        return cls(risk=risk, **state)

    @property
    def drawdown(self) -> float:
        """Fall of the equity below its peak at the last close, a fraction (0.1 = 10 %)."""
        return 1.0 - self.equity / self.peak if self.peak > 0 else 0.0

    # -- one bar -------------------------------------------------------------------------------

    def on_bar(self, open_: float, high: float, low: float, close: float, want: int) -> list[Fill]:
        """Trade one bar: ``want`` (-1, 0, 1) is the position wanted during it (the previous
        bar's decision, already flat once the breaker fired). Fills at the open, stops inside
        the bar, then marks ``equity`` to ``close`` and updates the peak and the breaker.
        Returns the fills in order."""
        r = self.risk
        fills: list[Fill] = []
        open_, high, low, close, want = float(open_), float(high), float(low), float(close), int(want)
        if want != self.prev_want and want != self.pos:
            if want == 0:
                fills += self._order_target_zero(open_, "exit")
            elif r.size >= 1.0:
                fills += self._order(want * math.inf, math.nan, open_, "reverse" if self.pos else "entry")
            else:
                if self.pos != 0:
                    fills += self._order_target_zero(open_, "exit")
                fills += self._order(want * math.inf, r.size, open_, "entry")
            self.pos = want
            if want != 0:
                fill = open_ * (1.0 + want * r.slippage)
                self.sl = None if r.stop_loss is None else fill * (1.0 - want * r.stop_loss)
                self.tp = None if r.take_profit is None else fill * (1.0 + want * r.take_profit)
        self.prev_want = want
        if self.pos != 0:
            price, reason = self._stop_exit(open_, high, low)
            if price is not None:
                fills += self._order_target_zero(price, reason)
                self.pos = 0
        value = self.cash + (self.units * close if self.units != 0 else 0.0)
        self.equity = value / INIT_CASH
        self.peak = max(self.peak, self.equity)
        if r.breaker is not None and not self.tripped and 1.0 - self.equity / self.peak > r.breaker:
            self.tripped = True
        return fills

    def target(self, signal: int) -> int:
        """The position wanted during the next bar for a decision ``signal``: flat once the breaker fired."""
        return 0 if self.tripped else int(signal)

    def _stop_exit(self, o: float, high: float, low: float) -> tuple[float | None, str]:
        """The stop exit's price in this bar (None if no level is touched) and its reason."""
        long = self.pos > 0
        if self.sl is not None:
            if (o <= self.sl) if long else (o >= self.sl):
                return o, "stop_loss"
            if (low <= self.sl) if long else (high >= self.sl):
                return self.sl, "stop_loss"
        if self.tp is not None:
            if (o >= self.tp) if long else (o <= self.tp):
                return o, "take_profit"
            if (high >= self.tp) if long else (low <= self.tp):
                return self.tp, "take_profit"
        return None, ""

    # -- vectorbt's order execution (portfolio.nb.execute_order_nb, buy_nb, sell_nb) -------------

    def _order_target_zero(self, price: float, reason: str) -> list[Fill]:
        units = 0.0 if _close(self.units, 0.0) else self.units
        if units == 0.0:
            return []
        return self._order(-units, math.nan, price, reason)

    def _order(self, size: float, percent: float, price: float, reason: str) -> list[Fill]:
        """Execute ``size`` units (``+-inf`` = all the cash; with ``percent`` a fraction of it)."""
        for name in ("cash", "units", "debt", "free_cash"):
            if _close(getattr(self, name), 0.0):
                setattr(self, name, 0.0)
        if size < 0 and math.isinf(size) and math.isnan(percent):
            percent = 1.0            # an infinite short means 100 % of the short capacity
        fill = self._buy(size, percent, price) if size > 0 else self._sell(-size, percent, price)
        return [] if fill is None else [Fill(reason, *fill)]

    def _buy(self, size: float, percent: float, price: float) -> tuple[float, float, float] | None:
        fees = self.risk.fees
        adj_price = price * (1.0 + self.risk.slippage)
        cash_limit = self.cash
        if not math.isnan(percent):
            cash_limit = min(cash_limit, percent * cash_limit)
        if cash_limit == 0:
            return None
        req_cash = size * adj_price
        req_fees = req_cash * fees
        total = req_cash + req_fees
        if _close(total, cash_limit) or total < cash_limit:
            final_size, fees_paid, final_req_cash = size, req_fees, total
        else:
            max_req_cash = cash_limit / (1.0 + fees)
            if max_req_cash <= 0:
                return None
            final_size, fees_paid, final_req_cash = max_req_cash / adj_price, cash_limit - max_req_cash, cash_limit
        if _close(size, 0.0) or _less(final_size, MIN_UNITS):
            return None
        new_cash = _add(self.cash, -final_req_cash)
        new_units = _add(self.units, final_size)
        if self.units < 0:
            short_size = final_size if new_units < 0 else abs(self.units)
            debt_diff = short_size * (self.debt / abs(self.units))
            self.debt = _add(self.debt, -debt_diff)
            self.free_cash = _add(self.free_cash + 2 * debt_diff, -final_req_cash)
        else:
            self.free_cash = _add(self.free_cash, -final_req_cash)
        self.cash, self.units = new_cash, new_units
        return final_size, adj_price, fees_paid

    def _sell(self, size: float, percent: float, price: float) -> tuple[float, float, float] | None:
        fees = self.risk.fees
        adj_price = price * (1.0 - self.risk.slippage)
        if math.isinf(size) and not math.isnan(percent):
            long_size = max(self.units, 0.0)
            total_free_cash = _add(self.free_cash, long_size * adj_price * (1.0 - fees))
            if total_free_cash <= 0:
                if self.units <= 0:
                    return None
                limit = long_size
            else:
                limit = _add(long_size, total_free_cash / (adj_price * (1.0 + fees)))
                if limit <= 0:
                    return None
            size_limit = limit
        else:
            size_limit = size
        if not math.isnan(percent):
            size_limit = percent * size_limit
        if _close(size_limit, 0.0) or _less(size_limit, MIN_UNITS):
            return None
        acq_cash = size_limit * adj_price
        fees_paid = acq_cash * fees
        final_acq_cash = _add(acq_cash, -fees_paid)
        if final_acq_cash < 0:
            return None
        new_units = _add(self.units, -size_limit)
        if new_units < 0:
            short_size = size_limit if self.units < 0 else abs(new_units)
            short_value = short_size * adj_price
            self.debt = self.debt + short_value
            self.free_cash = _add(self.free_cash, _add(final_acq_cash, -2 * short_value))
        else:
            self.free_cash = self.free_cash + final_acq_cash
        self.cash, self.units = self.cash + final_acq_cash, new_units
        return -size_limit, adj_price, fees_paid
