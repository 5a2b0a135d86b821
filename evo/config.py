"""Budget presets: TOML files parsed into frozen, validated dataclasses.

A budget fixes the search space (:class:`SearchSpace`), the training effort (:class:`TrainBudget`),
the walk-forward layout and costs (:class:`EvalBudget`) and the GA (:class:`GABudget`). Change one
with :func:`dataclasses.replace`; every field is checked in ``__post_init__``.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evo.errors import ConfigError

CONSENSUS_RULES = ("both", "either", "weighted")  # mirrors backtest.consensus (kept import-free here)
# How the genome's threshold gene reads (search.threshold_mode): an absolute probability a side must
# exceed, or a quantile of the consensus scores on the validation rows (backtest.quantile_threshold).
THRESHOLD_MODES = ("probability", "quantile")


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _range(value: Any, name: str, kind: type) -> tuple:
    _check(isinstance(value, (list, tuple)) and len(value) == 2, f"{name} must be [low, high]")
    lo, hi = kind(value[0]), kind(value[1])
    _check(lo <= hi, f"{name}: low {lo} is above high {hi}")
    return (lo, hi)


def _choices(value: Any, name: str, kind: type) -> tuple:
    _check(isinstance(value, (list, tuple)) and len(value) >= 1, f"{name} must be a non-empty list")
    return tuple(kind(v) for v in value)


@dataclass(frozen=True)
class SearchSpace:
    """The genes' ranges. ``(lo, hi)`` pairs are inclusive ranges; tuples of values are choices.

    Training genes (per model): ``proj_factor`` choices up-project the mLSTM cell (hidden size
    ``proj_factor`` x embedding, rounded up to 64: E 512 x 2.0 = 1024); ``batch_size`` choices and
    the ``grad_clip`` range (a max gradient norm) make batch size and clipping genes; left empty
    (the default) every model uses the budget's ``train.batch_size`` / ``train.grad_clip``.

    Timeframe and regime genes (per model): ``timeframes`` lists the multipliers of the base bar a
    model may add to its own (``[1, 5, 15, 60]`` on minute data: 5-minute, 15-minute and hourly
    encoders; ``[1, 5]`` on daily: the week; only those the data support are used); ``(1,)``
    closes the gene. ``fusion`` choices (``concat``, ``attention``) join several timeframes;
    ``regime`` choices (``none``, ``features``, ``gate``) add the volatility/trend regime
    (``evo.pipeline.regime``). The defaults keep every model single-timeframe, regime-free.

    ``threshold_mode``: ``probability`` (the threshold gene is the ``p_up``/``p_down`` level a side
    must exceed) or ``quantile`` (the gene is a quantile level q of the consensus scores on the
    validation rows the risk tuning uses; the traded threshold is fitted there, so roughly the top
    ``1 - q`` of a model pair's own scores clear it, however confident the pair is in absolute terms).
    """

    embedding_dim: tuple[int, ...] = (8, 16, 24)
    num_blocks: tuple[int, int] = (1, 2)
    num_heads: tuple[int, ...] = (1, 2, 4)
    slstm_share: float = 0.5
    dropout: tuple[float, float] = (0.0, 0.3)
    seq_len: tuple[int, ...] = (8, 12, 16)
    horizon: tuple[int, ...] = (1, 3, 5)
    threshold: tuple[float, float] = (0.36, 0.6)
    threshold_mode: str = "probability"
    consensus: tuple[str, ...] = CONSENSUS_RULES
    max_features_a: int = 8
    max_features_b: int = 6
    proj_factor: tuple[float, ...] = (2.0,)
    batch_size: tuple[int, ...] = ()
    grad_clip: tuple[float, ...] = ()
    timeframes: tuple[int, ...] = (1,)
    fusion: tuple[str, ...] = ("concat",)
    regime: tuple[str, ...] = ("none",)

    def __post_init__(self) -> None:
        _check(all(e >= 4 for e in self.embedding_dim), "search.embedding_dim values must be >= 4")
        _check(
            all(any(e % h == 0 and e // h >= 2 for h in self.num_heads) for e in self.embedding_dim),
            "search: every embedding_dim needs a num_heads value that divides it into heads >= 2 wide",
        )
        _check(1 <= self.num_blocks[0] <= self.num_blocks[1] <= 16, "search.num_blocks must lie in 1..16")
        _check(0.0 <= self.slstm_share <= 1.0, "search.slstm_share is a probability in [0, 1]")
        _check(0.0 <= self.dropout[0] <= self.dropout[1] < 1.0, "search.dropout must lie in [0, 1)")
        _check(all(s >= 2 for s in self.seq_len), "search.seq_len values must be >= 2 bars")
        _check(all(h >= 1 for h in self.horizon), "search.horizon values must be >= 1 bar")
        _check(0.0 < self.threshold[0] <= self.threshold[1] < 1.0, "search.threshold must lie in (0, 1)")
        _check(self.threshold_mode in THRESHOLD_MODES,
               f"search.threshold_mode must be one of {', '.join(THRESHOLD_MODES)}, got {self.threshold_mode!r}")
        _check(set(self.consensus) <= set(CONSENSUS_RULES), f"search.consensus must be among {CONSENSUS_RULES}")
        _check(self.max_features_a >= 1 and self.max_features_b >= 1, "search.max_features_* must be >= 1")
        _check(len(self.proj_factor) >= 1 and all(1.0 <= f <= 4.0 for f in self.proj_factor),
               "search.proj_factor values must lie in [1, 4]")
        _check(all(b >= 1 for b in self.batch_size), "search.batch_size values must be >= 1")
        _check(len(self.grad_clip) in (0, 2) and all(c > 0 for c in self.grad_clip),
               "search.grad_clip must be [low, high] (max gradient norms > 0) or left out")
        _check(1 in self.timeframes and all(m >= 1 for m in self.timeframes),
               "search.timeframes are multipliers of the base bar >= 1 and must include 1 (e.g. [1, 5, 15, 60])")
        _check(len(self.fusion) >= 1 and set(self.fusion) <= {"concat", "attention"},
               "search.fusion must be among concat, attention")
        _check(len(self.regime) >= 1 and set(self.regime) <= {"none", "features", "gate"},
               "search.regime must be among none, features, gate")


@dataclass(frozen=True)
class TrainBudget:
    """Training effort per model and fold."""

    max_epochs: int = 3
    patience: int = 2
    batch_size: int = 64
    max_train_windows: int = 1200
    lr_trials: int = 2             # Optuna trials per model on fold 0's validation; 0 = no study, lr 1e-3
    lr_trial_epochs: int = 2
    seeds: int = 1                  # training seeds averaged per genome (common to all genomes)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    return_loss_weight: float = 0.1
    amp: bool = False               # bfloat16 autocast on CUDA (the CPU always trains in float32)

    def __post_init__(self) -> None:
        _check(self.max_epochs >= 1 and self.patience >= 1, "train.max_epochs and train.patience must be >= 1")
        _check(self.batch_size >= 1 and self.max_train_windows >= 16, "train.batch_size >= 1, max_train_windows >= 16")
        _check(self.lr_trials >= 0 and self.lr_trial_epochs >= 1,
               "train.lr_trials must be >= 0 (0: no study, lr 1e-3) and lr_trial_epochs >= 1")
        _check(1 <= self.seeds <= 16, "train.seeds must lie in 1..16")


@dataclass(frozen=True)
class EvalBudget:
    """Walk-forward layout, holdout, costs and risk rules.

    Fees and slippage are per side, in basis points (5 bps = 0.05 % of the traded value).
    ``holdout_fraction`` of the bars at the end (0.2 = the last 20 %) is never seen by the search;
    front members are traded on it once the search ends. ``walk_forward`` is ``anchored`` (each
    fold trains on everything before it) or ``rolling`` (the last ``rolling_bars`` decision bars).
    ``embargo`` adds bars to the purge gap (which is at least the longest label horizon).
    ``risk_trials`` nevergrad evaluations tune threshold/weight (and stops if ``tune_stops``) on
    validation segments; 0 keeps the genome's own threshold. ``sizing`` is ``fixed`` (``size`` of
    equity per position) or ``kelly`` (in-sample Kelly fraction capped at ``kelly_cap``).
    ``breaker`` is the drawdown circuit breaker (0.25 = stop trading after a 25 % fall; 0 = off).
    With several instruments the objectives are the mean over instruments minus
    ``dispersion_penalty`` standard deviations (see ``evo.evaluation.evaluate.combine_instruments``).
    """

    folds: int = 3
    test_fraction: float = 0.3
    val_fraction: float = 0.15
    holdout_fraction: float = 0.2
    walk_forward: str = "anchored"
    rolling_bars: int = 0
    embargo: int = 0
    fees_bps: float = 5.0
    slippage_bps: float = 5.0
    min_trades: int = 3
    allow_short: bool = False
    risk_trials: int = 20
    tune_stops: bool = False
    sizing: str = "fixed"
    size: float = 1.0
    kelly_cap: float = 0.5
    breaker: float = 0.0
    dispersion_penalty: float = 0.5

    def __post_init__(self) -> None:
        _check(self.folds >= 1, "evaluate.folds must be >= 1")
        _check(self.dispersion_penalty >= 0, "evaluate.dispersion_penalty must be >= 0")
        _check(0.05 <= self.test_fraction <= 0.8, "evaluate.test_fraction must lie in [0.05, 0.8]")
        _check(0.05 <= self.val_fraction <= 0.5, "evaluate.val_fraction must lie in [0.05, 0.5]")
        _check(0.0 <= self.holdout_fraction <= 0.5, "evaluate.holdout_fraction must lie in [0, 0.5]")
        _check(self.walk_forward in ("anchored", "rolling"), "evaluate.walk_forward is 'anchored' or 'rolling'")
        _check(self.walk_forward == "anchored" or self.rolling_bars >= 64,
               "evaluate.rolling_bars must be >= 64 with walk_forward = 'rolling'")
        _check(self.embargo >= 0, "evaluate.embargo must be >= 0 bars")
        _check(self.fees_bps >= 0 and self.slippage_bps >= 0, "evaluate fees_bps/slippage_bps must be >= 0")
        _check(self.min_trades >= 0, "evaluate.min_trades must be >= 0")
        _check(self.risk_trials >= 0, "evaluate.risk_trials must be >= 0")
        _check(self.sizing in ("fixed", "kelly"), "evaluate.sizing is 'fixed' or 'kelly'")
        _check(0.0 < self.size <= 1.0 and 0.0 < self.kelly_cap <= 1.0,
               "evaluate.size and evaluate.kelly_cap are fractions of equity in (0, 1]")
        _check(0.0 <= self.breaker < 1.0, "evaluate.breaker is a drawdown fraction in [0, 1); 0 = off")

    @property
    def breaker_or_none(self) -> float | None:
        return self.breaker if self.breaker > 0 else None


@dataclass(frozen=True)
class GABudget:
    """The search loop. ``reevaluate``: extra training seeds a genome that survives selection may
    accumulate, one per generation survived (0 = off). ``halving_eta``: successive halving inside
    each generation, ``population * eta`` candidates screened at 1/eta of the training effort and
    the best ``population`` trained fully (1 = off). ``rescore``: after the last generation, every
    front member is trained again with this many fresh seeds, never used by the search, and the
    re-scored figures are shown beside the search's (0 = off): how much of a score was luck."""

    population: int = 6
    generations: int = 2
    cx_prob: float = 0.7
    mut_prob: float = 0.4
    reevaluate: int = 0
    halving_eta: int = 1
    rescore: int = 0

    def __post_init__(self) -> None:
        _check(self.population >= 2, "ga.population must be >= 2")
        _check(self.generations >= 0, "ga.generations must be >= 0")
        _check(0 <= self.cx_prob <= 1 and 0 <= self.mut_prob <= 1, "ga.cx_prob and ga.mut_prob are probabilities")
        _check(0 <= self.reevaluate <= 16, "ga.reevaluate (extra seeds per survivor) must lie in 0..16")
        _check(1 <= self.halving_eta <= 8, "ga.halving_eta must lie in 1..8 (1 = no successive halving)")
        _check(0 <= self.rescore <= 16, "ga.rescore (fresh seeds for the final front) must lie in 0..16")


@dataclass(frozen=True)
class Budget:
    name: str
    description: str = ""
    device: str = "cpu"
    search: SearchSpace = field(default_factory=SearchSpace)
    train: TrainBudget = field(default_factory=TrainBudget)
    evaluate: EvalBudget = field(default_factory=EvalBudget)
    ga: GABudget = field(default_factory=GABudget)

    def __post_init__(self) -> None:
        _check(self.device in ("cpu", "cuda"), f"budget {self.name}: device must be 'cpu' or 'cuda'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SPACE_KINDS = {
    "embedding_dim": ("choices", int), "num_blocks": ("range", int), "num_heads": ("choices", int),
    "dropout": ("range", float), "seq_len": ("choices", int), "horizon": ("choices", int),
    "threshold": ("range", float), "consensus": ("choices", str), "proj_factor": ("choices", float),
    "batch_size": ("optional choices", int), "grad_clip": ("optional range", float),
    "timeframes": ("choices", int), "fusion": ("choices", str), "regime": ("choices", str),
}


def budget_from_dict(name: str, data: dict[str, Any]) -> Budget:
    """Build a :class:`Budget` from parsed TOML (or the ``to_dict`` of one)."""
    known = {"name", "description", "device", "search", "train", "evaluate", "ga"}
    unknown = set(data) - known
    _check(not unknown, f"budget {name}: unknown key(s) {sorted(unknown)}")
    search = dict(data.get("search", {}))
    for key, (kind, typ) in _SPACE_KINDS.items():
        if key in search:
            if kind.startswith("optional ") and search[key] in ([], ()):
                search[key] = ()
                continue
            parse = _range if kind.endswith("range") else _choices
            search[key] = parse(search[key], f"search.{key}", typ)
    try:
        return Budget(
            name=name,
            description=str(data.get("description", "")),
            device=str(data.get("device", "cpu")),
            search=SearchSpace(**search),
            train=TrainBudget(**data.get("train", {})),
            evaluate=EvalBudget(**data.get("evaluate", {})),
            ga=GABudget(**data.get("ga", {})),
        )
    except TypeError as exc:  # unknown field in a section
        raise ConfigError(f"budget {name}: {exc}") from None


def load_budget(path: Path | str) -> Budget:
    """Parse the budget TOML file at ``path`` (preset names such as ``smoke`` are resolved to
    their files by :func:`experiments.load_budget`, which the commands call)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such budget file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return budget_from_dict(path.stem, data)


def check_device(budget: Budget) -> str:
    """The torch device the budget will train on; ConfigError if it asks for CUDA and there is none."""
    if budget.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"budget {budget.name!r} needs a CUDA GPU, and torch sees none on this machine; "
                "use --budget cpu (or smoke)"
            )
    return budget.device
