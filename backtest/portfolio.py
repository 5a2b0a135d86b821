"""Score a signal with a vectorbt portfolio: next-bar-open execution, fees and slippage per side.

vectorbt is imported inside :func:`backtest_signals` (about 2 s to import, plus numba compilation
the first time it runs on a machine), so ``import backtest`` stays light for ``evo predict``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from evo.errors import ConfigError, DataError

from .metrics import (
    calmar_ratio,
    check_periods_per_year,
    max_drawdown,
    profit_factor,
    sharpe_ratio,
    sortino_ratio,
    total_return,
    turnover,
    win_rate,
)

if TYPE_CHECKING:
    import pandas as pd
    import vectorbt as vbt

__all__ = ["STOP_RULE", "BacktestResult", "CostModel", "RiskRules", "backtest_signals"]

# The stop rule of the backtest in one line, written into every bundle for the live bot to apply.
STOP_RULE = ("stop_loss/take_profit are fractions of the fill price (the entry bar's open plus slippage); "
             "checked against every bar's low/high from the entry bar itself on, stop-loss first; a bar "
             "opening beyond a level exits at its open, else at the level; exits pay slippage and fees; "
             "no re-entry until the signal changes")

log = logging.getLogger(__name__)

# Starting capital of the simulated account. Returns are fractions, so its value only sets the
# scale of vectorbt's cash and value series.
_INIT_CASH = 1.0


@dataclass(frozen=True)
class CostModel:
    """Trading costs, each charged **per side** (once on entry, once on exit) in basis points.

    1 bp = 0.01 % = 0.0001, so the default 5 bps = 0.05 % of the traded value: buying 10 000 of
    stock pays a fee of 5, and a round trip costs about ``2 * (5 + 5) = 20`` bps = 0.2 %.

    Attributes:
        fees_bps: commission as a fraction of the traded value, in bps (>= 0).
        slippage_bps: adverse price move on every fill, in bps (>= 0): a buy at an open of 100 fills
            at ``100 * (1 + 5e-4) = 100.05``, a sell at ``99.95``.
    """

    fees_bps: float = 5.0
    slippage_bps: float = 5.0

    def __post_init__(self) -> None:
        for name in ("fees_bps", "slippage_bps"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigError(
                    f"CostModel.{name} must be a finite number >= 0 in basis points (5 = 0.05 %), "
                    f"got {value!r}"
                )
            if value >= 10_000:
                raise ConfigError(f"CostModel.{name} must be below 10000 bps (100 %), got {value!r}")

    @property
    def fees(self) -> float:
        """Fee per side as a fraction (5 bps -> 0.0005)."""
        return self.fees_bps * 1e-4

    @property
    def slippage(self) -> float:
        """Slippage per side as a fraction (5 bps -> 0.0005)."""
        return self.slippage_bps * 1e-4


@dataclass(frozen=True)
class RiskRules:
    """The trader's risk rules, applied on top of the consensus signal.

    Attributes:
        size: fraction of equity committed per position, in (0, 1]; 1.0 = all-in (the default),
            0.25 = a quarter of equity (fixed-fraction or a capped Kelly fraction computed by the
            caller from training data).
        stop_loss: exit when the price moves this fraction against the **fill price** (the entry
            bar's open plus slippage; 0.02 = 2 %: a long filled at 100 stops at 98), checked against
            each bar's low/high from the entry bar itself on; ``None`` = no stop. A bar that opens
            beyond the level exits at its open; the exit pays slippage and fees. A stopped position
            is not re-entered until the signal changes. The full rule: :mod:`backtest._stops`.
        take_profit: exit when the price moves this fraction in favour of the fill (0.05 = 5 %),
            checked the same way after the stop-loss (a bar touching both is a loss); ``None`` = none.
        breaker: drawdown circuit breaker: once the equity curve falls this fraction below its
            peak (0.2 = 20 %), trade nothing more (flat from the next bar on); ``None`` = off.
    """

    size: float = 1.0
    stop_loss: float | None = None
    take_profit: float | None = None
    breaker: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.size, (int, float)) and 0.0 < self.size <= 1.0):
            raise ConfigError(f"RiskRules.size must lie in (0, 1] (a fraction of equity), got {self.size!r}")
        for name in ("stop_loss", "take_profit", "breaker"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
                raise ConfigError(f"RiskRules.{name} must be None or a fraction in (0, 1), got {value!r}")


@dataclass(frozen=True)
class BacktestResult:
    """What one backtest over ``N`` bars produced. Every number is finite.

    Attributes:
        returns: float64 ``(N,)`` per-bar simple returns of the account (fractions), marked to the
            close of each bar; ``returns[0] == 0`` because nothing can be held on the first bar.
        sharpe: annualised Sharpe ratio of ``returns`` (:func:`backtest.sharpe_ratio`); 0.0 when
            the strategy never trades.
        max_drawdown: largest fall of the equity curve, positive fraction (0.23 = 23 %).
        total_return: compounded return over the ``N`` bars, fraction (0.5 = +50 %).
        trades: number of positions opened (vectorbt exit-trade records: each closed position,
            plus one still open at the last bar). A long -> short reversal counts two.
        exposure: fraction of the ``N`` bars ending with an open position (0.0 .. 1.0).
        traded: ``trades > 0``. A result with ``traded == False`` has sharpe 0 and drawdown 0.
        sortino, calmar, win_rate, profit_factor, turnover: see :mod:`backtest.metrics`; win rate
            and profit factor are over the trades' returns after costs.
        trade_returns: float64 per-trade returns after costs (fractions of the position).
        fills: float64 ``(K, 4)``, one row per filled order in time order: bar index, units (signed:
            > 0 bought, < 0 sold), fill price (slippage included), fees paid (account currency; the
            account starts with 1.0). Empty when nothing traded. What ``evo live --reconcile``
            compares a paper ledger's fills with.
        equity: float64 ``(N,)`` account value at each bar's close (cash + units x close), starting
            from 1.0 of cash; empty when nothing traded (the equity is then 1.0 throughout).
    """

    returns: np.ndarray = field(repr=False)
    sharpe: float
    max_drawdown: float
    total_return: float
    trades: int
    exposure: float
    traded: bool
    sortino: float = 0.0
    calmar: float = 0.0
    win_rate: float = 0.0
    profit_factor: float = 0.0
    turnover: float = 0.0
    trade_returns: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    fills: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)), repr=False)
    equity: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def n_bars(self) -> int:
        """Number of bars scored (``len(returns)``)."""
        return int(self.returns.shape[0])


def _check_ohlcv(ohlcv: object) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    if not isinstance(ohlcv, pd.DataFrame):
        raise DataError(
            f"ohlcv must be a pandas DataFrame with open/close columns, got {type(ohlcv).__name__}"
        )
    missing = [c for c in ("open", "close") if c not in ohlcv.columns]
    if missing:
        raise DataError(
            f"ohlcv lacks column(s) {missing}; expected lower-case open, high, low, close, volume"
        )
    if len(ohlcv) < 2:
        raise DataError(f"a backtest needs at least 2 bars (one to decide, one to trade), got {len(ohlcv)}")
    if not isinstance(ohlcv.index, pd.DatetimeIndex):
        raise DataError(f"ohlcv must have a DatetimeIndex, got {type(ohlcv.index).__name__}")
    if not (ohlcv.index.is_monotonic_increasing and ohlcv.index.is_unique):
        raise DataError("ohlcv index must be strictly increasing; sort it and drop duplicate timestamps")
    prices = []
    for col in ("open", "close"):
        values = ohlcv[col].to_numpy(dtype=np.float64)
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"ohlcv[{col!r}] must be finite and > 0; row {i} ({ohlcv.index[i]}) is {float(values[i])!r}. "
                "Drop or fill such bars before backtesting."
            )
        prices.append(values)
    return prices[0], prices[1]


def _check_signal(signal: object, ohlcv: pd.DataFrame) -> np.ndarray:
    import pandas as pd

    if isinstance(signal, pd.Series):
        if not signal.index.equals(ohlcv.index):
            raise DataError(
                "signal is a Series whose index differs from ohlcv.index; align it or pass an array"
            )
        signal = signal.to_numpy()
    arr = np.asarray(signal)
    if arr.ndim != 1 or arr.shape[0] != len(ohlcv):
        raise DataError(f"signal must be 1-D with one value per bar ({len(ohlcv)}), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DataError(f"signal must be numeric with values in {{-1, 0, 1}}, got dtype {arr.dtype}")
    values = arr.astype(np.float64)
    ok = (values == -1) | (values == 0) | (values == 1)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(
            f"signal values must be -1 (short), 0 (flat) or 1 (long); element {i} is {arr[i].item()!r}"
        )
    return values.astype(np.int8)


def _held(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position wanted during each bar (the decision made at the previous bar's close) and the one
    wanted during the bar before: ``held[i] = target[i - 1]``, ``held[0] = 0``, ``before[i] = held[i - 1]``."""
    held = np.zeros_like(target)
    held[1:] = target[:-1]
    before = np.zeros_like(held)
    before[1:] = held[:-1]
    return held, before


def _uses_signals_engine(target: np.ndarray, risk: RiskRules) -> bool:
    """True where only ``Portfolio.from_signals`` can run the rules: stop-loss / take-profit (checked
    inside the bar), or a fraction-of-equity size with a long <-> short reversal (which
    ``from_signals`` rejects with a ValueError, as before; ``from_orders`` has one order per bar)."""
    if risk.stop_loss is not None or risk.take_profit is not None:
        return True
    if risk.size < 1.0:
        held, before = _held(target)
        return bool(np.any(held * before == -1))
    return False


def _order_arrays(target: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orders equal to those ``Portfolio.from_signals`` places for ``target`` (no stops), one per bar
    where the held position changes, as ``(size, size_type, direction)`` arrays for the from-orders
    simulator (NaN size = no order):

    - entry from flat or a reversal: ``+-inf`` units (all cash, fees included) in direction Both, or
      ``+-size`` of the resources as SizeType.Percent (entries from flat only);
    - exit to flat: target amount 0, i.e. ``-position`` units, the order from_signals' exit places
      (in direction Both: for an order that closes the position exactly, vectorbt's ``buy_nb`` /
      ``sell_nb`` fill it as they do from_signals' LongOnly / ShortOnly one).

    Equal while the account's position follows ``held``; where it does not (an order that could not
    fill: a short blown through, its cover unaffordable), :func:`_simulate_orders` notices.
    """
    from vectorbt.portfolio.enums import Direction, SizeType

    held, before = _held(target)
    n = target.shape[0]
    order_size = np.full(n, np.nan)
    size_type = np.full(n, SizeType.Amount, dtype=np.int64)
    direction = np.full(n, Direction.Both, dtype=np.int64)
    enter = (held != 0) & (held != before)
    if size >= 1.0:
        order_size[enter] = held[enter] * np.inf
    else:
        order_size[enter] = held[enter] * size
        size_type[enter] = SizeType.Percent
    leave = (held == 0) & (before != 0)
    order_size[leave] = 0.0
    size_type[leave] = SizeType.TargetAmount
    return order_size, size_type, direction


def _simulate(
    index: pd.DatetimeIndex, open_: np.ndarray, close: np.ndarray, target: np.ndarray, costs: CostModel,
    risk: RiskRules = RiskRules(), high: np.ndarray | None = None, low: np.ndarray | None = None,
    *, engine: str = "signals",
) -> vbt.Portfolio:
    """A vectorbt ``Portfolio`` for the rules of :func:`backtest_signals` (inputs already validated).

    ``target`` is the int8 signal; it is shifted by one bar here. ``engine="signals"`` builds it with
    ``Portfolio.from_signals`` (every rule; stops from the fill price, but checked from the bar after
    the entry bar only), ``"orders"`` with ``Portfolio.from_orders`` from :func:`_order_arrays` (no
    stops). :func:`backtest_signals` itself calls the from-orders simulator directly
    (:func:`_simulate_orders`, and :func:`_simulate_stops` with stops, which also checks the entry
    bar); these are the references the tests check it against, and they cross-check vectorbt's own
    statistics against :mod:`backtest.metrics`.
    """
    import pandas as pd
    import vectorbt as vbt  # the module-level import is for type checking only

    if engine == "orders":
        if _uses_signals_engine(target, risk):
            raise ValueError("engine='orders' runs neither stops nor fractional sizes with reversals")
        order_size, size_type, direction = _order_arrays(target, risk.size)
        return vbt.Portfolio.from_orders(
            pd.Series(close, index=index), size=order_size, size_type=size_type, direction=direction,
            price=pd.Series(open_, index=index), fees=costs.fees, fixed_fees=0.0, slippage=costs.slippage,
            init_cash=_INIT_CASH, log=False,
        )
    if engine != "signals":
        raise ValueError(f"engine must be 'signals' or 'orders', got {engine!r}")
    # Position wanted during bar i = decision made at the close of bar i - 1.
    held, before = _held(target)
    flat = held == 0
    stops = risk.stop_loss is not None or risk.take_profit is not None
    sizing = dict(size=np.inf, size_type="amount") if risk.size >= 1.0 else dict(size=risk.size, size_type="percent")
    extra = {}
    if stops:
        from vectorbt.portfolio.enums import StopEntryPrice, StopExitPrice

        # Levels from the fill price (open plus slippage) and exits paying slippage, as the live rule
        # (backtest._stops); from_signals checks stops from the bar after the entry bar only.
        extra = dict(stop_entry_price=StopEntryPrice.FillPrice, stop_exit_price=StopExitPrice.StopMarket,
                     sl_stop=risk.stop_loss if risk.stop_loss is not None else np.nan,
                     tp_stop=risk.take_profit if risk.take_profit is not None else np.nan,
                     open=pd.Series(open_, index=index),
                     high=pd.Series(high if high is not None else np.maximum(open_, close), index=index),
                     low=pd.Series(low if low is not None else np.minimum(open_, close), index=index))
    pf = vbt.Portfolio.from_signals(
        pd.Series(close, index=index),
        # Entries on the bar a position is first wanted only: after a stop exit the position is
        # not re-opened until the signal goes flat and back (without stops this is the same).
        entries=(held == 1) & (before != 1),
        exits=flat,
        short_entries=(held == -1) & (before != -1),
        short_exits=flat,
        price=pd.Series(open_, index=index),  # fill at this bar's open = the bar after the decision
        **sizing,  # all available cash (fees included), or a fraction of equity
        fees=costs.fees,
        fixed_fees=0.0,
        slippage=costs.slippage,
        init_cash=_INIT_CASH,
        accumulate=False,
        upon_opposite_entry="reverse",  # 1 -> -1: close the long and open the short in one order
        use_stops=stops,
        log=False,
        **extra,
    )
    return pf


@dataclass(frozen=True)
class _Account:
    """Per-bar account series of one simulation, float64 ``(N,)`` each, marked to the close.

    returns: simple returns of ``value`` (bar 0 against the starting cash), non-finite ones set to 0.
    assets: units held (negative = short). asset_value: ``assets * close``. value: cash + asset value.
    trade_returns: per exit-trade return after costs (vectorbt's exit trades; NaN kept).
    fills: ``(K, 4)`` filled orders: bar, signed units, price, fees (:class:`BacktestResult`).
    """

    returns: np.ndarray
    assets: np.ndarray
    asset_value: np.ndarray
    value: np.ndarray
    trade_returns: np.ndarray
    fills: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))

    @property
    def trades(self) -> int:
        return int(self.trade_returns.shape[0])


def _account_of(pf: vbt.Portfolio) -> _Account:
    """The :class:`_Account` of a vectorbt ``Portfolio`` (the from_signals fallback)."""
    def flat(x) -> np.ndarray:
        return np.asarray(x, dtype=np.float64).reshape(-1)

    return _Account(returns=_finite_returns(flat(pf.returns())), assets=flat(pf.assets()),
                    asset_value=flat(pf.asset_value()), value=flat(pf.value()),
                    trade_returns=flat(pf.trades.returns.values), fills=_fills(pf.orders.values, 1))


def _fills(orders: np.ndarray, rows_per_bar: int) -> np.ndarray:
    """vectorbt's order records as ``(K, 4)`` float64 rows: bar, signed units, price, fees."""
    sign = np.where(orders["side"] == 1, -1.0, 1.0)   # OrderSide.Sell == 1
    return np.column_stack([orders["idx"] // rows_per_bar, sign * orders["size"], orders["price"],
                            orders["fees"]]).astype(np.float64).reshape(-1, 4)


def _simulate_orders(open_: np.ndarray, close: np.ndarray, target: np.ndarray, costs: CostModel,
                     size: float) -> _Account | None:
    """What ``_simulate(..., engine="orders")`` computes, without the ``Portfolio`` object; None where
    the position did not follow the signal (see :func:`_order_arrays`: from_signals' orders may differ
    there, so the caller runs that engine instead).

    Calls vectorbt's numba kernels directly with the arguments ``Portfolio.from_orders`` passes them
    (one column, no grouping, vectorbt's default ``min_size``), then the same kernels its ``assets``,
    ``cash``, ``value``, ``returns`` and ``trades`` use. All are compiled with ``cache=True``, so a
    process with a warm ``NUMBA_CACHE_DIR`` loads them instead of compiling (``from_signals``' simulator
    is not cached), and a call costs well under a millisecond instead of vectorbt's ~5 ms of pandas
    and config copying around the same kernels. The tests pin it to both ``Portfolio`` engines.
    """
    # Writable C arrays always: numba compiles (and caches) one version per argument type, and
    # pandas hands out read-only views or writable copies depending on the frame.
    open_, close = (np.require(a, np.float64, ("C", "W")) for a in (open_, close))
    order_size, size_type, direction = _order_arrays(target, size)
    return _run_orders(order_size, size_type, direction, open_, close, costs, _held(target)[0], rows_per_bar=1)


def _run_orders(order_size: np.ndarray, size_type: np.ndarray, direction: np.ndarray, price: np.ndarray,
                close: np.ndarray, costs: CostModel, planned: np.ndarray, *, rows_per_bar: int) -> _Account | None:
    """Run vectorbt's from-orders kernels on order rows (``rows_per_bar`` rows per bar, the last row
    of each bar marked to the bar's close: ``close`` holds one value per row) and read the account at
    the end of each bar; None where the position's sign differs from ``planned`` (int8 ``(N,)``)."""
    import vectorbt as vbt
    from vectorbt.portfolio import nb
    from vectorbt.portfolio.enums import Direction
    from vectorbt.records.nb import col_map_nb
    from vectorbt.returns.nb import returns_nb

    rows = close.shape[0]
    shape = (rows, 1)
    cfg = vbt.settings.portfolio
    init_cash = np.full(1, _INIT_CASH)
    close_2d = close.reshape(shape)
    # Positional (numba dispatches keyword calls ~40 us slower), in the simulator's order:
    orders, _ = nb.simulate_from_orders_nb(
        shape, np.ones(1, dtype=np.int64), init_cash, np.zeros(shape, dtype=np.int64),  # shape .. call_seq
        order_size, price, size_type, direction,  # size, price, size_type, direction
        np.asarray(costs.fees), np.asarray(0.0), np.asarray(costs.slippage),  # fees, fixed_fees, slippage
        np.asarray(float(cfg["min_size"])), np.asarray(float(cfg["max_size"])),  # min_size, max_size
        np.asarray(float(cfg["size_granularity"])), np.asarray(0.0),  # size_granularity, reject_prob
        np.asarray(bool(cfg["lock_cash"])), np.asarray(bool(cfg["allow_partial"])),  # lock_cash, allow_partial
        np.asarray(False), np.asarray(False), np.asarray(np.inf), close,  # raise_reject, log, val_price, close
        False, bool(cfg["ffill_val_price"]), bool(cfg["update_value"]),  # auto_call_seq, ffill_val_price, update_value
        rows, 1, bool(cfg["init_temp_records"]), False,  # max_orders, max_logs, init_temp_records, flex_2d
    )
    col_map = col_map_nb(orders["col"], 1)
    assets = nb.assets_nb(nb.asset_flow_nb(shape, orders, col_map, Direction.Both))
    end = slice(rows_per_bar - 1, None, rows_per_bar)  # each bar's last row, marked to its close
    assets = assets[end]
    if not np.array_equal(np.sign(assets.reshape(-1)), planned):
        return None
    cash = nb.cash_nb(nb.cash_flow_nb(shape, orders, col_map, False), init_cash)[end]
    bar_close = close_2d[end]
    asset_value = np.where(assets == 0, 0.0, bar_close) * assets  # (Portfolio.asset_value zeroes close there)
    value = cash + asset_value
    returns = returns_nb(value, init_cash)
    trades = nb.get_exit_trades_nb(orders, close_2d, col_map)
    return _Account(returns=_finite_returns(returns.reshape(-1)), assets=assets.reshape(-1),
                    asset_value=asset_value.reshape(-1), value=value.reshape(-1),
                    trade_returns=np.asarray(trades["return"], dtype=np.float64),
                    fills=_fills(orders, rows_per_bar))


def _simulate_stops(open_: np.ndarray, high: np.ndarray | None, low: np.ndarray | None, close: np.ndarray,
                    target: np.ndarray, costs: CostModel, risk: RiskRules) -> _Account | None:
    """The account under ``risk``'s stop-loss / take-profit, stops measured from the fill price and
    checked from the entry bar on (the rule is stated in :mod:`backtest._stops`); None where an order
    could not fill as planned (a short blown through), as :func:`_simulate_orders`."""
    from vectorbt.portfolio.enums import Direction, SizeType

    from ._stops import stop_plan

    open_, close = (np.require(a, np.float64, ("C", "W")) for a in (open_, close))
    # Missing or NaN high/low: the bar's range is its open-close range (vectorbt's rule too).
    high = np.maximum(open_, close) if high is None else np.where(np.isnan(high), np.maximum(open_, close), high)
    low = np.minimum(open_, close) if low is None else np.where(np.isnan(low), np.minimum(open_, close), low)
    nan = float("nan")
    order_size, size_type, price, planned = stop_plan(
        open_, np.require(high, np.float64, "C"), np.require(low, np.float64, "C"), _held(target)[0],
        float(risk.size), nan if risk.stop_loss is None else float(risk.stop_loss),
        nan if risk.take_profit is None else float(risk.take_profit), float(costs.slippage),
        SizeType.Amount, SizeType.TargetAmount, SizeType.Percent,
    )
    close_rows = np.repeat(open_, 3)
    close_rows[2::3] = close  # rows 3i, 3i+1 trade at the open; row 3i+2 ends the bar at its close
    direction = np.full(order_size.shape[0], Direction.Both, dtype=np.int64)
    return _run_orders(order_size, size_type, direction, price, close_rows, costs, planned, rows_per_bar=3)


def backtest_signals(
    ohlcv: pd.DataFrame,
    signal: np.ndarray,
    *,
    costs: CostModel = CostModel(),
    periods_per_year: float,
    risk: RiskRules = RiskRules(),
) -> BacktestResult:
    """Simulate an all-in long/flat(/short) account that follows ``signal`` on ``ohlcv``.

    Execution rule (no look-ahead): ``signal[t]`` is decided at the close of bar ``t`` and
    executed at the **open of bar t + 1**; the position is then marked to each bar's close.
    So the position held during bar ``i`` is ``signal[i - 1]``; nothing is held on bar 0 and the
    last element ``signal[N - 1]`` is never executed. ``returns[:k+1]`` depends only on
    ``signal[:k]`` and bars ``<= k``.

    Sizing is all-in: an entry buys (or sells short) as much as the account's cash allows after
    fees, i.e. a position of about 1x equity; ``1`` = long, ``0`` = flat, ``-1`` = short. A change
    from 1 to -1 reverses in one order at the open. A position still open at the last bar is
    marked to its close, with no exit cost charged.

    Worked value: long on every bar with zero costs returns ``close[N-1] / open[1] - 1``; with
    ``CostModel(5, 5)`` the single entry fills at ``open[1] * 1.0005`` and pays 0.05 % in fees.

    To score decision bars ``[a, b)`` (e.g. a :class:`backtest.Fold`'s test range), pass
    ``ohlcv.iloc[a:b + 1]`` and their signals plus one trailing value (ignored), so the last
    decision's trade is filled at ``open[b]``. Contiguous test folds can be scored in one call.

    Args:
        ohlcv: bars with a strictly increasing ``DatetimeIndex`` and float columns ``open`` and
            ``close`` (finite, > 0); other columns are ignored.
        signal: ``(N,)`` target positions in ``{-1, 0, 1}`` (int8 from
            :func:`backtest.consensus_signal`, or bool/float), one per bar of ``ohlcv``.
        costs: fees and slippage per side, in bps.
        risk: position size, stop-loss, take-profit and drawdown circuit breaker
            (:class:`RiskRules`; the default is all-in with no stops). The breaker is applied in
            a second pass: the first bar whose drawdown exceeds it decides "flat" at its close,
            so trading stops from the next bar's open (no look-ahead).
        periods_per_year: bars per year for the Sharpe ratio (> 0); compute it once on the whole
            bar frame with :func:`backtest.periods_per_year` (NVDA daily ~= 252).

    Returns:
        :class:`BacktestResult` with finite numbers; a strategy that never trades has
        ``sharpe == 0.0``, ``max_drawdown == 0.0`` and ``traded is False``.

    Raises:
        DataError: malformed bars or signal (the message says which row or value).
        ConfigError: ``periods_per_year`` not a finite positive number, or bad ``costs``.
    """
    if not isinstance(costs, CostModel):
        raise ConfigError(
            f"costs must be a CostModel (e.g. CostModel(fees_bps=5, slippage_bps=5)), got {costs!r}"
        )
    check_periods_per_year(periods_per_year)
    open_, close = _check_ohlcv(ohlcv)
    target = _check_signal(signal, ohlcv)

    return _backtest(ohlcv, open_, close, target, costs, periods_per_year, risk)


def _backtest(ohlcv: pd.DataFrame, open_: np.ndarray, close: np.ndarray, target: np.ndarray, costs: CostModel,
              periods_per_year: float, risk: RiskRules, *, engine: str = "auto") -> BacktestResult:
    """:func:`backtest_signals` on checked inputs. ``engine``: ``"auto"`` (the from-orders kernels
    unless :func:`_uses_signals_engine`), or ``"signals"`` / ``"orders"`` to force a ``Portfolio``
    engine of :func:`_simulate` (the tests compare them)."""
    if engine not in ("auto", "signals", "orders"):
        raise ValueError(f"engine must be 'auto', 'signals' or 'orders', got {engine!r}")

    high = ohlcv["high"].to_numpy(dtype=np.float64) if "high" in ohlcv.columns else None
    low = ohlcv["low"].to_numpy(dtype=np.float64) if "low" in ohlcv.columns else None

    def simulate(t: np.ndarray) -> _Account:
        if engine == "auto" and not _uses_signals_engine(t, risk):
            account = _simulate_orders(open_, close, t, costs, risk.size)
            if account is not None:
                return account
        if engine == "auto" and (risk.stop_loss is not None or risk.take_profit is not None):
            account = _simulate_stops(open_, high, low, close, t, costs, risk)
            if account is not None:
                return account
            log.warning("an order under stops could not fill as planned (a short blown through?); "
                        "scoring with vectorbt's from_signals, which checks stops from the bar after the entry")
        kind = "signals" if engine == "auto" else engine
        return _account_of(_simulate(ohlcv.index, open_, close, t, costs, risk, high, low, engine=kind))

    account = simulate(target)
    if risk.breaker is not None:
        first = _first_breach(account.returns, risk.breaker)
        if first is not None:
            target = target.copy()
            target[first:] = 0
            account = simulate(target)
    returns = account.returns
    trades = account.trades
    if trades == 0:
        # Flat equity: vectorbt would report an infinite Sharpe ratio for it. Score it 0.
        return BacktestResult(
            returns=returns,
            sharpe=0.0,
            max_drawdown=0.0,
            total_return=0.0,
            trades=0,
            exposure=0.0,
            traded=False,
        )
    exposure = float(np.count_nonzero(account.assets) / account.assets.shape[0])
    trade_returns = account.trade_returns[np.isfinite(account.trade_returns)]
    value = account.value
    fraction = np.divide(account.asset_value, value, out=np.zeros_like(value), where=value > 0)
    return BacktestResult(
        returns=returns,
        sharpe=sharpe_ratio(returns, periods_per_year),
        max_drawdown=max_drawdown(returns),
        total_return=total_return(returns),
        trades=trades,
        exposure=exposure,
        traded=True,
        sortino=sortino_ratio(returns, periods_per_year),
        calmar=calmar_ratio(returns, periods_per_year),
        win_rate=win_rate(trade_returns),
        profit_factor=profit_factor(trade_returns),
        turnover=turnover(fraction, periods_per_year),
        trade_returns=trade_returns,
        fills=account.fills,
        equity=np.asarray(value, dtype=np.float64) / _INIT_CASH,
    )


def _finite_returns(returns: np.ndarray) -> np.ndarray:
    returns = np.array(returns, dtype=np.float64)
    # Only an account whose value reached exactly 0 (a short blown through) yields 0/0 here;
    # from then on it holds nothing, so its return is 0.
    returns[~np.isfinite(returns)] = 0.0
    return returns


def _first_breach(returns: np.ndarray, breaker: float) -> int | None:
    """First bar whose drawdown from the running peak exceeds ``breaker`` (None if none)."""
    equity = np.cumprod(1.0 + returns)
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    breach = np.flatnonzero(1.0 - equity / peak > breaker)
    return int(breach[0]) if breach.size else None
