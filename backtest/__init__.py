"""Walk-forward scoring of consensus signals: folds, consensus rules, a vectorbt portfolio, metrics.

Importing ``backtest`` loads numpy only: vectorbt (and pandas) are imported inside the functions
that need them, so ``evo predict`` can use :func:`consensus_signal` on a light machine.

Look-ahead guarantees: a decision bar ``t`` uses bars ``<= t``; its signal trades at the open of
``t + 1`` (:func:`backtest_signals`); training and validation labels never reach into the next
segment (:func:`walk_forward_folds`).
"""

from .consensus import CONSENSUS_RULES, consensus_scores, consensus_signal, quantile_threshold
from .folds import Fold, bars_needed, walk_forward_folds
from .metrics import (
    calmar_ratio,
    max_drawdown,
    periods_per_year,
    profit_factor,
    sharpe_ratio,
    sortino_ratio,
    total_return,
    turnover,
    win_rate,
)
from .portfolio import STOP_RULE, BacktestResult, CostModel, RiskRules, backtest_signals

__all__ = [
    "CONSENSUS_RULES",
    "STOP_RULE",
    "BacktestResult",
    "CostModel",
    "RiskRules",
    "Fold",
    "backtest_signals",
    "bars_needed",
    "calmar_ratio",
    "consensus_scores",
    "consensus_signal",
    "max_drawdown",
    "periods_per_year",
    "profit_factor",
    "quantile_threshold",
    "sharpe_ratio",
    "sortino_ratio",
    "total_return",
    "turnover",
    "walk_forward_folds",
    "win_rate",
]
