"""Export a front member: train its two models one last time and write the bundle.

Two ways to train them (``evo export``'s ``--refit-all``):

- **default** — the decision bars before the holdout (every bar with a known label when the run
  has no holdout). The last ``val_fraction`` of them, after a purge gap of the longest horizon
  (plus the embargo), is the validation segment for early stopping: exactly the fit whose trades
  on the holdout are the manifest's ``holdout`` metrics, so the bundle is the judged model.
- **refit_all** — every decision bar with a known label, the holdout included, for a fixed
  number of epochs per model: the best epoch the default fit found on its validation segment
  (``best_epoch + 1``). Nothing is left to validate on; the models have seen the holdout, so its
  figures no longer measure them (the manifest says so). Without a holdout this differs from the
  default only in also training on the last ``val_fraction`` of the bars.

Either way each model uses the learning rate the search found for it and the run's seed; the
scaler and the label dead zone are fitted on its training rows only; at most the last
``max_train_windows`` windows of the training range are trained on, as in the search.

The export ends by trading the bundle it wrote over the holdout, through ``predict``'s path
(:func:`replay_holdout`): the bundle's decisions must equal the trained models', and for the
default fit on the CPU its Sharpe, drawdown and trade count must equal the front's holdout
figures, or no bundle is left.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backtest import STOP_RULE
from evo.config import Budget
from evo.deploy.bundle import GOLDEN_TOLERANCE, SIGNAL_NAMES, Bundle, library_versions, write_bundle
from evo.errors import BundleError, StoreError
from evo.evaluation.dataset import Dataset, holdout_bars
from evo.evaluation.evaluate import ModelRun, fit_model, holdout_segments, predict_segment, refit_threshold
from evo.fileio import atomic_path
from evo.genome import Genome, ModelGenes, model_config
from evo.search.records import Record

log = logging.getLogger(__name__)

GOLDEN_BARS = 32             # decision bars whose probabilities the manifest stores (``golden``)
TAIL_CHECKS = 16             # decision bars at which the export measures the stream tail's error
TAIL_CHECK_TOLERANCE = 1e-6  # in units of a feature's fitted std; a larger error lengthens the tail
WALK_FORWARD_KEYS = ("sharpe", "max_drawdown", "total_return", "trades", "exposure", "traded", "enough_trades",
                     "accuracy_a", "accuracy_b", "f1_a", "f1_b", "sortino", "calmar", "win_rate", "profit_factor",
                     "turnover", "val_sharpe", "test_start", "test_end", "test_bars")


@dataclass(frozen=True)
class FinalModel:
    """One model of the final fit. ``best_epoch`` is 0-based; ``best_loss`` is the validation
    loss of that epoch (default fit) or its loss on the training windows (fixed-epoch refit)."""

    run: ModelRun
    lr: float
    epochs_run: int
    best_epoch: int
    best_loss: float
    windows: tuple[int, int]      # decision bars [start, stop) whose windows were trained on


@dataclass(frozen=True)
class FinalFit:
    """Both models of the final fit and the segments they used (decision bars ``[start, stop)``)."""

    genome: Genome
    refit_all: bool
    train: tuple[int, int]
    val: tuple[int, int] | None
    holdout: tuple[int, int] | None
    models: dict[str, FinalModel]
    seed: int
    device: str


def final_segments(ds: Dataset, budget: Budget) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int] | None]:
    """(train, val, holdout) decision-bar ranges of the default fit: everything before the
    holdout (``holdout_fraction`` of the bars at the end; None when 0), the last ``val_fraction``
    of it for early stopping, purge gaps of the longest horizon plus the embargo."""
    n_hold = holdout_bars(ds.n_bars, budget.evaluate.holdout_fraction)
    cut = ds.n_bars - n_hold
    train, val = holdout_segments(ds, cut, budget)
    return train, val, ((cut, ds.n_bars) if n_hold else None)


def fit_final_model(genes: ModelGenes, g: Genome, ds: Dataset, train: tuple[int, int], val: tuple[int, int] | None,
                    budget: Budget, *, lr: float, seed: int, device: str, epochs: int | None = None) -> FinalModel:
    """Train one model on decision bars ``train`` as :func:`evo.evaluation.evaluate.train_pair_model` does
    (same windows, scaler, dead zone, config and seed), keeping the epoch bookkeeping.

    With ``epochs`` set, ``val`` is ignored: the model trains exactly that many epochs (no early
    stopping) and keeps the epoch with the lowest loss on its training windows (normally the
    last; the same loss drives the learning-rate schedule).
    """
    tb = budget.train
    run, lr, result = fit_model(genes, g, ds, train, val, budget, lr=lr, seed=seed, device=device, epochs=epochs)
    first = max(train[0], train[1] - tb.max_train_windows)
    return FinalModel(run=run, lr=float(lr), epochs_run=result.epochs_run, best_epoch=result.best_epoch,
                      best_loss=float(result.best_val_loss), windows=(int(first), int(train[1])))


def train_final(record: Record, ds: Dataset, budget: Budget, *, seed: int, device: str = "cpu",
                refit_all: bool = False) -> FinalFit:
    """Train the member's two models for export (module docstring: default or ``refit_all``)."""
    if not record.ok:
        raise StoreError(f"member {record.key} failed during the search ({record.error}); pick another")
    g = Genome.from_dict(record.genome)
    result = record.result
    train, val, holdout = final_segments(ds, budget)
    labelled = (ds.first_bar, ds.n_bars - g.horizon)
    if budget.evaluate.walk_forward == "rolling":
        labelled = (max(labelled[0], labelled[1] - budget.evaluate.rolling_bars), labelled[1])
    models = {}
    for name, genes in (("a", g.model_a), ("b", g.model_b)):
        lr = float(result[f"lr_{name}"])
        log.info("training model %s on decision bars %d..%d (validation %d..%d)", name.upper(), *train, *val)
        fm = fit_final_model(genes, g, ds, train, val, budget, lr=lr, seed=seed, device=device)
        if refit_all:
            log.info("refitting model %s on decision bars %d..%d for %d epochs", name.upper(), *labelled,
                     fm.best_epoch + 1)
            fm = fit_final_model(genes, g, ds, labelled, None, budget, lr=lr, seed=seed, device=device,
                                 epochs=fm.best_epoch + 1)
        models[name] = fm
    return FinalFit(genome=g, refit_all=refit_all, train=labelled if refit_all else train,
                    val=None if refit_all else val, holdout=holdout, models=models, seed=seed, device=device)


def _fitted_threshold(fit: FinalFit, ds: Dataset, budget: Budget, risk: dict[str, Any]) -> dict[str, Any]:
    """``risk`` with a quantile threshold (``search.threshold_mode = "quantile"``) fitted on the
    exported models' own validation predictions, the bars before the holdout the default fit
    stopped on (with ``--refit-all`` the models trained on them too); an absolute threshold as it is."""
    if risk.get("quantile") is None:
        return risk
    from evo.evaluation.risk import RiskParams

    val = fit.val or final_segments(ds, budget)[1]
    fitted = refit_threshold(RiskParams.from_dict({k: v for k, v in risk.items() if k in RiskParams.__dataclass_fields__}),
                             {name: fm.run for name, fm in fit.models.items()}, ds, val, fit.genome,
                             budget.evaluate.allow_short)
    log.info("quantile threshold: q %.3f -> %.4f on decision bars %d..%d", fitted.quantile, fitted.threshold, *val)
    return {**risk, "threshold": fitted.threshold, "threshold_fitted_on": _span(ds, val)}


def _gate_spec(g: Genome, risk: dict[str, Any]) -> dict[str, Any]:
    """The consensus's regime gate (threshold offsets by volatility regime), when the genome has one."""
    if "gate" not in (g.model_a.regime, g.model_b.regime) or not (risk.get("gate_low") or risk.get("gate_high")):
        return {}
    return {"gate_low": float(risk.get("gate_low", 0.0)), "gate_high": float(risk.get("gate_high", 0.0)),
            "gate_model": "a" if g.model_a.regime == "gate" else "b"}


def _span(ds: Dataset, seg: tuple[int, int] | None) -> list[str] | None:
    if seg is None:
        return None
    return [ds.bars.index[seg[0]].isoformat(), ds.bars.index[seg[1] - 1].isoformat()]


def _choose_tail(ds: Dataset, fit: FinalFit) -> tuple[int, dict[str, Any]]:
    """The stream's tail length (:mod:`evo.pipeline.stream`), checked on this data at up to TAIL_CHECKS
    decision bars: lengthened (doubled) while a feature row differs by more than
    TAIL_CHECK_TOLERANCE of its std."""
    from evo.pipeline.stream import SEED_TOLERANCE, tail_bars_for, tail_difference

    g = fit.genome
    names = list(g.model_a.features) + list(g.model_b.features)
    tail = max(tail_bars_for(names, g.seq_len), _frames_tail_bars(g))
    worst, checked = None, 0
    while tail <= ds.n_bars:
        ends = np.unique(np.linspace(tail - 1, ds.n_bars - 1, TAIL_CHECKS).astype(np.int64))
        # x1 features only (the first columns of a packed scaler); higher timeframes: _frames_tail_bars
        worst = max(tail_difference(ds.bars, ds.features, list(fm.run.genes.features),
                                    fm.run.scaler.scale[: len(fm.run.genes.features)].astype(np.float64),
                                    g.seq_len, tail, ends)
                    for fm in fit.models.values())
        checked = len(ends)
        if worst <= TAIL_CHECK_TOLERANCE:
            break
        log.warning("a stream tail of %d bars leaves a feature error of %.2e std; doubling it", tail, worst)
        tail *= 2
    else:
        log.warning("the data (%d bars) are too short to check a stream tail of %d bars", ds.n_bars, tail)
        worst = None
    return tail, {"seed_tolerance": SEED_TOLERANCE, "checked_decisions": checked,
                  "max_feature_diff_std": worst, "check_tolerance": TAIL_CHECK_TOLERANCE}


def _frames_tail_bars(g: Genome) -> int:
    """Tail the higher timeframes and regime inputs need (:func:`evo.pipeline.stream.frame_tail_bars`)."""
    from evo.pipeline.stream import frame_tail_bars

    return max(frame_tail_bars(m.features, m.timeframes, m.regime, g.seq_len) for m in (g.model_a, g.model_b))


def _min_bars(g: Genome, warmup: dict[str, int]) -> int:
    """Bars of history the first decision needs: warm-up + window on ``x1``, and ``m x (warm-up +
    window + 1)`` bars for a timeframe ``x m`` (enough closed periods even when the first is partial)."""
    need = 0
    for genes in (g.model_a, g.model_b):
        rows = max(warmup[f] for f in genes.features) + g.seq_len
        need = max([need, rows] + [m * (rows + 1) for m in genes.timeframes if m > 1])
    return need


def _regime_spec(fm: FinalModel) -> dict[str, Any]:
    genes = fm.run.genes
    if genes.regime == "none":
        return {}
    return {"regime": {"mode": genes.regime, "thresholds": fm.run.regime.to_dict()}}


def write_member_bundle(fit: FinalFit, record: Record, ds: Dataset, budget: Budget, out: Path, *,
                        run_meta: dict | None = None, graphs: bool = True, quantize: str | None = None,
                        max_disagreement: float = 0.0) -> dict[str, Any]:
    """Write the bundle of a final fit to ``out`` (temp file, then rename); return its manifest.

    The golden block holds the last GOLDEN_BARS decision bars the models were fitted on (with the
    ``tail_bars`` of history each needs) and the probabilities the exported weights give there,
    computed the way the trading PC will (CPU, vanilla sLSTM, features from those bars alone).

    ``graphs`` (default): the bundle also carries each model's ONNX graph, checked against the
    torch path over the holdout (:func:`evo.deploy.graphs.check_graphs`; the last CHECK_BARS bars
    without a holdout) before anything is written; ``quantize="int8"`` writes int8 graphs instead,
    refused when they change more than ``max_disagreement`` of those decisions. ``graphs=False``
    writes a bundle without graphs (torch engine only, as versions 2 and 3 were).
    """
    import features
    from models import EXPORT_LAYOUT, state_dict_for_export
    from models.multi import load_model

    g, result, ev = fit.genome, record.result, budget.evaluate
    tensors = {name: state_dict_for_export(fm.run.model) for name, fm in fit.models.items()}
    specs = {s.name: s for s in features.catalog()}
    risk = dict(result.get("risk") or {"threshold": g.threshold, "weight": 0.5, "stop_loss": None,
                                       "take_profit": None, "size": ev.size})
    risk = _fitted_threshold(fit, ds, budget, risk)
    tail_bars, tail_info = _choose_tail(ds, fit)
    idx = ds.bars.index
    manifest: dict[str, Any] = {
        "catalog_version": features.CATALOG_VERSION,
        "export_layout": EXPORT_LAYOUT,
        "member": record.key,
        "genome": g.to_dict(),
        "seq_len": g.seq_len,
        "horizon": g.horizon,
        "min_bars": _min_bars(g, {n: s.warmup_bars for n, s in specs.items()}),
        "tail_bars": tail_bars,
        "tail": tail_info,
        "models": {
            name: {
                "config": model_config(genes, g.seq_len, fit.device).to_dict(),
                "features": list(genes.features),
                "feature_specs": [
                    {"name": f, "kind": specs[f].kind, "source": specs[f].source,
                     "warmup_bars": specs[f].warmup_bars, "needs_volume": specs[f].needs_volume}
                    for f in genes.features
                ],
                "scaler": fm.run.scaler.to_dict(),
                "timeframes": list(genes.timeframes),
                **_regime_spec(fm),
                "dead_zone": float(fm.run.dead_zone),
                "lr": fm.lr,
                "fit": {"epochs_run": fm.epochs_run, "best_epoch": fm.best_epoch, "best_loss": fm.best_loss,
                        "loss_on": "training windows" if fit.refit_all else "validation",
                        "windows": _span(ds, fm.windows), "n_windows": fm.windows[1] - fm.windows[0]},
            }
            for (name, fm), genes in zip(fit.models.items(), (g.model_a, g.model_b))
        },
        "consensus": {"rule": g.consensus, "threshold": float(risk["threshold"]),
                      "weight": float(risk.get("weight", 0.5)), "allow_short": bool(ev.allow_short),
                      **_gate_spec(g, risk)},
        "risk": {**risk, "sizing": ev.sizing, "breaker": ev.breaker, "fees_bps": ev.fees_bps,
                 "slippage_bps": ev.slippage_bps, "allow_short": bool(ev.allow_short),
                 "fill": "a decision at bar t's close trades at bar t+1's open", "stops": STOP_RULE},
        "training": {
            "mode": "refit_all" if fit.refit_all else "default",
            "train": _span(ds, fit.train), "val": _span(ds, fit.val), "holdout": _span(ds, fit.holdout),
            "holdout_seen": bool(fit.refit_all and fit.holdout is not None),
            "seed": fit.seed, "device": fit.device,
        },
        "trained_on": {
            "data": ds.label, "data_hash": ds.data_hash, "n_bars": ds.n_bars,
            "bars": [idx[0].isoformat(), idx[-1].isoformat()],
            "train": _span(ds, fit.train), "val": _span(ds, fit.val),
        },
        "metrics": {"walk_forward_oos": {k: result[k] for k in WALK_FORWARD_KEYS if k in result}},
        "run": run_meta or {},
        "versions": library_versions(),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if any(len(genes.timeframes) > 1 for genes in (g.model_a, g.model_b)):
        manifest["clock"] = ds.clock.to_dict()
    if isinstance(result.get("holdout"), dict):
        manifest["metrics"]["holdout"] = {k: v for k, v in result["holdout"].items() if k != "returns"}
        if fit.refit_all:
            manifest["metrics"]["holdout"]["note"] = "measured before the refit; these models trained on the holdout"

    # Golden: the runtime's models (CPU, vanilla) on the last fitted decision bars.
    cpu_models, scalers = {}, {}
    for name, fm in fit.models.items():
        cfg = model_config(fm.run.genes, g.seq_len, "cpu")
        cpu_models[name] = load_model(cfg, tensors[name])
        scalers[name] = fm.run.scaler
    runtime = Bundle({**manifest, "golden": None}, cpu_models, scalers)
    stop = (fit.val or fit.train)[1]
    first = max(0, stop - GOLDEN_BARS - tail_bars + 1)
    bars = ds.bars.iloc[first:stop]
    p = runtime.probabilities(bars, last=GOLDEN_BARS)
    # The in-memory models (on the training device) at the same bars, features from the full history.
    ends = np.arange(stop - GOLDEN_BARS, stop)
    in_memory = {name: predict_segment(fm.run, ds, ends, g.seq_len, g.horizon)[0] for name, fm in fit.models.items()}
    drift = float(max(np.abs(in_memory["a"] - p.p_a).max(), np.abs(in_memory["b"] - p.p_b).max()))
    if drift > 1e-5:
        log.warning("the exported CPU models differ from the trained ones by %.2e in probability "
                    "(device %s)", drift, fit.device)
    manifest["golden"] = {
        "bars": {"time": [t.isoformat() for t in bars.index],
                 "ohlcv": bars[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64).tolist()},
        "decisions": [idx[ends[0]].isoformat(), idx[ends[-1]].isoformat()],
        "p_a": p.p_a.tolist(), "p_b": p.p_b.tolist(), "signal": [int(s) for s in p.signal],
        "tolerance": GOLDEN_TOLERANCE,
        "trained_model_max_diff": drift,
    }
    if not graphs:
        if quantize:
            raise BundleError("--quantize needs the ONNX graphs")
        return write_bundle(out, manifest, tensors["a"], tensors["b"])
    from evo.deploy.graphs import CHECK_BARS, check_graphs, export_graphs

    made = export_graphs({name: model_config(fm.run.genes, g.seq_len, "cpu") for name, fm in fit.models.items()},
                         tensors)
    if fit.holdout is not None and fit.holdout[1] - 1 > fit.holdout[0]:
        cut, n = fit.holdout
        span, check_bars, check_last = "holdout", ds.bars.iloc[: n - 1], n - 1 - cut   # the replay's decisions
    else:
        check_last = max(1, min(CHECK_BARS, ds.n_bars - runtime.min_bars + 1))
        span, check_bars = f"last {check_last} bars", ds.bars
    written, manifest["graphs"] = check_graphs(runtime, made, check_bars, check_last, span, golden_bars=bars,
                                               golden_last=GOLDEN_BARS, quantize=quantize,
                                               max_disagreement=max_disagreement)
    return write_bundle(out, manifest, tensors["a"], tensors["b"], graphs=written)


REPLAY_SHARPE_TOL = 1e-6      # |bundle's holdout Sharpe - the front's|: same signals and prices give the same figures
REPLAY_DRAWDOWN_TOL = 1e-6    # |max drawdown difference| (a fraction)


@dataclass(frozen=True)
class Replay:
    """The written bundle traded over the holdout through ``predict``'s path, next to the front.

    ``figures``/``front``: ``sharpe``, ``max_drawdown``, ``trades`` of the bundle's replay and of
    the run's journal (None when it has none); ``differ``: decision bars where the bundle's signal
    differs from the trained models' (evaluation's own path); ``checked``: what was enforced, and
    ``note`` why the figures were not, when they were not."""

    decisions: int
    differ: int
    first_differ: str | None
    figures: dict[str, Any]
    front: dict[str, Any] | None
    checked: tuple[str, ...]
    note: str = ""

    def summary(self) -> str:
        figs = "  ".join(f"{k} {self.figures[k]:.6g} (front {self.front[k]:.6g})" if self.front and k in self.front
                         else f"{k} {self.figures[k]:.6g}" for k in ("sharpe", "max_drawdown", "trades"))
        return (f"holdout replayed through predict's path: {self.decisions} decisions, {self.differ} differ from the "
                f"trained models; {figs}" + (f"; {self.note}" if self.note else ""))


def replay_holdout(path: Path, fit: FinalFit, record: Record, ds: Dataset, budget: Budget, *,
                   front_device: str | None = None) -> Replay | None:
    """Trade the bundle at ``path`` over the holdout as ``evo predict`` would decide it and check
    it against the front; None when the run has no holdout.

    The bundle is loaded from the file (CPU, vanilla sLSTM) and decides every holdout bar from the
    full history (``Bundle.decide``, predict's ``--bars N``); its signals are traded by the
    backtest that scored the front (:func:`evo.evaluation.evaluate.evaluate_holdout`: decision bars
    ``cut .. n-2``, the fill at the next open, the manifest's costs and risk rules). Raises
    :class:`BundleError`, the figures side by side, when

    - a signal differs from the one the exported models give through evaluation's own code
      (``predict_segment`` + ``signal_for``) — checked whenever the export trained on the CPU;
    - the Sharpe or max drawdown differ from the journal's ``holdout`` by more than
      REPLAY_SHARPE_TOL / REPLAY_DRAWDOWN_TOL, or the trade count differs — checked only where
      the export reproduces the model the front traded: the default fit (``evaluate_holdout``
      trains on the same bars with the same seed and learning rates), on the CPU, for a run that
      traded its holdout on the CPU. ``--refit-all`` models trained on the holdout and a GPU fit
      is not bit-reproducible: their figures are logged, not compared (``note`` says which).
    """
    from backtest import CostModel, backtest_signals, periods_per_year
    from evo.evaluation.evaluate import gate_regime
    from evo.evaluation.risk import RiskParams, signal_for

    if fit.holdout is None:
        log.info("the run has no holdout: no replay to compare")
        return None
    g = fit.genome
    cut, n = fit.holdout
    ends = np.arange(cut, n - 1)
    bundle = Bundle.load(path, engine="torch")   # the judged models; the graphs were checked against them
    names = {v: k for k, v in SIGNAL_NAMES.items()}
    replayed = np.array([names[d.signal] for d in bundle.decide(ds.bars.iloc[: n - 1], last=len(ends))], np.int8)
    m = bundle.manifest
    risk_keys = ("threshold", "weight", "stop_loss", "take_profit", "size", "gate_low", "gate_high")
    risk = RiskParams(**{k: m["risk"][k] for k in risk_keys if k in m["risk"]})
    runs = {name: fm.run for name, fm in fit.models.items()}
    probs = {name: predict_segment(run, ds, ends, g.seq_len, g.horizon)[0] for name, run in runs.items()}
    trained = signal_for(probs["a"], probs["b"], g, risk, bool(m["risk"]["allow_short"]),
                         gate_regime(g, runs, ds, ends))
    differ = np.flatnonzero(replayed != trained)
    span = ds.bars.iloc[cut:]
    breaker = float(m["risk"].get("breaker") or 0.0)
    bt = backtest_signals(span, np.concatenate([replayed, np.zeros(1, np.int8)]),
                          costs=CostModel(fees_bps=m["risk"]["fees_bps"], slippage_bps=m["risk"]["slippage_bps"]),
                          periods_per_year=periods_per_year(ds.bars.index[:cut]),   # the search span's, as the front's
                          risk=risk.rules(breaker if breaker > 0 else None))
    figures = {"sharpe": float(bt.sharpe), "max_drawdown": float(bt.max_drawdown), "trades": int(bt.trades)}
    front = record.result.get("holdout") if isinstance(record.result.get("holdout"), dict) else None
    front = {k: front[k] for k in ("sharpe", "max_drawdown", "trades") if k in front} if front else None
    checked, note = [], ""
    if fit.device == "cpu":
        checked.append("decisions")
    if front is None:
        note = "the journal holds no holdout figures for this member (the run has not traded its holdout): not compared"
    elif fit.refit_all:
        note = ("--refit-all: these models trained on the holdout, the front's figures are the default fit's: "
                "not compared")
    elif fit.device != "cpu" or (front_device or "cpu") != "cpu":
        note = (f"trained on {fit.device} (the run on {front_device or 'cpu'}): GPU training is not bit-reproducible, "
                "figures not compared")
    else:
        checked.append("figures")
    replay = Replay(decisions=len(ends), differ=len(differ),
                    first_differ=ds.bars.index[ends[differ[0]]].isoformat() if len(differ) else None,
                    figures=figures, front=front, checked=tuple(checked), note=note)
    problems = []
    if "decisions" in checked and len(differ):
        t = differ[0]
        problems.append(f"{len(differ)} of {len(ends)} decisions differ from the trained models' (first at "
                        f"{replay.first_differ}: bundle {SIGNAL_NAMES[int(replayed[t])]}, models "
                        f"{SIGNAL_NAMES[int(trained[t])]})")
    if "figures" in checked:
        if not (abs(figures["sharpe"] - front["sharpe"]) <= REPLAY_SHARPE_TOL
                and abs(figures["max_drawdown"] - front["max_drawdown"]) <= REPLAY_DRAWDOWN_TOL
                and figures["trades"] == front["trades"]):
            problems.append(f"Sharpe {figures['sharpe']:.6f} vs the front's {front['sharpe']:.6f} (tolerance "
                            f"{REPLAY_SHARPE_TOL:g}), max drawdown {figures['max_drawdown']:.6f} vs "
                            f"{front['max_drawdown']:.6f} ({REPLAY_DRAWDOWN_TOL:g}), trades {figures['trades']} vs "
                            f"{front['trades']}")
    if problems:
        raise BundleError(f"the bundle does not replay member {record.key[:8]}'s holdout "
                          f"({span.index[0].date()}..{span.index[-1].date()}): {'; '.join(problems)}")
    return replay


def export_member(record: Record, ds: Dataset, budget: Budget, out: Path, *, seed: int, device: str = "cpu",
                  refit_all: bool = False, run_meta: dict | None = None, front_device: str | None = None,
                  quantize: str | None = None, max_disagreement: float = 0.0) -> dict[str, Any]:
    """Train the member's models (:func:`train_final`), write the bundle to ``out`` with its ONNX
    graphs (checked against the torch path; int8 with ``quantize="int8"``, at most
    ``max_disagreement`` of the holdout's decisions changed: :func:`write_member_bundle`) and replay
    the holdout with it (:func:`replay_holdout`); return the manifest. ``ds`` holds all of the run's
    bars, the holdout included; ``front_device``: the device the run traded its holdout on.

    The bundle is written beside ``out`` and renamed over it only once the graphs and the replay
    agree: a mismatch raises :class:`BundleError` and leaves no bundle (an older file at ``out`` stays).
    """
    fit = train_final(record, ds, budget, seed=seed, device=device, refit_all=refit_all)
    with atomic_path(out) as staged:
        manifest = write_member_bundle(fit, record, ds, budget, staged, run_meta=run_meta, quantize=quantize,
                                       max_disagreement=max_disagreement)
        replay = replay_holdout(staged, fit, record, ds, budget, front_device=front_device)
    if replay is not None:
        log.info("%s", replay.summary())
    return manifest


__all__ = ["FinalFit", "FinalModel", "Replay", "export_member", "final_segments", "fit_final_model",
           "replay_holdout", "train_final", "write_member_bundle"]
