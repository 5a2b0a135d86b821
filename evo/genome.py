"""The genome: one individual encodes both consensus models and their shared settings.

A :class:`Genome` fixes model A's features (patterns and pattern features) and topology, model
B's features (indicators) and topology, the shared window length and label horizon, and the
consensus rule and threshold. Genomes are frozen values; the operators return new genomes and
never write onto their inputs. Operators come in families with one signature each::

    random_genome(space, pools, rng) -> Genome
    cx_uniform(a, b, space, pools, rng) -> (Genome, Genome)
    mut_genome(g, space, pools, rng, indpb) -> Genome

and every result passes through :func:`repair`, so no operator can produce an invalid genome or an
empty feature set. ``rng`` is a ``numpy.random.Generator``: no global random state.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from evo.config import SearchSpace
from evo.errors import ConfigError


@dataclass(frozen=True)
class ModelGenes:
    """One xLSTM direction model: its inputs and topology."""

    features: tuple[str, ...]
    embedding_dim: int
    num_blocks: int
    num_heads: int
    slstm_at: tuple[int, ...]
    dropout: float
    proj_factor: float = 2.0          # mLSTM up-projection: hidden size ~ proj_factor x embedding_dim
    batch_size: int | None = None     # windows per optimiser step; None = the budget's train.batch_size
    grad_clip: float | None = None    # max gradient norm; None = the budget's train.grad_clip
    timeframes: tuple[int, ...] = (1,)  # multipliers of the base bar, one encoder each (features.timeframes)
    fusion: str = "concat"            # how several timeframes' states meet: "concat" | "attention"
    regime: str = "none"              # regime input (evo.pipeline.regime): "none" | "features" | "gate"

    def __post_init__(self) -> None:
        if not self.features:
            raise ConfigError("a model needs at least one feature")
        if len(set(self.features)) != len(self.features):
            raise ConfigError(f"duplicate features in {self.features}")
        if self.embedding_dim % self.num_heads or self.embedding_dim // self.num_heads < 2:
            raise ConfigError(f"num_heads {self.num_heads} must divide embedding_dim {self.embedding_dim} "
                              "into heads at least 2 wide")
        positions = list(self.slstm_at)
        if any(not 0 <= i < self.num_blocks for i in positions) or positions != sorted(set(positions)):
            raise ConfigError(f"slstm_at {self.slstm_at} must be sorted, unique positions below {self.num_blocks}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout {self.dropout} must lie in [0, 1)")
        if not 1.0 <= self.proj_factor <= 4.0:
            raise ConfigError(f"proj_factor {self.proj_factor} must lie in [1, 4]")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size {self.batch_size} must be >= 1")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip {self.grad_clip} must be > 0")
        tfs = list(self.timeframes)
        if not tfs or tfs[0] != 1 or tfs != sorted(set(tfs)):
            raise ConfigError(f"timeframes {self.timeframes} must be sorted, unique multipliers starting with 1")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion {self.fusion!r} must be one of {FUSIONS}")
        if len(tfs) == 1:  # nothing to fuse: one canonical value, so equal models share a key
            object.__setattr__(self, "fusion", "concat")
        object.__setattr__(self, "timeframes", tuple(int(m) for m in tfs))
        if self.regime not in REGIMES:
            raise ConfigError(f"regime {self.regime!r} must be one of {REGIMES}")

    def describe(self) -> str:
        """``emb×blocks h heads, sLSTM@[…]`` as the front table shows it."""
        text = f"{self.embedding_dim}x{self.num_blocks} h{self.num_heads} sLSTM@{list(self.slstm_at)}"
        if self.proj_factor != MODEL_GENE_DEFAULTS["proj_factor"]:
            text += f" up{self.proj_factor:g}"
        if len(self.timeframes) > 1:
            text += f" x{'/'.join(map(str, self.timeframes))} {self.fusion}"
        if self.regime != "none":
            text += f" regime:{self.regime}"
        return text

    def training(self, batch_size: int, grad_clip: float) -> tuple[int, float]:
        """(batch size, gradient clip) this model trains with: its genes, else the budget's values."""
        return (self.batch_size or batch_size, self.grad_clip or grad_clip)


# Genes added after the first runs, with the value every older genome implicitly had. A gene at its
# default is left out of :meth:`Genome.key`, so adding a gene never changes an old genome's key (a
# run store written before keeps resuming, an old seed genome keeps its identity).
MODEL_GENE_DEFAULTS: dict[str, Any] = {"proj_factor": 2.0, "batch_size": None, "grad_clip": None,
                                       "timeframes": (1,), "fusion": "concat", "regime": "none"}
FUSIONS = ("concat", "attention")         # mirrors models.multi (kept import-free here)
REGIMES = ("none", "features", "gate")    # mirrors evo.pipeline.regime


def _model_genes(d: dict[str, Any]) -> ModelGenes:
    """ModelGenes from a plain dict; genes missing from it take their defaults."""
    opt = {k: d.get(k, v) for k, v in MODEL_GENE_DEFAULTS.items()}
    return ModelGenes(
        features=tuple(d["features"]), embedding_dim=int(d["embedding_dim"]),
        num_blocks=int(d["num_blocks"]), num_heads=int(d["num_heads"]),
        slstm_at=tuple(int(i) for i in d["slstm_at"]), dropout=float(d["dropout"]),
        proj_factor=float(opt["proj_factor"]),
        batch_size=None if opt["batch_size"] is None else int(opt["batch_size"]),
        grad_clip=None if opt["grad_clip"] is None else float(opt["grad_clip"]),
        timeframes=tuple(int(m) for m in opt["timeframes"]), fusion=str(opt["fusion"]), regime=str(opt["regime"]),
    )


@dataclass(frozen=True)
class Genome:
    model_a: ModelGenes
    model_b: ModelGenes
    seq_len: int
    horizon: int
    consensus: str
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: ``{"model_a": {...}, "model_b": {...}, "seq_len", ...}``."""
        d = asdict(self)
        for m in ("model_a", "model_b"):
            d[m]["features"] = list(d[m]["features"])
            d[m]["slstm_at"] = list(d[m]["slstm_at"])
            d[m]["timeframes"] = list(d[m]["timeframes"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Genome:
        try:
            models = {m: _model_genes(d[m]) for m in ("model_a", "model_b")}
            return cls(**models, seq_len=int(d["seq_len"]), horizon=int(d["horizon"]),
                       consensus=str(d["consensus"]), threshold=float(d["threshold"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a genome: {exc!r}") from None

    def key(self) -> str:
        """Content hash (16 hex chars): equal genomes share it, so each is evaluated once.
        Feature order does not matter to the models' inputs' identity and is canonicalised."""
        d = self.to_dict()
        for m in ("model_a", "model_b"):
            d[m]["features"] = sorted(d[m]["features"])
        d["threshold"] = round(d["threshold"], 6)
        for m in ("model_a", "model_b"):
            d[m]["dropout"] = round(d[m]["dropout"], 6)
            if d[m]["grad_clip"] is not None:
                d[m]["grad_clip"] = round(d[m]["grad_clip"], 6)
            for gene, default in MODEL_GENE_DEFAULTS.items():
                if d[m][gene] == (list(default) if isinstance(default, tuple) else default):
                    del d[m][gene]
        blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class FeaturePools:
    """The features each model may choose from (the catalog, less what the data cannot support),
    and the timeframes the data support (multipliers of the base bar: ``(1, 5, 15, 60)`` on minute
    data, ``(1, 5)`` on daily; see :meth:`features.timeframes.BarClock.multipliers`)."""

    a: tuple[str, ...]
    b: tuple[str, ...]
    timeframes: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        if not self.a or not self.b:
            raise ConfigError("each model needs a non-empty feature pool")
        if set(self.a) & set(self.b):
            raise ConfigError("model A's and model B's feature pools must be disjoint")


# --------------------------------------------------------------------------------------------
# repair: the one place that makes any candidate valid for a search space


def _nearest(value: float, choices: tuple) -> Any:
    return min(choices, key=lambda c: (abs(c - value), c))


def _allowed_timeframes(space: SearchSpace, pools: FeaturePools) -> tuple[int, ...]:
    """Timeframes a genome may use: the space's that the data support (1 always)."""
    return tuple(sorted({1} | (set(space.timeframes) & set(pools.timeframes))))


def _repair_model(m: ModelGenes | dict, pool: tuple[str, ...], max_features: int,
                  space: SearchSpace, rng: np.random.Generator, timeframes: tuple[int, ...] = (1,)) -> ModelGenes:
    d = asdict(m) if isinstance(m, ModelGenes) else dict(m)
    allowed = set(pool)
    feats = [f for f in dict.fromkeys(d["features"]) if f in allowed]
    if len(feats) > max_features:
        keep = np.sort(rng.choice(len(feats), size=max_features, replace=False))
        feats = [feats[i] for i in keep]
    if not feats:
        feats = [pool[int(rng.integers(len(pool)))]]
    emb = _nearest(int(d["embedding_dim"]), space.embedding_dim)
    heads_ok = tuple(h for h in space.num_heads if emb % h == 0 and emb // h >= 2)
    heads = int(d["num_heads"]) if int(d["num_heads"]) in heads_ok else _nearest(int(d["num_heads"]), heads_ok)
    blocks = int(np.clip(int(d["num_blocks"]), *space.num_blocks))
    slstm = tuple(sorted({int(i) for i in d["slstm_at"] if 0 <= int(i) < blocks}))
    dropout = float(np.clip(float(d["dropout"]), *space.dropout))
    proj = float(_nearest(float(d.get("proj_factor", 2.0)), space.proj_factor))
    batch = d.get("batch_size")
    if space.batch_size:
        batch = int(_nearest(int(batch), space.batch_size)) if batch else int(rng.choice(space.batch_size))
    else:
        batch = None
    clip = d.get("grad_clip")
    if space.grad_clip:
        clip = float(np.clip(float(clip), *space.grad_clip)) if clip else float(rng.uniform(*space.grad_clip))
    else:
        clip = None
    tfs = tuple(sorted({1} | {int(x) for x in d.get("timeframes", (1,)) if int(x) in timeframes}))
    fusion = "concat"  # one timeframe: nothing to fuse, the default keeps the key
    if len(tfs) > 1:
        fusion = d.get("fusion", "concat") if d.get("fusion", "concat") in space.fusion else space.fusion[0]
    regime = d.get("regime", "none") if d.get("regime", "none") in space.regime else space.regime[0]
    return ModelGenes(tuple(feats), emb, blocks, heads, slstm, dropout, proj, batch, clip, tfs, fusion, regime)


def repair(g: Genome | dict, space: SearchSpace, pools: FeaturePools, rng: np.random.Generator) -> Genome:
    """Return the nearest valid genome in ``space``: features within the pools and non-empty,
    heads dividing the embedding, sLSTM positions inside the stack, values inside their ranges."""
    d = g.to_dict() if isinstance(g, Genome) else g
    tfs = _allowed_timeframes(space, pools)
    return Genome(
        model_a=_repair_model(d["model_a"], pools.a, space.max_features_a, space, rng, tfs),
        model_b=_repair_model(d["model_b"], pools.b, space.max_features_b, space, rng, tfs),
        seq_len=_nearest(int(d["seq_len"]), space.seq_len),
        horizon=_nearest(int(d["horizon"]), space.horizon),
        consensus=d["consensus"] if d["consensus"] in space.consensus else space.consensus[0],
        threshold=float(np.clip(float(d["threshold"]), *space.threshold)),
    )


# --------------------------------------------------------------------------------------------
# random_genome


def _random_model(pool: tuple[str, ...], max_features: int, space: SearchSpace,
                  rng: np.random.Generator, timeframes: tuple[int, ...] = (1,)) -> dict:
    n = int(rng.integers(1, min(max_features, len(pool)) + 1))
    feats = [pool[i] for i in np.sort(rng.choice(len(pool), size=n, replace=False))]
    blocks = int(rng.integers(space.num_blocks[0], space.num_blocks[1] + 1))
    emb = int(rng.choice(space.embedding_dim))
    heads_ok = [h for h in space.num_heads if emb % h == 0 and emb // h >= 2]
    return {
        "features": feats, "embedding_dim": emb, "num_blocks": blocks,
        "num_heads": int(rng.choice(heads_ok)),
        "slstm_at": [i for i in range(blocks) if rng.random() < space.slstm_share],
        "dropout": float(rng.uniform(*space.dropout)),
        "proj_factor": float(rng.choice(space.proj_factor)),
        "batch_size": int(rng.choice(space.batch_size)) if space.batch_size else None,
        "grad_clip": float(rng.uniform(*space.grad_clip)) if space.grad_clip else None,
        **_random_frame_genes(space, rng, timeframes),
    }


def _random_frame_genes(space: SearchSpace, rng: np.random.Generator, timeframes: tuple[int, ...]) -> dict:
    """Timeframes (1 plus a uniformly sized random subset of the others), fusion and regime; draws
    nothing from ``rng`` for a gene the space keeps closed (so closed spaces search as before)."""
    d: dict[str, Any] = {"timeframes": [1], "fusion": "concat", "regime": "none"}
    extra = [m for m in timeframes if m != 1]
    if extra:
        k = int(rng.integers(0, len(extra) + 1))
        d["timeframes"] = [1] + sorted(int(m) for m in rng.choice(extra, size=k, replace=False))
    if len(space.fusion) > 1:
        d["fusion"] = str(rng.choice(list(space.fusion)))
    if len(space.regime) > 1:
        d["regime"] = str(rng.choice(list(space.regime)))
    return d


def random_genome(space: SearchSpace, pools: FeaturePools, rng: np.random.Generator) -> Genome:
    """A uniformly drawn valid genome."""
    tfs = _allowed_timeframes(space, pools)
    d = {
        "model_a": _random_model(pools.a, space.max_features_a, space, rng, tfs),
        "model_b": _random_model(pools.b, space.max_features_b, space, rng, tfs),
        "seq_len": int(rng.choice(space.seq_len)),
        "horizon": int(rng.choice(space.horizon)),
        "consensus": str(rng.choice(list(space.consensus))),
        "threshold": float(rng.uniform(*space.threshold)),
    }
    return repair(d, space, pools, rng)


# --------------------------------------------------------------------------------------------
# crossover


def _cx_features(fa: tuple[str, ...], fb: tuple[str, ...], rng: np.random.Generator) -> tuple[list, list]:
    """Uniform crossover on feature membership: a feature both parents use stays in both
    children; one that only one parent uses goes to either child with equal odds."""
    both = [f for f in fa if f in fb]
    only = [f for f in dict.fromkeys(fa + fb) if f not in both]
    to_first = rng.random(len(only)) < 0.5
    c1 = both + [f for f, t in zip(only, to_first) if t]
    c2 = both + [f for f, t in zip(only, to_first) if not t]
    return c1, c2


def cx_uniform(a: Genome, b: Genome, space: SearchSpace, pools: FeaturePools,
               rng: np.random.Generator) -> tuple[Genome, Genome]:
    """Uniform crossover: each scalar gene is swapped with probability 0.5, feature sets mix by
    membership. The topology of a model (blocks and its sLSTM positions) travels together."""
    da, db = a.to_dict(), b.to_dict()
    c1, c2 = {}, {}
    for key in ("seq_len", "horizon", "consensus", "threshold"):
        swap = rng.random() < 0.5
        c1[key], c2[key] = (db[key], da[key]) if swap else (da[key], db[key])
    for m in ("model_a", "model_b"):
        ma, mb = da[m], db[m]
        f1, f2 = _cx_features(tuple(ma["features"]), tuple(mb["features"]), rng)
        m1, m2 = {"features": f1}, {"features": f2}
        for key in ("embedding_dim", "num_heads", "dropout", "proj_factor", "batch_size", "grad_clip"):
            swap = rng.random() < 0.5
            m1[key], m2[key] = (mb[key], ma[key]) if swap else (ma[key], mb[key])
        swap = rng.random() < 0.5
        src1, src2 = (mb, ma) if swap else (ma, mb)
        m1["num_blocks"], m1["slstm_at"] = src1["num_blocks"], src1["slstm_at"]
        m2["num_blocks"], m2["slstm_at"] = src2["num_blocks"], src2["slstm_at"]
        for key, is_open in (("timeframes", len(_allowed_timeframes(space, pools)) > 1),
                             ("fusion", len(space.fusion) > 1), ("regime", len(space.regime) > 1)):
            swap = is_open and rng.random() < 0.5  # a closed gene draws nothing
            m1[key], m2[key] = (mb[key], ma[key]) if swap else (ma[key], mb[key])
        c1[m], c2[m] = m1, m2
    return repair(c1, space, pools, rng), repair(c2, space, pools, rng)


# --------------------------------------------------------------------------------------------
# mutation


def _step_choice(value: Any, choices: tuple, rng: np.random.Generator) -> Any:
    """Move to a neighbouring value in a sorted choice list (or stay at an end)."""
    ordered = sorted(choices)
    i = ordered.index(_nearest(value, tuple(ordered))) + int(rng.choice([-1, 1]))
    return ordered[int(np.clip(i, 0, len(ordered) - 1))]


def _mut_features(feats: list[str], pool: tuple[str, ...], max_features: int,
                  rng: np.random.Generator) -> list[str]:
    outside = [f for f in pool if f not in feats]
    move = rng.integers(3)  # 0 add, 1 remove, 2 swap one
    if move == 0 and outside and len(feats) < max_features:
        return feats + [outside[int(rng.integers(len(outside)))]]
    if move == 1 and len(feats) > 1:
        drop = int(rng.integers(len(feats)))
        return feats[:drop] + feats[drop + 1:]
    if outside:
        i = int(rng.integers(len(feats)))
        return feats[:i] + [outside[int(rng.integers(len(outside)))]] + feats[i + 1:]
    return feats


def _mut_model(m: dict, pool: tuple[str, ...], max_features: int, space: SearchSpace,
               rng: np.random.Generator, indpb: float, timeframes: tuple[int, ...] = (1,)) -> dict:
    m = dict(m)
    if rng.random() < indpb:
        m["features"] = _mut_features(list(m["features"]), pool, max_features, rng)
    if rng.random() < indpb:
        m["embedding_dim"] = _step_choice(m["embedding_dim"], space.embedding_dim, rng)
    if rng.random() < indpb:
        m["num_heads"] = int(rng.choice(space.num_heads))
    if rng.random() < indpb:
        m["num_blocks"] = int(m["num_blocks"]) + int(rng.choice([-1, 1]))
    if rng.random() < indpb:
        pos = int(rng.integers(max(1, int(m["num_blocks"]))))
        m["slstm_at"] = sorted(set(m["slstm_at"]) ^ {pos})
    if rng.random() < indpb:
        m["dropout"] = float(m["dropout"]) + float(rng.normal(0.0, 0.1))
    if len(space.proj_factor) > 1 and rng.random() < indpb:
        m["proj_factor"] = _step_choice(m["proj_factor"], space.proj_factor, rng)
    if space.batch_size and rng.random() < indpb:
        m["batch_size"] = _step_choice(m["batch_size"] or space.batch_size[0], space.batch_size, rng)
    if space.grad_clip and rng.random() < indpb:
        m["grad_clip"] = float(m["grad_clip"] or 1.0) * float(np.exp(rng.normal(0.0, 0.25)))
    extra = [t for t in timeframes if t != 1]
    if extra and rng.random() < indpb:  # add or drop one timeframe (x1 always stays)
        m["timeframes"] = sorted(set(m.get("timeframes", [1])) ^ {int(extra[int(rng.integers(len(extra)))])})
    if len(space.fusion) > 1 and rng.random() < indpb:
        m["fusion"] = str(rng.choice(list(space.fusion)))
    if len(space.regime) > 1 and rng.random() < indpb:
        m["regime"] = str(rng.choice(list(space.regime)))
    return m


def mut_genome(g: Genome, space: SearchSpace, pools: FeaturePools, rng: np.random.Generator,
               indpb: float = 0.2) -> Genome:
    """Mutate each gene with probability ``indpb``: feature add/remove/swap, a neighbouring
    embedding/window, ±1 block, toggling one sLSTM position, Gaussian steps for dropout and
    threshold. At least one gene always changes where the space allows it."""
    d = g.to_dict()
    for _ in range(8):  # retry until something changed (a tiny space may need a few draws)
        tfs = _allowed_timeframes(space, pools)
        d["model_a"] = _mut_model(d["model_a"], pools.a, space.max_features_a, space, rng, indpb, tfs)
        d["model_b"] = _mut_model(d["model_b"], pools.b, space.max_features_b, space, rng, indpb, tfs)
        if rng.random() < indpb:
            d["seq_len"] = _step_choice(d["seq_len"], space.seq_len, rng)
        if rng.random() < indpb:
            d["horizon"] = int(rng.choice(space.horizon))
        if rng.random() < indpb:
            d["consensus"] = str(rng.choice(list(space.consensus)))
        if rng.random() < indpb:
            d["threshold"] = float(d["threshold"]) + float(rng.normal(0.0, 0.04))
        child = repair(d, space, pools, rng)
        if child.key() != g.key():
            return child
    return child


def load_genome_file(path) -> list[tuple[str, Genome]]:
    """Genomes from a TOML or JSON file, as ``(name, genome)``.

    Accepted shapes: one genome (``model_a``, ``model_b``, ``seq_len``, ...); ``{"name": ...,
    "genome": {...}}``; a list of those under ``genomes``; or the output of
    ``evo front --json`` (every member). Genomes are taken as given (they may lie outside the
    budget's ranges: today's bot need not fit the search space); features are checked against the
    data when the run starts.
    """
    import tomllib
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such genome file")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({exc})") from None
    if "members" in data:
        entries = [{"name": m.get("id", "member"), "genome": m["genome"]} for m in data["members"]]
    elif "genomes" in data:
        entries = data["genomes"]
    elif "genome" in data:
        entries = [data]
    else:
        entries = [{"name": path.stem, "genome": data}]
    out = []
    for i, entry in enumerate(entries):
        name = str(entry.get("name", f"{path.stem}-{i}"))
        try:
            out.append((name, Genome.from_dict(entry["genome"])))
        except (ConfigError, KeyError) as exc:
            raise ConfigError(f"{path}: genome {name!r}: {exc}") from None
    if not out:
        raise ConfigError(f"{path}: holds no genome")
    return out


def model_config(genes: ModelGenes, seq_len: int, device: str = "cpu", n_features: int | None = None):
    """The one rule from a model's genes to its ``models`` config: a ``models.ModelConfig`` (one
    timeframe: a DirectionModel) or a ``models.multi.MultiConfig`` (one encoder per timeframe,
    shared topology). ``n_features`` defaults to the genes' features plus the two regime columns
    when ``regime`` is ``features``; the sLSTM backend is CUDA's where the device is CUDA.
    Evaluation, export and the hardware estimates all call this."""
    from models import ModelConfig, pick_backend

    if n_features is None:
        n_features = len(genes.features) + (2 if genes.regime == "features" else 0)
    cfg = ModelConfig(n_features=int(n_features), embedding_dim=genes.embedding_dim,
                      num_blocks=genes.num_blocks, num_heads=genes.num_heads,
                      slstm_at=tuple(genes.slstm_at), dropout=genes.dropout, seq_len=int(seq_len),
                      backend=pick_backend() if device == "cuda" else "vanilla", proj_factor=genes.proj_factor)
    if len(genes.timeframes) == 1:
        return cfg
    from models.multi import MultiConfig

    return MultiConfig(base=cfg, timeframes=tuple(genes.timeframes), fusion=genes.fusion)
