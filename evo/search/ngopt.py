"""``--optimizer ngopt``: nevergrad's NGOpt over the same genome space as NSGA-II.

The genome is encoded as a point of the unit box ``[0, 1]^D`` (:class:`GenomeCodec`): one
coordinate per pool feature of each model (the feature is used when its coordinate is above 0.5;
beyond ``max_features`` only the highest coordinates count; with none above 0.5, the highest one),
one per gene with more than one possible value (a choice is the ``floor(u * n)``-th value, an
integer range likewise, a float range linear), one per possible sLSTM position and one per extra
timeframe the data and space allow (membership above 0.5; the base timeframe is always used). A decoded
genome goes through :func:`evo.genome.repair`, so it is always valid; genes this codec does not
know (added later to the genome) take the values ``repair`` gives them. A gene the space keeps at
one value gets no coordinate.

NGOpt is seeded from the run seed and asked for a generation's candidates at once (its
``num_workers``); every candidate is told both objectives as losses ``[-Sharpe, max drawdown]``
against the fixed reference ``(Sharpe -3, drawdown 100 %)`` of :data:`evo.search.objectives.HV_REFERENCE`
(nevergrad then optimises the hypervolume). Candidates that decode to a genome evaluated before
are told its known result and not trained again. The optimiser is never pickled: a resumed run
rebuilds it and replays the journal's results in the original order (:meth:`NGSearch.replay`),
which reproduces its state exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from evo.config import SearchSpace
from evo.genome import FeaturePools, Genome, repair
from evo.search.objectives import HV_REFERENCE
from evo.search.records import Record


@dataclass(frozen=True)
class _Dim:
    path: tuple[str, ...]      # ("model_a", "features", "rsi_14"), ("model_b", "slstm", 1), ("seq_len",) ...
    kind: str                  # "feature", "slstm", "timeframe", "choice", "int", "float"
    values: tuple = ()         # the choices, or (lo, hi)


def _varies(kind: str, values: tuple) -> bool:
    return len(set(values)) > 1 if kind == "choice" else values[0] != values[1]


class GenomeCodec:
    """Genome <-> point of ``[0, 1]^size`` for one search space and feature pools."""

    def __init__(self, space: SearchSpace, pools: FeaturePools):
        self.space, self.pools = space, pools
        # the timeframes a genome may use: the space's that the data support, 1 always
        self.timeframes = tuple(sorted({1} | (set(getattr(space, "timeframes", ()) or ())
                                              & set(getattr(pools, "timeframes", ()) or ()))))
        self.fixed: dict[tuple[str, ...], Any] = {}
        dims: list[_Dim] = []
        for m, pool in (("model_a", pools.a), ("model_b", pools.b)):
            if len(pool) > 1:
                dims += [_Dim((m, "features", f), "feature") for f in pool]
            genes = [("embedding_dim", "choice", tuple(space.embedding_dim)),
                     ("num_blocks", "int", tuple(space.num_blocks)),
                     ("num_heads", "choice", tuple(space.num_heads)),
                     ("dropout", "float", tuple(space.dropout)),
                     ("proj_factor", "choice", tuple(getattr(space, "proj_factor", ()) or (2.0,)))]
            if getattr(space, "batch_size", ()):
                genes.append(("batch_size", "choice", tuple(space.batch_size)))
            if getattr(space, "grad_clip", ()):
                genes.append(("grad_clip", "float", tuple(space.grad_clip)))
            genes += [(name, "choice", tuple(getattr(space, name, ()) or (default,)))
                      for name, default in (("fusion", "concat"), ("regime", "none"))]
            for name, kind, values in genes:
                self._gene(dims, (m, name), kind, values)
            dims += [_Dim((m, "slstm", i), "slstm") for i in range(space.num_blocks[1])]
            dims += [_Dim((m, "timeframes", t), "timeframe") for t in self.timeframes if t != 1]
        for name, kind, values in (("seq_len", "choice", tuple(space.seq_len)),
                                   ("horizon", "choice", tuple(space.horizon)),
                                   ("consensus", "choice", tuple(space.consensus)),
                                   ("threshold", "float", tuple(space.threshold))):
            self._gene(dims, (name,), kind, values)
        self.dims = dims

    def _gene(self, dims: list[_Dim], path: tuple[str, ...], kind: str, values: tuple) -> None:
        if _varies(kind, values):
            dims.append(_Dim(path, kind, values))
        else:
            self.fixed[path] = values[0]

    @property
    def size(self) -> int:
        return len(self.dims)

    def decode(self, x: np.ndarray) -> Genome:
        """The valid genome of point ``x`` (shape ``(size,)``, values in [0, 1])."""
        x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
        d: dict[str, Any] = {m: {"slstm_at": [], "timeframes": [1]} for m in ("model_a", "model_b")}
        scores: dict[str, list[tuple[float, int, str]]] = {"model_a": [], "model_b": []}
        for path, value in self.fixed.items():
            (d[path[0]] if len(path) == 2 else d)[path[-1]] = value
        for i, (dim, u) in enumerate(zip(self.dims, x)):
            if dim.kind == "feature":
                scores[dim.path[0]].append((float(u), i, dim.path[2]))
            elif dim.kind in ("slstm", "timeframe"):
                if u > 0.5:
                    d[dim.path[0]]["slstm_at" if dim.kind == "slstm" else "timeframes"].append(dim.path[2])
            else:
                value = _decode_value(dim.kind, dim.values, float(u))
                (d[dim.path[0]] if len(dim.path) == 2 else d)[dim.path[-1]] = value
        for m, pool, cap in (("model_a", self.pools.a, self.space.max_features_a),
                             ("model_b", self.pools.b, self.space.max_features_b)):
            if len(pool) == 1:
                d[m]["features"] = [pool[0]]
                continue
            ranked = sorted(scores[m], key=lambda t: (-t[0], t[1]))
            chosen = [t for t in ranked if t[0] > 0.5][:cap] or ranked[:1]
            d[m]["features"] = [name for _, _, name in sorted(chosen, key=lambda t: t[1])]
            blocks = int(d[m]["num_blocks"])
            d[m]["slstm_at"] = [i for i in d[m]["slstm_at"] if i < blocks]
        # repair draws from its rng only for genes the codec does not set: fixed, so decoding is pure.
        return repair(d, self.space, self.pools, np.random.default_rng(0))

    def encode(self, g: Genome) -> np.ndarray:
        """A point that decodes to ``g`` (for a genome inside the space and pools)."""
        d = g.to_dict()
        x = np.empty(self.size)
        for i, dim in enumerate(self.dims):
            if dim.kind == "feature":
                x[i] = 0.75 if dim.path[2] in d[dim.path[0]]["features"] else 0.25
            elif dim.kind in ("slstm", "timeframe"):
                field = "slstm_at" if dim.kind == "slstm" else "timeframes"
                x[i] = 0.75 if dim.path[2] in d[dim.path[0]].get(field, ()) else 0.25
            else:
                value = d[dim.path[0]].get(dim.path[1]) if len(dim.path) == 2 else d[dim.path[0]]
                x[i] = _encode_value(dim.kind, dim.values, value)
        return x


def _decode_value(kind: str, values: tuple, u: float) -> Any:
    if kind == "choice":
        return values[min(int(u * len(values)), len(values) - 1)]
    lo, hi = values
    if kind == "int":
        return int(lo) + min(int(u * (hi - lo + 1)), int(hi - lo))
    return float(lo + u * (hi - lo))


def _encode_value(kind: str, values: tuple, value: Any) -> float:
    if value is None:   # a gene left to the budget (a seed genome from outside the space)
        return 0.0
    if kind == "choice":
        if value in values:
            i = values.index(value)
        else:
            i = 0 if isinstance(value, str) else int(np.argmin([abs(v - value) for v in values]))
        return (i + 0.5) / len(values)
    lo, hi = values
    if kind == "int":
        return (int(value) - lo + 0.5) / (hi - lo + 1)
    return float(np.clip((float(value) - lo) / (hi - lo), 0.0, 1.0))


LossFn = Callable[[str], tuple[float, ...]]


class NGSearch:
    """NGOpt asking for genomes and told their (Sharpe, drawdown) as two losses.

    ``budget`` is NGOpt's planned number of candidates (it picks its algorithm from it, the
    dimension and ``num_workers``); the search plans it from the budget file's
    ``ga.population * ga.halving_eta * (ga.generations + 1)``.
    """

    def __init__(self, space: SearchSpace, pools: FeaturePools, *, seed: int, budget: int, num_workers: int = 1):
        import nevergrad as ng

        self.codec = GenomeCodec(space, pools)
        params = ng.p.Array(shape=(max(1, self.codec.size),), lower=0.0, upper=1.0)
        params.random_state = np.random.RandomState(seed)
        self.opt = ng.optimizers.NGOpt(parametrization=params, budget=max(1, budget), num_workers=max(1, num_workers))
        # losses are (-Sharpe, drawdown); the hypervolume is taken up to the fixed reference point.
        self.opt.tell(ng.p.MultiobjectiveReference(), [-HV_REFERENCE[0], HV_REFERENCE[1]])
        self._pending: list[tuple[Any, str]] = []

    def _decode(self, cand) -> Genome:
        return self.codec.decode(cand.value[: self.codec.size])

    def suggest(self, genomes: Iterable[Genome]) -> None:
        """Ask these genomes (the user's seed genomes) as NGOpt's next candidates, to be told
        their results with the others."""
        for g in genomes:
            self.opt.suggest(self.codec.encode(g) if self.codec.size else np.full(1, 0.5))
            self._pending.append((self.opt.ask(), g.key()))

    def ask(self, n: int, seen: set[str]) -> list[Genome]:
        """Up to ``n`` distinct genomes not in ``seen`` (asking at most ``20 n`` candidates; the
        others, duplicates, are told the known result in :meth:`tell`)."""
        new: dict[str, Genome] = {}
        for _ in range(20 * n):
            if len(new) >= n:
                break
            cand = self.opt.ask()
            g = self._decode(cand)
            self._pending.append((cand, g.key()))
            if g.key() not in seen:
                new.setdefault(g.key(), g)
        return list(new.values())

    def tell(self, loss: LossFn) -> None:
        """Tell every candidate asked since the last tell: ``loss(key)`` is the genome's
        (Sharpe, drawdown, ...)."""
        for cand, key in self._pending:
            sharpe, drawdown = loss(key)[:2]
            self.opt.tell(cand, [-float(sharpe), float(drawdown)])
        self._pending = []

    def replay(self, journal: list[Record], generation: int, loss: LossFn, seeds: list[Genome],
               n: int) -> None:
        """Rebuild the state after ``generation``: ask each generation's candidates as the run
        did (the same seen genomes, from the journal) and tell them the journal's results."""
        for gen in range(generation + 1):
            seen = {r.key for r in journal if r.generation < gen}
            self.generation(gen, n, seen, seeds)
            self.tell(loss)

    def generation(self, gen: int, n: int, seen: set[str], seeds: list[Genome]) -> list[Genome]:
        """The ``n`` genomes of generation ``gen``: the seed genomes not seen yet first (told to
        NGOpt as suggestions), then NGOpt's new ones."""
        first = [g for g in seeds[:n] if g.key() not in seen] if gen == 0 else []
        self.suggest(first)
        return first + self.ask(n - len(first), seen | {g.key() for g in first})
