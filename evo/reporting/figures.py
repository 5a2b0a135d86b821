"""The report's plotly figures, one :class:`Section` each (pure: records in, figures out); every
note says which sample its numbers come from (see :mod:`evo.reporting.report`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from evo.search.objectives import hypervolume_2d, pareto_front  # noqa: F401 - re-exported
from evo.search.records import Record

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


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


def eligible(record: Record) -> bool:
    """Evaluated successfully with enough trades: may enter the front (as in evo.search.ga)."""
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
    # the gene, not the traded threshold (tuned per fold; a quantile level under threshold_mode "quantile")
    lines.append(f"window {genome['seq_len']}, horizon {genome['horizon']}, "
                 f"{genome['consensus']} rule, threshold gene {float(genome['threshold']):.2f}")
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


def pareto_figure(records: Sequence[Record], front: Sequence[Record], meta: Mapping[str, Any],
                  rescored: Mapping[str, Mapping[str, Any]] | None = None) -> Section:
    """The search's scores of every genome, its front, and where shown the front re-scored with
    fresh seeds (``rescored``: :func:`evo.search.records.rescored`) and the holdout."""
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
    # search score -> re-scored with fresh seeds, for every front member re-scored (ga.rescore)
    again = [(r, rescored[r.key]) for r in front if rescored and r.key in rescored]
    if again:
        xs, ys = [], []
        for r, s in again:
            xs += [r.result["max_drawdown"], s["max_drawdown"], None]
            ys += [r.result["sharpe"], s["sharpe"], None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="search score → re-scored",
                                 line={"color": "#2ca02c", "width": 1, "dash": "dot"}, hoverinfo="skip"))
        fig.add_trace(go.Scatter(
            x=[s["max_drawdown"] for _, s in again], y=[s["sharpe"] for _, s in again], mode="markers",
            name="re-scored (fresh seeds)", marker={"symbol": "circle-open", "size": 12, "color": "#2ca02c",
                                                    "line": {"width": 2}},
            customdata=[[r.key, s["seeds"]] for r, s in again],
            hovertemplate="<b>%{customdata[0]}</b> re-scored with %{customdata[1]} fresh seeds<br>"
                          "Sharpe %{y:.2f}, max drawdown %{x:.1%}<extra>re-scored</extra>"))
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
    if again:
        note += (" Green rings: the front re-scored with fresh training seeds the search never used (the same "
                 "walk-forward test span), linked to the search's scores: how much of a score was luck.")
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


def ledger_figure(index, ledger_equity: np.ndarray, backtest_equity: np.ndarray, *, title: str = "") -> go.Figure:
    """A paper ledger's equity beside the backtest's over the same bars (``evo live --reconcile
    --plot``): two lines on ``index`` (the live bars' times), account values starting from 1.0
    (float64 ``(N,)`` each; NaN where the ledger has no value), and their difference below."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.05)
    fig.add_trace(go.Scatter(x=index, y=backtest_equity, name="backtest (vectorbt)", line=dict(width=4)), 1, 1)
    fig.add_trace(go.Scatter(x=index, y=ledger_equity, name="paper ledger (live)", line=dict(dash="dot")), 1, 1)
    fig.add_trace(go.Scatter(x=index, y=np.asarray(ledger_equity) - np.asarray(backtest_equity),
                             name="ledger - backtest", showlegend=False), 2, 1)
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="difference", row=2, col=1)
    fig.update_layout(title=title or "paper ledger vs backtest", height=560, template="plotly_white")
    return fig
