"""What a genome scored (:class:`EvalResult`), and the rules that fold training seeds and
instruments into one result. Pure: results in, result out.

**The figures shown are those of the strategy that is exported.** With several training seeds
every figure of a result — Sharpe, drawdown, return, trades, the per-bar ``returns`` that DSR and
PBO read, learning rates, risk parameters — is the evaluation of training seed index 0: the seed
with which the holdout is traded (``evaluate_holdout``) and the bundle is trained (``evo export``,
the run's seed). The seeds' mean Sharpe and mean max drawdown are kept apart as the *selection
score* (``sharpe_mean``, ``max_drawdown_mean``, with ``sharpe_sd`` over ``seeds``): what
:meth:`EvalResult.objectives` gives NSGA-II, so a lucky seed is averaged away in selection, never
in what the front shows. (A blend of the seeds' returns is a strategy no bundle trades.)"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from evo.config import Budget


@dataclass(frozen=True)
class EvalResult:
    """What one genome scored. Sharpe and drawdown are walk-forward out-of-sample figures, of
    training seed index 0 (the exported one) when several seeds were trained (module docstring)."""

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
    risk: dict[str, Any] = field(default_factory=dict)   # RiskParams tuned on all validation segments (holdout, bundle)
    val_sharpe: float = 0.0       # ``risk``'s Sharpe on the validation segments it was tuned on
    holdout: dict[str, Any] | None = None   # filled once the search ends (see evaluate_holdout)
    sharpe_sd: float = 0.0        # spread of the Sharpe over the training seeds (0 with one seed)
    seeds: int = 1                # training seeds in the selection score
    instruments: list[dict[str, Any]] | None = None   # per-instrument figures when several are searched
    seed_sharpes: list[float] = field(default_factory=list)   # each training seed's Sharpe (empty: unknown)
    # The parameters each test fold was traded with (FoldRisk.to_dict: "test", "tuned_on" spans, RiskParams
    # fields), tuned only on validation segments ending a purge gap before that fold; None: an older record.
    risk_folds: list[dict[str, Any]] | None = None
    # The selection score: mean over the training seeds of the Sharpe / max drawdown (None: an older record,
    # whose sharpe / max_drawdown were the seeds' means already).
    sharpe_mean: float | None = None
    max_drawdown_mean: float | None = None

    def objectives(self) -> tuple[float, float]:
        """(Sharpe ↑, max drawdown ↓) for NSGA-II: the selection score, the means over the training
        seeds (one seed: the shown figures). A genome whose exported seed made too few trades keeps
        its own non-positive Sharpe and gets the worst drawdown, so it cannot dominate a trading one."""
        sharpe, drawdown = self.objectives_figures()
        if not self.enough_trades:
            return (min(sharpe, 0.0), 1.0)
        return (sharpe, drawdown)

    def objectives_figures(self) -> tuple[float, float]:
        """The selection score (mean Sharpe, mean max drawdown over the training seeds), before the
        too-few-trades rule of :meth:`objectives`."""
        return (self.sharpe if self.sharpe_mean is None else self.sharpe_mean,
                self.max_drawdown if self.max_drawdown_mean is None else self.max_drawdown_mean)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# Figures that combine as plain means over instruments.
AVERAGED = ("total_return", "exposure", "accuracy_a", "accuracy_b", "f1_a", "f1_b", "sortino", "calmar",
             "win_rate", "profit_factor", "turnover", "val_sharpe")


def selection_score(result: dict[str, Any], name: str) -> float:
    """A result dict's selection score for ``name`` (``sharpe`` or ``max_drawdown``): its seeds' mean
    (``sharpe_mean`` / ``max_drawdown_mean``), or the figure itself in an older record without one."""
    value = result.get(f"{name}_mean")
    return float(result[name] if value is None else value)


def _mean_fields(results: list[EvalResult], names: tuple[str, ...]) -> dict[str, float]:
    return {name: float(np.mean([getattr(r, name) for r in results])) for name in names}


def combine_instruments(parts: list[EvalResult], labels: list[str], budget: Budget) -> EvalResult:
    """One result from several instruments: a genome that only works on one of them should not
    look as good as one that works on all. With ``lam = evaluate.dispersion_penalty``::

        sharpe       = mean(sharpe_i) - lam * sd(sharpe_i)
        max_drawdown = min(1, mean(dd_i) + lam * sd(dd_i))

    (population sd over instruments), each instrument's figures being its exported seed's. Trades
    add up; the genome has enough trades only if every instrument has. ``returns`` are the
    instruments' returns one after the other (for DSR and PBO). Learning rates and risk parameters
    are the first instrument's (each instrument tunes its own: see ``instruments``), so exporting
    for the first instrument reproduces its figures.

    Selection score: seed ``s``'s combined Sharpe is the rule above over the instruments' seed-``s``
    Sharpes (``seed_sharpes``); ``sharpe_mean`` / ``sharpe_sd`` are their mean and spread (the rule
    :func:`evo.search.records.merge_genome` continues with a survivor's extra seeds);
    ``max_drawdown_mean`` is the rule above over the instruments' ``max_drawdown_mean``.
    """
    lam = budget.evaluate.dispersion_penalty

    def sharpe_of(values) -> float:
        v = np.asarray(values, dtype=np.float64)
        return float(v.mean() - lam * v.std())

    def drawdown_of(values) -> float:
        v = np.asarray(values, dtype=np.float64)
        return float(min(1.0, v.mean() + lam * v.std()))

    mean = _mean_fields(parts, AVERAGED)
    instruments = [{"label": label, "sharpe": p.sharpe, "max_drawdown": p.max_drawdown,
                    "total_return": p.total_return, "trades": p.trades, "test_start": p.test_start,
                    "test_end": p.test_end, "lr_a": p.lr_a, "lr_b": p.lr_b, "risk": p.risk, "sharpe_sd": p.sharpe_sd,
                    "sharpe_mean": p.sharpe_mean, "risk_folds": p.risk_folds}
                   for p, label in zip(parts, labels)]
    n_seeds = {len(p.seed_sharpes) for p in parts}
    if len(n_seeds) == 1 and 0 not in n_seeds:
        per_seed = [sharpe_of(s) for s in zip(*(p.seed_sharpes for p in parts))]
    else:   # a part whose per-seed Sharpes are unknown (older records): its selection score stands for them
        per_seed = [sharpe_of([p.objectives_figures()[0] for p in parts])]
    return replace(
        parts[0], **mean,
        sharpe=sharpe_of([p.sharpe for p in parts]), max_drawdown=drawdown_of([p.max_drawdown for p in parts]),
        trades=int(sum(p.trades for p in parts)), traded=any(p.traded for p in parts),
        enough_trades=all(p.enough_trades for p in parts),
        returns=[x for p in parts for x in p.returns], test_bars=int(sum(p.test_bars for p in parts)),
        seconds=round(sum(p.seconds for p in parts), 3), instruments=instruments,
        seed_sharpes=per_seed, seeds=len(per_seed), sharpe_mean=float(np.mean(per_seed)),
        sharpe_sd=float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
        max_drawdown_mean=drawdown_of([p.objectives_figures()[1] for p in parts]),
    )


def _seeds_summary(runs: list[EvalResult], *, seconds: float) -> EvalResult:
    """One result from several training seeds (``runs[0]`` is seed index 0): every figure and the
    ``returns`` are seed 0's, the strategy the holdout trades and the bundle exports; the seeds'
    mean Sharpe and mean max drawdown are the selection score (``sharpe_mean``,
    ``max_drawdown_mean``), with the Sharpe's sample spread ``sharpe_sd``."""
    sharpes = np.array([r.sharpe for r in runs])
    return replace(
        runs[0], sharpe_mean=float(sharpes.mean()),
        max_drawdown_mean=float(np.mean([r.max_drawdown for r in runs])),
        sharpe_sd=float(sharpes.std(ddof=1)), seeds=len(runs), seconds=seconds,
        seed_sharpes=[float(x) for x in sharpes],
    )
