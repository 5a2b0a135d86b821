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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from evo.reporting.figures import (  # noqa: F401 - the figures are part of the report's API
    HOLDOUT,
    IN_SAMPLE,
    WALK_FORWARD,
    Section,
    _finite,
    buy_and_hold,
    convergence_figure,
    eligible,
    equity_figure,
    feature_heatmap,
    genome_summary,
    holdout_of,
    lr_scatter_figure,
    optuna_sections,
    pareto_figure,
    topology_figure,
)
from evo.search.objectives import hypervolume_2d, pareto_front  # noqa: F401 - re-exported
from evo.search.records import Record

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


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


# ------------------------------------------------------------------------------------------------
# figures


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
    """HTML: the front members' figures and the run's selection-bias figures, each labelled. A member
    that never traded in the holdout reads "no trades" there."""
    from evo.reporting.front import holdout_traded

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
        if has_holdout and holdout_traded(h) is False:   # no position in the holdout: no figure, not 0.00
            cells += ['<span class="no-trades">no trades</span>', "–", "–"]
        elif has_holdout:
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
        facts.append(("trials (genomes evaluated + low-fidelity screens: everything judged on the test span)",
                      str(payload["trials"]), WALK_FORWARD))
        facts.append(("trials that never traded (left out of DSR and PBO)", str(payload.get("no_trade", 0)),
                      WALK_FORWARD))
        facts.append(("trials DSR's expected maximum counts (the trading ones)",
                      payload.get("dsr_note") or str(payload.get("dsr_trials", payload["trials"])), WALK_FORWARD))
        facts.append(("probability of backtest overfitting (PBO; 0.5 is what noise gives)",
                      (payload.get("pbo_note") or "n/a (too few trials or bars)") if pbo is None
                      else f"{pbo:.2f} over {payload.get('pbo_trials', payload['trials'])} trading trials",
                      WALK_FORWARD))
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
    """evo.reporting.front's baselines on their own, when front_payload as a whole cannot read the journal."""
    import evo.reporting.front

    try:
        return list(getattr(evo.reporting.front, "baselines", lambda *a: [])(records, meta))
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
                 bars_note: str = "", studies: Sequence[Any] | None = None, studies_note: str = "",
                 screens: Sequence[Record] = (), rescored: Mapping[str, Mapping[str, Any]] | None = None) -> Report:
    """Every figure of the report. ``records`` as :meth:`evo.search.store.RunStore.records` gives them,
    ``screens`` the run's low-fidelity screens (:func:`evo.reporting.front.latest_screens`; trials too),
    ``meta`` is ``run.json``, ``bars`` the run's bars (None: no buy-and-hold, x is the bar number;
    ``bars_note`` says why), ``studies`` loaded Optuna studies (None: a scatter from the journal)."""
    from evo.reporting.front import front_payload, selection_bias

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
        payload = front_payload(records, meta, run, screens=screens, rescored=rescored)
    except Exception as exc:  # noqa: BLE001 - a journal evo.reporting.front cannot read still gets its figures
        log.warning("evo.reporting.front cannot read this journal (%s: %s); computing DSR and PBO directly",
                    type(exc).__name__, exc)
        try:
            bias = selection_bias(recs, screens)
            payload = {"members": [{"id": k, "dsr": v} for k, v in bias.dsr.items()], "pbo": bias.pbo,
                       "trials": bias.trials, "no_trade": bias.no_trade, "dsr_trials": bias.dsr_trials,
                       "pbo_trials": bias.pbo_trials, "dsr_note": bias.dsr_note, "pbo_note": bias.pbo_note,
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
    sections = [pareto_figure(recs, front, meta, rescored), equity_figure(front, bars, bars_note, holdout_span)]
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
.no-trades { color: #a15c00; font-style: italic; }
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
              'skill). PBO: how often the in-sample best of the trials ranks below the median out of sample. Trials '
              'that never traded are left out of both; with fewer than two trading trials neither is meaningful.</p>',
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
