"""A run's report: plotly figures and one self-contained HTML page (pure: records in, figures out).

:func:`build_report` turns the journal's records, ``run.json``'s meta, the last checkpoint and —
when the caller could load them — the run's bars and Optuna studies into :class:`Section` s, each
one plotly figure with a note that says which sample its numbers come from. :func:`render_html`
lays them out in one HTML page with plotly.js embedded (it opens offline: no CDN, no MathJax).
Reading files and writing the HTML and PNG copies is :mod:`evo.commands.report`'s job.

Every number is labelled with its sample:

- **walk-forward out-of-sample** — the concatenated test folds the GA selected on (after costs);
- **holdout** — bars the search never scored (``result["holdout"]``, when the run has one);
- **in-sample** — data a choice was fitted or tuned on: the learning-rate studies' validation loss,
  the validation Sharpe the risk settings were tuned on.

A run that is still going is fine: the figures cover the journal up to its last whole line, and
generations after the last checkpoint are marked *in progress*.
"""

from __future__ import annotations

import html
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from evo.front import hypervolume_2d
from evo.ga import pareto_front
from evo.store import Record

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

log = logging.getLogger(__name__)

WALK_FORWARD = "walk-forward out-of-sample"
HOLDOUT = "holdout"
IN_SAMPLE = "in-sample"

# Hypervolume reference point: Sharpe = (lowest Sharpe of any genome that may enter the front)
# minus REFERENCE_EPSILON, drawdown = 1.0 (all capital lost). The epsilon keeps the worst point's
# own area above zero; the point is fixed for the whole run so generations are comparable.
REFERENCE_EPSILON = 0.05
REFERENCE_DRAWDOWN = 1.0

# Result keys that, when present, are shown as a third objective (marker colour on the front).
THIRD_OBJECTIVES = {"latency_ms": "latency (ms)"}

MAX_CURVES = 8          # front members drawn in the equity figure (best Sharpe first)
MAX_HEATMAP_ROWS = 40   # features per heatmap (most often chosen first)
MAX_STUDIES = 10        # Optuna studies in the optimisation-history figure

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
           "#bcbd22", "#7f7f7f")
FRONT_COLOUR = "#1f4e9c"
ALL_COLOUR = "#b0b7c3"
HOLDOUT_FILL = "rgba(255, 165, 0, 0.15)"


@dataclass(frozen=True)
class Section:
    """One figure of the report. ``name`` is a slug (PNG file names), ``sample`` names the sample
    the figure's numbers come from, ``note`` is plain text shown under the title."""

    name: str
    title: str
    sample: str
    figure: go.Figure
    note: str = ""
    height: int = 520


@dataclass(frozen=True)
class Report:
    title: str
    facts: tuple[tuple[str, str], ...]      # (label, value) lines of the header
    status: str                             # "finished" or "in progress: ..."
    sections: tuple[Section, ...]
    table_html: str                         # the honesty table (HTML, every number labelled)
    notes: tuple[str, ...] = field(default=())

    @property
    def in_progress(self) -> bool:
        return self.status != "finished"


# ------------------------------------------------------------------------------------------------
# small pure helpers


def eligible(record: Record) -> bool:
    """Evaluated successfully with enough trades: may enter the front (as in evo.ga)."""
    return record.ok and bool(record.result.get("enough_trades"))


def holdout_of(record: Record) -> dict[str, Any] | None:
    """``result["holdout"]`` when it is there and has a finite Sharpe, else None."""
    if not record.ok:
        return None
    h = record.result.get("holdout")
    if not isinstance(h, Mapping) or not _finite(h.get("sharpe")):
        return None
    return dict(h)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _span(h: Mapping[str, Any]) -> tuple[str | None, str | None]:
    return (h.get("start") or h.get("test_start"), h.get("end") or h.get("test_end"))


def _slstm(positions: Sequence[int]) -> str:
    return ",".join(str(int(i)) for i in positions) if positions else "none"


def genome_summary(genome: Mapping[str, Any], sep: str = "<br>") -> str:
    """One line per model plus the shared genes, as the hover label shows them."""
    lines = []
    for label, m in (("A", genome["model_a"]), ("B", genome["model_b"])):
        feats = list(m["features"])
        shown = ", ".join(feats[:4]) + (f", … (+{len(feats) - 4})" if len(feats) > 4 else "")
        lines.append(f"{label}: {m['embedding_dim']}x{m['num_blocks']} h{m['num_heads']} "
                     f"sLSTM@{_slstm(m['slstm_at'])} · {len(feats)} features: {shown}")
    lines.append(f"window {genome['seq_len']}, horizon {genome['horizon']}, "
                 f"{genome['consensus']} > {float(genome['threshold']):.2f}")
    return sep.join(lines)


def _third_objective(records: Sequence[Record], meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """(result key, label) of a third objective present in the results, if any."""
    names = [n for n in meta.get("objectives", ()) if n not in ("sharpe", "max_drawdown")]
    for key in [*names, *THIRD_OBJECTIVES]:
        if any(r.ok and _finite(r.result.get(key)) for r in records):
            return key, THIRD_OBJECTIVES.get(key, key)
    return None


def _equity(returns: np.ndarray) -> np.ndarray:
    return np.cumprod(1.0 + np.asarray(returns, dtype=np.float64))


def _underwater(equity: np.ndarray) -> np.ndarray:
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return equity / peak - 1.0


def span_index(bars: pd.DataFrame | None, start: str | None, end: str | None, n: int):
    """The bars' timestamps from ``start`` to ``end`` (inclusive) when there are exactly ``n``
    of them (the evaluated span), else None."""
    if bars is None or not start or not end:
        return None
    import pandas as pd

    idx = bars.loc[pd.Timestamp(start): pd.Timestamp(end)].index
    return idx if len(idx) == n else None


def buy_and_hold(bars: pd.DataFrame, start: str, end: str) -> tuple[Any, np.ndarray]:
    """(timestamps, per-bar returns) of holding the asset from ``start`` to ``end`` inclusive,
    close to close, no costs; the first return is 0 like the strategy's."""
    import pandas as pd

    close = bars["close"].loc[pd.Timestamp(start): pd.Timestamp(end)]
    values = close.to_numpy(dtype=np.float64)
    returns = np.concatenate([[0.0], values[1:] / values[:-1] - 1.0]) if len(values) else values
    return close.index, returns


# ------------------------------------------------------------------------------------------------
# figures


def pareto_figure(records: Sequence[Record], front: Sequence[Record], meta: Mapping[str, Any]) -> Section:
    import plotly.graph_objects as go

    front_keys = {r.key for r in front}
    ok = [r for r in records if r.ok]
    third = _third_objective(records, meta)
    fig = go.Figure()
    colour_range = None
    if third:
        vals = [float(r.result[third[0]]) for r in ok if _finite(r.result.get(third[0]))]
        colour_range = (min(vals), max(vals))

    def marker(rs: Sequence[Record], base: dict[str, Any], show_scale: bool) -> dict[str, Any]:
        if not third:
            return base
        return {**base, "color": [r.result.get(third[0]) for r in rs], "colorscale": "Viridis",
                "cmin": colour_range[0], "cmax": colour_range[1], "showscale": show_scale,
                "colorbar": {"title": {"text": third[1]}, "x": 1.02}}

    def add(rs: Sequence[Record], name: str, base: dict[str, Any], *, opacity: float, mode: str = "markers",
            show_scale: bool = False, line: dict | None = None) -> None:
        if not rs:
            return
        extra = f"<br>{third[1]}: %{{customdata[4]}}" if third else ""
        fig.add_trace(go.Scatter(
            x=[r.result["max_drawdown"] for r in rs], y=[r.result["sharpe"] for r in rs], name=name,
            mode=mode, opacity=opacity, marker=marker(rs, base, show_scale), line=line,
            customdata=[[r.key, r.generation, r.result["trades"], genome_summary(r.genome),
                         r.result.get(third[0], "–") if third else ""] for r in rs],
            hovertemplate=("<b>%{customdata[0]}</b> (generation %{customdata[1]})<br>"
                           "Sharpe %{y:.2f}, max drawdown %{x:.1%}, %{customdata[2]} trades" + extra +
                           "<br>%{customdata[3]}<extra>" + name + "</extra>"),
        ))

    dominated = [r for r in ok if eligible(r) and r.key not in front_keys]
    too_few = [r for r in ok if not eligible(r)]
    add(too_few, "too few trades (cannot enter the front)",
        {"symbol": "x-thin-open", "size": 8, "color": "#999999", "line": {"width": 1.5}}, opacity=0.35)
    add(dominated, "dominated", {"size": 9, "color": ALL_COLOUR}, opacity=0.45, show_scale=bool(third))
    ordered = sorted(front, key=lambda r: r.result["max_drawdown"])
    add(ordered, "Pareto front", {"size": 14, "color": FRONT_COLOUR, "line": {"width": 2, "color": "black"}},
        opacity=1.0, mode="lines+markers", show_scale=bool(third) and not dominated,
        line={"color": FRONT_COLOUR, "width": 1.5, "dash": "dot"})
    # walk-forward point -> holdout point, for every genome with a holdout result
    with_holdout = [(r, h) for r in ok if (h := holdout_of(r)) is not None and _finite(h.get("max_drawdown"))]
    if with_holdout:
        xs: list[Any] = []
        ys: list[Any] = []
        for r, h in with_holdout:
            xs += [r.result["max_drawdown"], h["max_drawdown"], None]
            ys += [r.result["sharpe"], h["sharpe"], None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="walk-forward → holdout",
                                 line={"color": "orange", "width": 1, "dash": "dash"}, hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=[h["max_drawdown"] for _, h in with_holdout], y=[h["sharpe"] for _, h in with_holdout],
            mode="markers", name="holdout", marker={"symbol": "diamond", "size": 11, "color": "orange",
                                                    "line": {"width": 1, "color": "black"}},
            customdata=[[r.key] for r, _ in with_holdout],
            hovertemplate="<b>%{customdata[0]}</b> holdout<br>Sharpe %{y:.2f}, max drawdown %{x:.1%}"
                          "<extra>holdout</extra>"))
    fig.update_layout(
        xaxis={"title": {"text": f"max drawdown ({WALK_FORWARD}; lower is better)"}, "tickformat": ".0%",
               "rangemode": "tozero"},
        yaxis={"title": {"text": f"Sharpe, annualised ({WALK_FORWARD})"}, "zeroline": True},
        legend={"orientation": "h", "y": -0.18}, margin={"t": 30})
    failed = sum(1 for r in records if not r.ok)
    note = (f"{len(ok)} evaluated genomes ({failed} failed and not shown); {len(front)} on the front "
            "(highlighted, best Sharpe for each drawdown). Hover a point for its id and genome.")
    if third:
        note += f" Colour: {third[1]}, a third objective."
    if with_holdout:
        note += " Orange diamonds: the same genomes on the holdout, linked to their walk-forward points."
    else:
        note += " No holdout results in this run."
    return Section("pareto", "Pareto front: Sharpe vs max drawdown", WALK_FORWARD if not with_holdout
                   else f"{WALK_FORWARD} and {HOLDOUT}", fig, note, height=560)


def equity_figure(front: Sequence[Record], bars: pd.DataFrame | None, bars_note: str,
                  holdout_span: tuple[str, str] | None = None) -> Section:
    """``holdout_span``: run.json's holdout (start, end), shaded even before it has been traded."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.05)
    members = list(front)[:MAX_CURVES]
    notes = []
    if len(front) > MAX_CURVES:
        notes.append(f"the {MAX_CURVES} front members with the highest Sharpe of {len(front)}")
    spans: list[tuple[Any, Any]] = [holdout_span] if holdout_span else []
    bh_done, bh_equity = False, None
    for i, r in enumerate(members):
        colour = PALETTE[i % len(PALETTE)]
        rets = np.asarray(r.result["returns"], dtype=np.float64)
        x = span_index(bars, r.result.get("test_start"), r.result.get("test_end"), len(rets))
        if x is None:
            x = np.arange(len(rets))
        eq = _equity(rets)
        name = f"{r.key[:8]} (Sharpe {r.result['sharpe']:+.2f})"
        fig.add_trace(go.Scatter(x=x, y=eq, name=name, legendgroup=r.key, line={"color": colour, "width": 1.6},
                                 hovertemplate="%{x}<br>equity %{y:.3f}<extra>" + r.key[:8] + "</extra>"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=_underwater(eq), name=name, legendgroup=r.key, showlegend=False,
                                 line={"color": colour, "width": 1},
                                 hovertemplate="%{x}<br>drawdown %{y:.1%}<extra>" + r.key[:8] + "</extra>"),
                      row=2, col=1)
        if not bh_done and bars is not None and not isinstance(x, np.ndarray):
            bx, brets = buy_and_hold(bars, r.result["test_start"], r.result["test_end"])
            beq = _equity(brets)
            fig.add_trace(go.Scatter(x=bx, y=beq, name="buy-and-hold (no costs)", legendgroup="bh",
                                     line={"color": "#444444", "width": 1.2},
                                     hovertemplate="%{x}<br>equity %{y:.3f}<extra>buy-and-hold</extra>"), row=1, col=1)
            fig.add_trace(go.Scatter(x=bx, y=_underwater(beq), name="buy-and-hold", legendgroup="bh",
                                     showlegend=False, line={"color": "#444444", "width": 1},
                                     hovertemplate="%{x}<br>drawdown %{y:.1%}<extra>buy-and-hold</extra>"),
                          row=2, col=1)
            bh_done, bh_equity = True, beq
        h = holdout_of(r)
        if h is not None:
            start, end = _span(h)
            hrets = h.get("returns")
            if start and end:
                spans.append((start, end))
            if isinstance(hrets, list) and hrets:
                hx = span_index(bars, start, end, len(hrets))
                if hx is None:
                    hx = np.arange(len(rets), len(rets) + len(hrets)) if isinstance(x, np.ndarray) else None
                if hx is not None:
                    heq = eq[-1] * _equity(hrets)
                    fig.add_trace(go.Scatter(x=hx, y=heq, name=f"{r.key[:8]} holdout", legendgroup=r.key,
                                             showlegend=False, line={"color": colour, "width": 1.6, "dash": "dot"},
                                             hovertemplate="%{x}<br>equity %{y:.3f}<extra>holdout</extra>"),
                                  row=1, col=1)
                    # drawdown below the running peak of the walk-forward and holdout equity together
                    hdd = _underwater(np.concatenate([eq, heq]))[len(eq):]
                    fig.add_trace(go.Scatter(x=hx, y=hdd,
                                             showlegend=False, legendgroup=r.key,
                                             line={"color": colour, "width": 1, "dash": "dot"},
                                             hovertemplate="%{x}<br>drawdown %{y:.1%}<extra>holdout</extra>"),
                                  row=2, col=1)
    if spans and bars is not None:
        start, end = min(s for s, _ in spans), max(e for _, e in spans)
        bx, brets = buy_and_hold(bars, start, end)
        if len(bx):   # continues the walk-forward buy-and-hold curve, as the members' curves do
            base = bh_equity if bh_equity is not None else np.ones(1)
            heq = base[-1] * _equity(brets)
            style = {"color": "#444444", "width": 1.2, "dash": "dot"}
            fig.add_trace(go.Scatter(x=bx, y=heq, name="buy-and-hold, holdout", legendgroup="bh", showlegend=False,
                                     line=style, hovertemplate="%{x}<br>equity %{y:.3f}<extra>buy-and-hold</extra>"),
                          row=1, col=1)
            fig.add_trace(go.Scatter(x=bx, y=_underwater(np.concatenate([base, heq]))[len(base):], legendgroup="bh",
                                     showlegend=False, line={**style, "width": 1},
                                     hovertemplate="%{x}<br>drawdown %{y:.1%}<extra>buy-and-hold</extra>"),
                          row=2, col=1)
        fig.add_vrect(x0=start, x1=end, fillcolor=HOLDOUT_FILL, line_width=0, row=1, col=1,
                      annotation_text="holdout", annotation_position="top left")
        fig.add_vrect(x0=start, x1=end, fillcolor=HOLDOUT_FILL, line_width=0, row=2, col=1)
    fig.update_yaxes(title_text="equity (start = 1)", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", tickformat=".0%", row=2, col=1)
    fig.update_layout(legend={"orientation": "h", "y": -0.15}, margin={"t": 30}, hovermode="x unified")
    if not members:
        fig.add_annotation(text="no genome traded enough to enter the front yet", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5)
    if bars is None:
        notes.append(f"no buy-and-hold line: {bars_note or 'the bars could not be loaded'}; x is the bar number")
    elif members and not bh_done:
        notes.append("no buy-and-hold line: the bars no longer match the evaluated span")
    note = ("Equity (cumulative product of 1 + per-bar returns, after fees and slippage) and drawdown "
            "below the running peak of the front members over the concatenated test folds, beside "
            "buy-and-hold of the same bars (close to close, no costs).")
    if spans:
        note += " Shaded: the holdout; dotted lines continue each member there once it has been traded."
    if notes:
        note += " Shown: " + "; ".join(notes) + "."
    return Section("equity", "Equity and drawdown of the front vs buy-and-hold",
                   WALK_FORWARD if not spans else f"{WALK_FORWARD}; {HOLDOUT} shaded", fig, note, height=620)


def _generation_labels(generations: Sequence[int], done: int) -> list[str]:
    return [f"gen {g}" + (" (in progress)" if g > done else "") for g in generations]


def feature_heatmap(records: Sequence[Record], front: Sequence[Record], model: str, done: int) -> Section:
    """Share of the genomes evaluated in each generation whose ``model`` uses each feature, and
    the same share over the front (last column)."""
    import plotly.graph_objects as go

    label = {"model_a": "A (patterns)", "model_b": "B (indicators)"}[model]
    gens = sorted({r.generation for r in records})
    by_gen = {g: [r for r in records if r.generation == g] for g in gens}
    counts: dict[str, int] = {}
    for r in records:
        for f in r.genome[model]["features"]:
            counts[f] = counts.get(f, 0) + 1
    feats = sorted(counts, key=lambda f: (-counts[f], f))
    cut = len(feats) > MAX_HEATMAP_ROWS
    feats = feats[:MAX_HEATMAP_ROWS]
    columns = [*by_gen.values(), list(front)]
    xlabels = [*_generation_labels(gens, done), "front"]
    z, text = [], []
    for f in feats:
        row, trow = [], []
        for rs in columns:
            n = sum(1 for r in rs if f in r.genome[model]["features"])
            row.append(n / len(rs) if rs else None)
            trow.append(f"{n} of {len(rs)}")
        z.append(row)
        text.append(trow)
    fig = go.Figure(go.Heatmap(
        z=z, x=xlabels, y=feats, text=text, colorscale="Blues", zmin=0, zmax=1, xgap=2, ygap=1,
        texttemplate="%{z:.0%}" if len(feats) * len(columns) <= 600 else None, textfont={"size": 10},
        colorbar={"title": {"text": "share"}, "tickformat": ".0%"},
        hovertemplate="%{y}, %{x}: %{z:.0%} (%{text} genomes)<extra></extra>"))
    fig.update_layout(yaxis={"autorange": "reversed", "type": "category"}, xaxis={"type": "category", "side": "top"},
                      margin={"t": 60, "l": 170})
    note = (f"How often model {label[0]}'s inputs were chosen: share of the genomes evaluated in each "
            "generation (generation 0 is the random population, later ones the offspring) and of the front.")
    if cut:
        note += f" The {MAX_HEATMAP_ROWS} most often chosen of {len(counts)} features."
    return Section(f"features_{model[-1]}", f"Features chosen per generation: model {label}", WALK_FORWARD,
                   fig, note + " The front is judged " + WALK_FORWARD + ".", height=max(320, 21 * len(feats) + 160))


TOPOLOGY_GENES = (
    ("model_a", "embedding_dim", "A embedding"), ("model_a", "num_blocks", "A blocks"),
    ("model_a", "num_heads", "A heads"), ("model_a", "slstm_at", "A sLSTM at"),
    ("model_b", "embedding_dim", "B embedding"), ("model_b", "num_blocks", "B blocks"),
    ("model_b", "num_heads", "B heads"), ("model_b", "slstm_at", "B sLSTM at"),
    (None, "seq_len", "window (bars)"), (None, "horizon", "horizon (bars)"), (None, "consensus", "consensus"),
)


def _gene(genome: Mapping[str, Any], model: str | None, name: str) -> str:
    value = genome[model][name] if model else genome[name]
    return _slstm(value) if name == "slstm_at" else str(value)


def _category_order(values: set[str]) -> list[str]:
    def key(v: str):
        try:
            return (0, float(v.split(",")[0]), len(v), v)
        except ValueError:
            return (1 if v != "none" else -1, 0.0, 0, v)

    return sorted(values, key=key)


def topology_figure(records: Sequence[Record], front: Sequence[Record]) -> Section:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=3, cols=4, subplot_titles=[t for _, _, t in TOPOLOGY_GENES] + [""],
                        vertical_spacing=0.13, horizontal_spacing=0.06)
    for i, (model, name, title) in enumerate(TOPOLOGY_GENES):
        row, col = i // 4 + 1, i % 4 + 1
        all_vals = [_gene(r.genome, model, name) for r in records]
        front_vals = [_gene(r.genome, model, name) for r in front]
        cats = _category_order(set(all_vals) | set(front_vals))
        for vals, label, colour in ((all_vals, "all evaluated", ALL_COLOUR), (front_vals, "front", FRONT_COLOUR)):
            if not vals:
                continue
            n = [vals.count(c) for c in cats]
            fig.add_trace(go.Bar(x=cats, y=[k / len(vals) for k in n], name=label, legendgroup=label,
                                 showlegend=i == 0, marker_color=colour, customdata=n,
                                 hovertemplate=f"{title} %{{x}}: %{{y:.0%}} of {label} (%{{customdata}})"
                                               f"<extra></extra>"),
                          row=row, col=col)
        fig.update_xaxes(type="category", row=row, col=col)
        fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=row, col=col)
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.08}, margin={"t": 40})
    note = (f"Share of all {len(records)} evaluated genomes (grey) and of the {len(front)} front members (blue) "
            "with each value: which topology the front prefers. sLSTM at: the block positions that are sLSTM "
            "(the rest are mLSTM). The front is judged " + WALK_FORWARD + ".")
    return Section("topology", "Topology: the front vs everything evaluated", WALK_FORWARD, fig, note, height=720)


def convergence_figure(records: Sequence[Record], done: int) -> Section:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    gens = sorted({r.generation for r in records})
    ok = [r for r in records if eligible(r)]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["hypervolume of the front so far", "best Sharpe"])
    ref = None
    if ok:
        ref = (-(min(r.result["sharpe"] for r in ok) - REFERENCE_EPSILON), REFERENCE_DRAWDOWN)
        hv, best, best_gen = [], [], []
        for g in gens:
            upto = [r for r in ok if r.generation <= g]
            pts = [(-r.result["sharpe"], r.result["max_drawdown"]) for r in upto]
            hv.append(hypervolume_2d(pts, ref))
            best.append(max((r.result["sharpe"] for r in upto), default=None))
            best_gen.append(max((r.result["sharpe"] for r in upto if r.generation == g), default=None))
        labels = _generation_labels(gens, done)
        fig.add_trace(go.Scatter(x=gens, y=hv, mode="lines+markers", name="hypervolume", customdata=labels,
                                 line={"color": FRONT_COLOUR}, hovertemplate="%{customdata}: %{y:.4f}<extra></extra>"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=gens, y=best, mode="lines+markers", name="best Sharpe so far", customdata=labels,
                                 line={"color": "#2ca02c"}, hovertemplate="%{customdata}: %{y:.2f}<extra></extra>"),
                      row=2, col=1)
        fig.add_trace(go.Scatter(x=gens, y=best_gen, mode="markers", name="best Sharpe of the generation",
                                 customdata=labels, marker={"color": "#2ca02c", "symbol": "circle-open", "size": 10},
                                 hovertemplate="%{customdata}: %{y:.2f}<extra></extra>"), row=2, col=1)
        fig.update_xaxes(tickvals=gens, ticktext=labels, row=2, col=1)
    else:
        fig.add_annotation(text="no genome with enough trades yet", showarrow=False, xref="paper", yref="paper",
                           x=0.5, y=0.5)
    fig.update_yaxes(title_text="Sharpe × drawdown", row=1, col=1)
    fig.update_yaxes(title_text="Sharpe", row=2, col=1)
    fig.update_xaxes(title_text="generation", row=2, col=1)
    fig.update_layout(legend={"orientation": "h", "y": -0.15}, margin={"t": 40})
    note = ("Hypervolume: the area of (Sharpe, drawdown) space the front found up to each generation dominates, "
            f"measured from the reference point Sharpe = lowest Sharpe in the run − {REFERENCE_EPSILON}, "
            f"drawdown = {REFERENCE_DRAWDOWN:.0%} (exact 2-D sweep; higher is better)")
    if ref is not None:
        note += f"; here Sharpe {-ref[0]:+.2f}"
    note += ". Only genomes with enough trades count. Generations after the last checkpoint are in progress."
    return Section("convergence", "Convergence per generation", WALK_FORWARD, fig, note, height=560)


def lr_scatter_figure(records: Sequence[Record], note: str) -> Section:
    import plotly.graph_objects as go

    ok = [r for r in records if r.ok and _finite(r.result.get("lr_a")) and _finite(r.result.get("lr_b"))]
    fig = go.Figure()
    for key, label, colour, symbol in (("lr_a", "model A", "#1f77b4", "circle"),
                                       ("lr_b", "model B", "#d62728", "diamond")):
        fig.add_trace(go.Scatter(
            x=[r.result[key] for r in ok], y=[r.result["sharpe"] for r in ok], mode="markers", name=label,
            marker={"color": colour, "symbol": symbol, "size": 9, "opacity": 0.7},
            customdata=[[r.key, r.generation] for r in ok],
            hovertemplate="<b>%{customdata[0]}</b> (generation %{customdata[1]})<br>lr %{x:.2e}, Sharpe %{y:.2f}"
                          f"<extra>{label}</extra>"))
    fig.update_layout(xaxis={"type": "log", "title": {"text": "learning rate (picked on fold 0's validation loss)"},
                             "exponentformat": "e"},
                      yaxis={"title": {"text": f"Sharpe ({WALK_FORWARD})"}},
                      legend={"orientation": "h", "y": -0.2}, margin={"t": 30})
    return Section("learning_rate", "Learning rates vs Sharpe", WALK_FORWARD, fig, note, height=460)


def optuna_sections(studies: Sequence[Any], front: Sequence[Record]) -> list[Section]:
    """Optuna's own plots of the learning-rate studies (front members' studies first)."""
    from optuna.trial import TrialState
    from optuna.visualization import plot_optimization_history, plot_param_importances

    front_keys = [r.key for r in front]

    def rank(s: Any) -> tuple[int, str]:
        return (0 if any(k in s.study_name for k in front_keys) else 1, s.study_name)

    done = [s for s in studies if any(t.state == TrialState.COMPLETE for t in s.trials)]
    chosen = sorted(done, key=rank)[:MAX_STUDIES]
    if not chosen:
        raise ValueError("no Optuna study has a completed trial")
    out = []
    history = plot_optimization_history(chosen if len(chosen) > 1 else chosen[0])
    history.update_layout(title=None, margin={"t": 30})
    out.append(Section("lr_history", "Learning-rate studies: optimisation history", IN_SAMPLE,
                       history, f"Optuna's plot of {len(chosen)} of {len(studies)} studies (front members' first). "
                       "The objective is fold 0's validation loss: in-sample, the data the learning rate was "
                       "tuned on (it lies before every test fold).", height=480))
    biggest = max(chosen, key=lambda s: len(s.trials))
    try:
        importance = plot_param_importances(biggest)
        importance.update_layout(title=None, margin={"t": 30, "l": 80})
        importance.update_yaxes(automargin=True)
        out.append(Section("lr_importance", "Learning-rate studies: parameter importances",
                           IN_SAMPLE, importance,
                           f"Optuna's parameter importances of study {biggest.study_name!r} "
                           f"({len(biggest.trials)} trials).", height=380))
    except Exception as exc:  # noqa: BLE001 - a study too small for importances still has its history
        out[0] = Section(**{**out[0].__dict__, "note": out[0].note + f" (No importances: {exc}.)"})
    return out


# ------------------------------------------------------------------------------------------------
# the honesty table


def _num(x: Any, fmt: str) -> str:
    if not _finite(x):
        return "–"
    return format(float(x), fmt)


def _tag(sample: str) -> str:
    cls = {WALK_FORWARD: "wf", HOLDOUT: "ho", IN_SAMPLE: "is"}.get(sample, "wf")
    return f'<span class="tag {cls}">{html.escape(sample)}</span>'


def _tags(sample: str) -> str:
    """A tag for every sample label named in ``sample`` ("walk-forward out-of-sample; holdout shaded")."""
    found = [label for label in (WALK_FORWARD, HOLDOUT, IN_SAMPLE) if label in sample]
    return " ".join(_tag(label) for label in found) if found else html.escape(sample)


def honesty_table(payload: Mapping[str, Any] | None, records: Mapping[str, Record], front: Sequence[Record],
                  bh: Mapping[str, float] | None, payload_error: str = "") -> str:
    """HTML: the front members' figures and the run's selection-bias figures, each labelled."""
    wf, ho = _tag(WALK_FORWARD), _tag(HOLDOUT)
    dsr = {m["id"]: m["dsr"] for m in (payload or {}).get("members", [])}
    has_holdout = any(holdout_of(r) for r in front)
    has_val = any(_finite(r.result.get("val_sharpe")) for r in front)
    head = ["member", "gen", f"Sharpe {wf}", f"deflated Sharpe (DSR) {wf}", f"max drawdown {wf}",
            f"total return {wf}", f"trades {wf}"]
    if has_val:
        head.append(f"validation Sharpe (risk settings tuned on it) {_tag(IN_SAMPLE)}")
    if has_holdout:
        head += [f"Sharpe {ho}", f"max drawdown {ho}", f"total return {ho}"]
    rows = []
    for r in front:
        res, h = r.result, holdout_of(r) or {}
        cells = [f"<code>{r.key}</code>", str(r.generation), _num(res["sharpe"], "+.2f"), _num(dsr.get(r.key), ".2f"),
                 _num(res["max_drawdown"], ".1%"), _num(res.get("total_return"), "+.1%"), str(res.get("trades", "–"))]
        if has_val:
            cells.append(_num(res.get("val_sharpe"), "+.2f"))
        if has_holdout:
            cells += [_num(h.get("sharpe"), "+.2f"), _num(h.get("max_drawdown"), ".1%"),
                      _num(h.get("total_return"), "+.1%")]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not rows:
        rows.append(f'<tr><td colspan="{len(head)}">no genome traded enough to enter the front yet</td></tr>')
    members = ("<table class=\"honesty\"><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"
               + "".join(rows) + "</tbody></table>")

    facts: list[tuple[str, str, str]] = []   # (what, value, sample)
    if payload is not None:
        pbo = payload.get("pbo")
        facts.append(("trials (distinct genomes evaluated; what DSR and PBO correct for)", str(payload["trials"]),
                      WALK_FORWARD))
        facts.append(("probability of backtest overfitting (PBO; 0.5 is what noise gives)",
                      "n/a (too few trials or bars)" if pbo is None else f"{pbo:.2f}", WALK_FORWARD))
        facts.append(("genomes with too few trades", str(payload.get("too_few_trades", 0)), WALK_FORWARD))
    else:
        facts.append(("selection-bias figures", f"not computed: {payload_error}", WALK_FORWARD))
    if bh is not None:
        facts.append(("buy-and-hold Sharpe, same span (no costs)", _num(bh["sharpe"], "+.2f"), WALK_FORWARD))
        facts.append(("buy-and-hold max drawdown, same span", _num(bh["max_drawdown"], ".1%"), WALK_FORWARD))
        facts.append(("buy-and-hold total return, same span", _num(bh["total_return"], "+.1%"), WALK_FORWARD))
    for name, b in _baselines((payload or {}).get("baselines")):
        for k, fmt in (("sharpe", "+.2f"), ("max_drawdown", ".1%"), ("total_return", "+.1%")):
            for key, sample in ((k, WALK_FORWARD), (f"holdout_{k}", HOLDOUT)):
                if _finite(b.get(key)):
                    facts.append((f"baseline {name.replace('_', ' ')}: {k.replace('_', ' ')}", _num(b[key], fmt),
                                  sample))
    failures: dict[str, int] = {}
    for r in records.values():
        if not r.ok:
            cause = (r.error or "unknown").split(":")[0]
            failures[cause] = failures.get(cause, 0) + 1
    facts.append(("failed evaluations", str(sum(failures.values())), WALK_FORWARD))
    for cause, n in sorted(failures.items(), key=lambda kv: -kv[1]):
        facts.append((f"failed: {cause}", str(n), WALK_FORWARD))
    run_rows = "".join(f"<tr><td>{html.escape(w)}</td><td>{html.escape(v)}</td><td>{_tag(s)}</td></tr>"
                       for w, v, s in facts)
    run_table = ("<table class=\"honesty\"><thead><tr><th>run</th><th>value</th><th>sample</th></tr></thead>"
                 f"<tbody>{run_rows}</tbody></table>")
    return members + run_table


def _try_baselines(records: Mapping[str, Record], meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """evo.front's baselines on their own, when front_payload as a whole cannot read the journal."""
    import evo.front

    try:
        return list(getattr(evo.front, "baselines", lambda *a: [])(records, meta))
    except Exception as exc:  # noqa: BLE001 - baselines are extra; the table goes on without them
        log.warning("no baselines: %s: %s", type(exc).__name__, exc)
        return []


def _baselines(raw: Any) -> list[tuple[str, dict[str, Any]]]:
    """Baselines from the front payload, as a dict name -> figures or a list of dicts with "name"."""
    if isinstance(raw, Mapping):
        return [(str(k), dict(v)) for k, v in raw.items() if isinstance(v, Mapping)]
    if isinstance(raw, list):
        return [(str(b.get("name", i)), dict(b)) for i, b in enumerate(raw) if isinstance(b, Mapping)]
    return []


# ------------------------------------------------------------------------------------------------
# assembling


def build_report(records: Mapping[str, Record], meta: Mapping[str, Any], *, run: str,
                 checkpoint: Mapping[str, Any] | None = None, bars: pd.DataFrame | None = None,
                 bars_note: str = "", studies: Sequence[Any] | None = None, studies_note: str = "") -> Report:
    """Every figure of the report. ``records`` as :meth:`evo.store.RunStore.records` gives them,
    ``meta`` is ``run.json``, ``bars`` the run's bars (None: no buy-and-hold, x is the bar number;
    ``bars_note`` says why), ``studies`` loaded Optuna studies (None: a scatter from the journal)."""
    from evo.front import front_payload, selection_bias

    recs = list(records.values())
    front = pareto_front(recs)
    done = int(checkpoint["generation"]) if checkpoint else -1
    asked = int(meta.get("generations", 0))
    last = max((r.generation for r in recs), default=-1)
    status = "finished" if checkpoint is not None and done >= asked else (
        f"in progress: generation {max(last, done + 1)} of {asked} running; "
        + (f"last checkpoint after generation {done}" if checkpoint else "no checkpoint yet"))

    payload, payload_error = None, ""
    try:
        payload = front_payload(records, meta, run)
    except Exception as exc:  # noqa: BLE001 - a journal evo.front cannot read still gets its figures
        log.warning("evo.front cannot read this journal (%s: %s); computing DSR and PBO directly",
                    type(exc).__name__, exc)
        try:
            dsr, pbo, trials = selection_bias(recs)
            payload = {"members": [{"id": k, "dsr": v} for k, v in dsr.items()], "pbo": pbo, "trials": trials,
                       "too_few_trades": sum(1 for r in recs if r.ok and not eligible(r))}
            payload["baselines"] = _try_baselines(records, meta)
        except Exception as exc2:  # noqa: BLE001 - e.g. genomes scored on test spans of different lengths
            payload_error = f"{type(exc2).__name__}: {exc2}"

    bh = None
    if bars is not None and front:
        start, end = front[0].result["test_start"], front[0].result["test_end"]
        idx, brets = buy_and_hold(bars, start, end)
        if len(brets) == len(front[0].result["returns"]):
            from backtest.metrics import max_drawdown, periods_per_year, sharpe_ratio, total_return

            bh = {"sharpe": sharpe_ratio(brets, periods_per_year(bars.index)), "max_drawdown": max_drawdown(brets),
                  "total_return": total_return(brets)}

    held = meta.get("holdout")
    holdout_span = (held["start"], held["end"]) if isinstance(held, Mapping) and held.get("start") else None
    sections = [pareto_figure(recs, front, meta), equity_figure(front, bars, bars_note, holdout_span)]
    if recs:
        sections += [feature_heatmap(recs, front, "model_a", done), feature_heatmap(recs, front, "model_b", done),
                     topology_figure(recs, front)]
    sections.append(convergence_figure(recs, done))
    lr_note = ""
    if studies:
        try:
            sections += optuna_sections(studies, front)
        except Exception as exc:  # noqa: BLE001 - a study we cannot plot must not stop the report
            lr_note = f"The Optuna studies could not be plotted ({exc}); "
    else:
        lr_note = (studies_note or "No Optuna storage (studies.db) in the run directory") + "; "
    if not studies or lr_note:
        sections.append(lr_scatter_figure(recs, lr_note + "instead, each genome's two learning rates (picked by "
                                          "its Optuna study on fold 0's validation loss) against its Sharpe."))

    failed = sum(1 for r in recs if not r.ok)
    span = f"{front[0].result['test_start'][:10]} .. {front[0].result['test_end'][:10]}" if front else "–"
    facts = (
        ("run", run), ("data", str(meta.get("data_label", meta.get("data")))),
        ("budget", str(meta.get("budget", {}).get("name", "?"))), ("seed", str(meta.get("seed", "?"))),
        ("generations", f"{done + 1 if checkpoint else 0} of {asked + 1} done (0..{asked})"),
        ("evaluated", f"{len(recs)} genomes, {failed} failed, {len(front)} on the front"),
        (f"test span ({WALK_FORWARD})", span),
        *([(f"{HOLDOUT} span", f"{holdout_span[0][:10]} .. {holdout_span[1][:10]}")] if holdout_span else []),
        ("started", str(meta.get("created", "?"))),
    )
    return Report(title=f"evo report: {run}", facts=facts, status=status, sections=tuple(sections),
                  table_html=honesty_table(payload, records, front, bh, payload_error))


CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 1280px; padding: 16px 28px; color: #1d2330; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 28px 0 4px; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 13px; }
.facts dt { color: #5a6372; } .facts dd { margin: 0; }
.status { display: inline-block; padding: 2px 8px; border-radius: 4px; font-size: 13px; }
.status.finished { background: #e3f3e6; } .status.running { background: #fff1cc; }
.note { font-size: 13px; color: #454e5d; margin: 2px 0 6px; max-width: 1100px; }
.warn { background: #fff1cc; border-left: 4px solid #e0a800; padding: 6px 10px; font-size: 13px; }
table.honesty { border-collapse: collapse; font-size: 13px; margin: 8px 0 14px; }
table.honesty th, table.honesty td { border: 1px solid #d5d9e0; padding: 3px 8px; text-align: right; }
table.honesty td:first-child, table.honesty th:first-child { text-align: left; }
.tag { display: inline-block; font-size: 10px; padding: 0 5px; border-radius: 3px; white-space: nowrap;
       font-weight: normal; }
.tag.wf { background: #dbe7fb; } .tag.ho { background: #ffe3bf; } .tag.is { background: #f6d5d5; }
.figure { border: 1px solid #eceef2; border-radius: 6px; padding: 4px; }
.sample { font-size: 12px; color: #5a6372; }
"""


def render_html(report: Report, *, png_note: str = "", png_files: Sequence[str] = ()) -> str:
    """One self-contained HTML page: plotly.js embedded once in the head, one div per figure."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    esc = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(report.title)}</title>", f"<style>{CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>', "</head><body>",
        f"<h1>{esc(report.title)}</h1>",
        f'<p><span class="status {"running" if report.in_progress else "finished"}">{esc(report.status)}</span></p>',
        '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in report.facts) + "</dl>",
        '<p class="note">Every number is labelled with its sample: '
        f"{_tag(WALK_FORWARD)} the concatenated test folds the search selected on (after fees and slippage), "
        f"{_tag(HOLDOUT)} bars the search never scored, {_tag(IN_SAMPLE)} data a choice was fitted or tuned on "
        "(training rows, validation segments).</p>",
    ]
    if png_note:
        parts.append(f'<p class="warn">{esc(png_note)}</p>')
    elif png_files:
        links = ", ".join(f'<a href="{esc(p)}">{esc(p)}</a>' for p in png_files)
        parts.append(f'<p class="note">PNG copies of the figures: {links}</p>')
    for note in report.notes:
        parts.append(f'<p class="warn">{esc(note)}</p>')
    parts += ['<h2 id="honesty">Honesty table</h2>',
              '<p class="note">The front members\' figures and what the search did to find them. DSR: the '
              'probability that the Sharpe beats the best of that many lucky tries (below 0.95: no evidence of '
              'skill). PBO: how often the in-sample best of the trials ranks below the median out of sample.</p>',
              report.table_html]
    config = {"displaylogo": False, "responsive": True}
    for s in report.sections:
        div = pio.to_html(s.figure, full_html=False, include_plotlyjs=False, include_mathjax=False,
                          div_id=f"fig-{s.name}", config=config, default_width="100%",
                          default_height=f"{s.height}px")
        parts += [f'<h2 id="{esc(s.name)}">{esc(s.title)} <span class="sample">{_tags(s.sample)}</span></h2>',
                  f'<p class="note">{esc(s.note)}</p>', f'<div class="figure">{div}</div>']
    parts.append("</body></html>")
    return "\n".join(parts)
