"""What a genome scored (:class:`EvalResult`) and the one rule that averages results over training
seeds and instruments. Pure: results in, result out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from evo.config import Budget


@dataclass(frozen=True)
class EvalResult:
    """What one genome scored. Sharpe and drawdown are walk-forward out-of-sample figures."""

    sharpe: float                 # annualised, over the concatenated test folds, after costs
    max_drawdown: float           # positive fraction: 0.23 is a 23 % drawdown
    total_return: float           # fraction over the test span
    trades: int
    exposure: float               # fraction of test bars in the market
    traded: bool
    enough_trades: bool           # trades >= the budget's min_trades; False cannot enter the front
    accuracy_a: float             # direction accuracy (3 classes) of model A on the test folds
    accuracy_b: float
    lr_a: float
    lr_b: float
    test_start: str               # ISO time of the first / last out-of-sample bar
    test_end: str
    test_bars: int
    seconds: float
    returns: list[float] = field(repr=False)   # per-bar out-of-sample strategy returns
    f1_a: float = 0.0             # macro F1 over down/flat/up of model A on the test folds
    f1_b: float = 0.0
    sortino: float = 0.0
    calmar: float = 0.0
    win_rate: float = 0.0
    profit_factor: float = 0.0
    turnover: float = 0.0
    risk: dict[str, Any] = field(default_factory=dict)    # RiskParams tuned on every validation segment (holdout, bundle)
    val_sharpe: float = 0.0       # ``risk``'s Sharpe on the validation segments it was tuned on
    holdout: dict[str, Any] | None = None   # filled once the search ends (see evaluate_holdout)
    sharpe_sd: float = 0.0        # spread of the Sharpe over the training seeds (0 with one seed)
    seeds: int = 1                # training seeds averaged
    instruments: list[dict[str, Any]] | None = None   # per-instrument figures when several are searched
    seed_sharpes: list[float] = field(default_factory=list)   # each training seed's Sharpe (empty: unknown)
    # The parameters each test fold was traded with (FoldRisk.to_dict: "test", "tuned_on" spans, RiskParams
    # fields), tuned only on validation segments ending a purge gap before that fold; None: an older record.
    risk_folds: list[dict[str, Any]] | None = None

    def objectives(self) -> tuple[float, float]:
        """(Sharpe ↑, max drawdown ↓) for NSGA-II. A genome with too few trades keeps its own
        non-positive Sharpe and gets the worst drawdown, so it cannot dominate a trading one."""
        if not self.enough_trades:
            return (min(self.sharpe, 0.0), 1.0)
        return (self.sharpe, self.max_drawdown)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# Figures that combine as plain means, over seeds and over instruments alike.
AVERAGED = ("total_return", "exposure", "accuracy_a", "accuracy_b", "f1_a", "f1_b", "sortino", "calmar",
             "win_rate", "profit_factor", "turnover", "val_sharpe")


# Figures a seed average takes as (seed-weighted) means: the same list for evaluate's seeds and for
# a survivor's extra seeds merged later (evo.search.records.merge_genome).
SEED_AVERAGED = ("max_drawdown",) + AVERAGED


def _mean_fields(results: list[EvalResult], names: tuple[str, ...]) -> dict[str, float]:
    return {name: float(np.mean([getattr(r, name) for r in results])) for name in names}


def combine_instruments(parts: list[EvalResult], labels: list[str], budget: Budget) -> EvalResult:
    """One result from several instruments: a genome that only works on one of them should not
    look as good as one that works on all. With ``lam = evaluate.dispersion_penalty``::

        sharpe       = mean(sharpe_i) - lam * sd(sharpe_i)
        max_drawdown = min(1, mean(dd_i) + lam * sd(dd_i))

    (population sd over instruments). Trades add up; the genome has enough trades only if every
    instrument has. ``returns`` are the instruments' returns one after the other (for DSR and
    PBO). Learning rates and risk parameters are the first instrument's (each instrument tunes its
    own: see ``instruments``), so exporting for the first instrument reproduces its figures.
    """
    lam = budget.evaluate.dispersion_penalty
    sh = np.array([p.sharpe for p in parts])
    dd = np.array([p.max_drawdown for p in parts])
    mean = _mean_fields(parts, AVERAGED)
    instruments = [{"label": label, "sharpe": p.sharpe, "max_drawdown": p.max_drawdown,
                    "total_return": p.total_return, "trades": p.trades, "test_start": p.test_start,
                    "test_end": p.test_end, "lr_a": p.lr_a, "lr_b": p.lr_b, "risk": p.risk, "sharpe_sd": p.sharpe_sd,
                    "risk_folds": p.risk_folds}
                   for p, label in zip(parts, labels)]
    return replace(
        parts[0], **mean,
        sharpe=float(sh.mean() - lam * sh.std()), max_drawdown=float(min(1.0, dd.mean() + lam * dd.std())),
        trades=int(sum(p.trades for p in parts)), traded=any(p.traded for p in parts),
        enough_trades=all(p.enough_trades for p in parts),
        returns=[x for p in parts for x in p.returns], test_bars=int(sum(p.test_bars for p in parts)),
        seconds=round(sum(p.seconds for p in parts), 3), instruments=instruments,
        seed_sharpes=[float(sh.mean() - lam * sh.std())] if all(p.seeds == 1 for p in parts) else [],
    )


def _mean_of_seeds(runs: list[EvalResult], budget: Budget, *, seconds: float) -> EvalResult:
    """One result from several seeds: means of the figures, per-bar mean of the returns (the
    equal-weight blend of the seeds' strategies, used for DSR and PBO), the Sharpe's spread."""
    sharpes = np.array([r.sharpe for r in runs])
    mean = _mean_fields(runs, ("sharpe",) + SEED_AVERAGED)
    trades = int(round(np.mean([r.trades for r in runs])))
    return replace(
        runs[0], **mean, trades=trades, traded=any(r.traded for r in runs),
        enough_trades=trades >= budget.evaluate.min_trades,
        returns=[float(x) for x in np.mean([r.returns for r in runs], axis=0)],
        sharpe_sd=float(sharpes.std(ddof=1)), seeds=len(runs), seconds=seconds,
        seed_sharpes=[float(x) for x in sharpes],
    )
