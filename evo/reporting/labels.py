"""A genome in words a trader reads, and in a short form for one table cell (pure: genes in, text out).

``16×2 ms`` (short) is ``16 wide × 2 blocks (mLSTM, sLSTM)`` (words): the embedding width, the
number of xLSTM blocks, and each block's kind in order (``m`` = mLSTM, ``s`` = sLSTM). The consensus
rule follows ``backtest.consensus``: ``either model p(up) > 0.37`` opens a long position when at
least one model gives the up class more than 0.37 and neither gives the down class more than 0.37.
"""

from __future__ import annotations

from typing import Any, Mapping

from evo.genome import Genome, ModelGenes

#: Under the front table: what the short forms and the accuracy column mean.
LEGEND = ("model A · B: A reads candlestick patterns, B indicators; 16×2 ms = 16 wide, 2 blocks, in order "
          "m = mLSTM, s = sLSTM. acc A/B: each model's direction "
          "accuracy on the test folds; three classes (down, flat, up), so chance is 1/3 (0.33)")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def block_kinds(genes: ModelGenes) -> list[str]:
    """Each block's kind in order: ``["mLSTM", "sLSTM"]``."""
    return ["sLSTM" if i in genes.slstm_at else "mLSTM" for i in range(genes.num_blocks)]


def model_short(genes: ModelGenes, *, heads: bool = False) -> str:
    """``16×2 ms`` (with ``heads``: ``16×2 ms h2``)."""
    kinds = "".join(k[0] for k in block_kinds(genes))
    text = f"{genes.embedding_dim}×{genes.num_blocks} {kinds}"
    return f"{text} h{genes.num_heads}" if heads else text


def model_words(genes: ModelGenes) -> str:
    """``16 wide × 2 blocks (mLSTM, sLSTM), 2 heads, 5 features`` (and any non-default gene)."""
    parts = [f"{genes.embedding_dim} wide × {_plural(genes.num_blocks, 'block')} "
             f"({', '.join(block_kinds(genes))})", _plural(genes.num_heads, "head"),
             _plural(len(genes.features), "feature")]
    if genes.proj_factor != 2.0:
        parts.append(f"mLSTM up-projection ×{genes.proj_factor:g}")
    if len(genes.timeframes) > 1:
        parts.append(f"reads {'/'.join(f'{m}×' for m in genes.timeframes)} bars ({genes.fusion} fusion)")
    if genes.regime == "features":
        parts.append("with volatility/trend regime inputs")
    elif genes.regime == "gate":
        parts.append("threshold moved by the volatility regime")
    return ", ".join(parts)


def topology_short(g: Genome, *, heads: bool = False) -> str:
    """``16×2 ms · 8×1 m``: model A, then model B, in one short cell."""
    return f"{model_short(g.model_a, heads=heads)} · {model_short(g.model_b, heads=heads)}"


def rule_short(g: Genome, risk: Mapping[str, Any] | None = None) -> str:
    """``either>0.37`` or ``weighted>0.45 w0.60`` (the threshold and weight the risk tuning chose);
    ``either>0.41 (q0.80)`` when the threshold was fitted at a quantile of the models' own scores."""
    risk = risk or {}
    text = f"{g.consensus}>{float(risk.get('threshold', g.threshold)):.2f}"
    if risk.get("quantile") is not None:
        text += f" (q{float(risk['quantile']):.2f})"
    if g.consensus == "weighted":
        text += f" w{float(risk.get('weight', 0.5)):.2f}"
    return text


def rule_words(g: Genome, risk: Mapping[str, Any] | None = None, *, allow_short: bool = False) -> str:
    """When the pair goes long, in words: ``either model p(up) > 0.37, neither p(down) > 0.37``."""
    risk = risk or {}
    t = float(risk.get("threshold", g.threshold))
    if g.consensus == "both":
        text = f"both models p(up) > {t:.2f}"
    elif g.consensus == "either":
        text = f"either model p(up) > {t:.2f}, neither p(down) > {t:.2f}"
    else:
        w = float(risk.get("weight", 0.5))
        text = f"{w:.2f}×A + {1.0 - w:.2f}×B p(up) > {t:.2f}"
    text = f"long when {text}"
    if risk.get("quantile") is not None:
        text += f" (the {float(risk['quantile']):.0%} quantile of the pair's validation scores)"
    if allow_short:
        text += " (short: the same with down and up swapped)"
    return text


def genome_words(g: Genome, risk: Mapping[str, Any] | None = None, *, allow_short: bool = False) -> list[str]:
    """Three lines: model A, model B, the consensus rule with the window and horizon."""
    return [f"A: {model_words(g.model_a)}", f"B: {model_words(g.model_b)}",
            f"{rule_words(g, risk, allow_short=allow_short)}; window {g.seq_len} bars, predicts "
            f"{_plural(g.horizon, 'bar')} ahead"]
