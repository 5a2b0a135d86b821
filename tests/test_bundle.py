"""The bundle: export, load, verify, refuse what is broken, and decide bar by bar like the full history.

One bundle is built per module from a hand-made genome on the last 1500 NVIDIA daily bars with a
tiny training budget (real features, real xLSTM training, ~2 s). Model B reads the slowest
recursive indicators of the catalog (EMA 50, RSI 21, ADX, MACD signal, TSI, TRIX), so the live
stream's tail really has to cover their seed decay; model A has an sLSTM block.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from backtest import STOP_RULE
from evo.config import budget_from_dict
from evo.deploy.bundle import ENTRIES, GRAPHS, Bundle, read_bundle
from evo.deploy.export import fit_final_model, train_final, write_member_bundle
from evo.errors import BundleError, DataError
from evo.evaluation.dataset import prepare_dataset
from evo.evaluation.evaluate import train_pair_model
from evo.genome import Genome, ModelGenes
from evo.search.records import Record

TINY = {
    "search": {"embedding_dim": [8], "num_blocks": [1, 1], "num_heads": [2], "seq_len": [8],
               "horizon": [2], "threshold": [0.34, 0.5], "max_features_a": 4, "max_features_b": 6},
    "train": {"max_epochs": 2, "patience": 1, "max_train_windows": 300, "lr_trials": 1, "lr_trial_epochs": 1},
    "evaluate": {"folds": 2, "min_trades": 1, "risk_trials": 0},
    "ga": {"population": 2, "generations": 1},
}
STREAMED = 300          # bars replayed through Bundle.step per data set
PROB_TOL = 1e-5         # stream vs full history (the brief's bound); measured: ~1e-7, float32 batching


def genome() -> Genome:
    return Genome(
        model_a=ModelGenes(("cdl_engulfing", "since_doji", "range_atr_14", "body_range"), 8, 1, 2, (0,), 0.0),
        model_b=ModelGenes(("ema_50", "rsi_21", "adx_14", "macd_signal_12_26_9", "tsi_25_13", "trix_15"),
                           8, 1, 2, (), 0.0),
        seq_len=8, horizon=2, consensus="weighted", threshold=0.36,
    )


def record(g: Genome) -> Record:
    """A front member as the journal holds it (search figures made up; the lrs are what export uses)."""
    result = {"lr_a": 3e-3, "lr_b": 2e-3, "sharpe": 0.8, "max_drawdown": 0.12, "total_return": 0.3, "trades": 40,
              "exposure": 0.4, "test_start": "2012-06-12T00:00:00", "test_end": "2013-10-22T00:00:00",
              "risk": {"threshold": 0.36, "weight": 0.6, "stop_loss": None, "take_profit": None, "size": 1.0},
              "holdout": {"sharpe": 0.5, "max_drawdown": 0.1, "total_return": 0.05, "trades": 9,
                          "start": "2013-10-23T00:00:00", "end": "2014-12-31T00:00:00", "returns": [0.0, 0.01]}}
    return Record(key=g.key(), genome=g.to_dict(), generation=0, result=result)


@pytest.fixture(scope="module")
def budget():
    return budget_from_dict("tiny", TINY)


@pytest.fixture(scope="module")
def ds(nvda, budget):
    return prepare_dataset(nvda.iloc[-1500:].copy(), "nvda", budget)


@pytest.fixture(scope="module")
def exported(ds, budget, tmp_path_factory):
    """(path, manifest, fit) of the module's bundle."""
    g = genome()
    fit = train_final(record(g), ds, budget, seed=1)
    path = tmp_path_factory.mktemp("bundle") / "member.evo"
    manifest = write_member_bundle(fit, record(g), ds, budget, path, run_meta={"run": "test"})
    return path, manifest, fit


@pytest.fixture(scope="module")
def bundle(exported) -> Bundle:
    return Bundle.load(exported[0])


# ---------------------------------------------------------------------------------- helpers

def entries_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def write_zip(path: Path, items: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names: that is the point
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in items:
                zf.writestr(zipfile.ZipInfo(name), data)
    return path


def resign(src: Path, dst: Path, edit) -> Path:
    """Copy a bundle with ``edit(manifest)`` applied and manifest.sha256 recomputed (what a
    careless editor, or a newer/older evo, would produce)."""
    items = entries_of(src)
    manifest = json.loads(items["manifest.json"])
    edit(manifest)
    items["manifest.json"] = json.dumps(manifest, indent=1).encode()
    items["manifest.sha256"] = hashlib.sha256(items["manifest.json"]).hexdigest().encode()
    return write_zip(dst, list(items.items()))


def stream_vs_full(b: Bundle, bars, n: int):
    """Full-history probabilities of the last ``n`` bars, and the stream's (primed with the bars
    before them, so its tail starts far after bar 0)."""
    full = b.probabilities(bars, last=n)
    b.reset()
    b.prime(bars.iloc[: len(bars) - n])
    decisions = [b.step(row) for _, row in bars.iloc[len(bars) - n:].iterrows()]
    return full, decisions


# ---------------------------------------------------------------------------------- round trip

def test_export_load_decide_round_trip(exported, bundle, ds):
    path, manifest, fit = exported
    m, _ = read_bundle(path)
    assert m == manifest and m["version"] == 4
    assert all(m["models"][n]["timeframes"] == [1] and "regime" not in m["models"][n] for n in ("a", "b"))
    assert "clock" not in m and "gate_low" not in m["consensus"]
    assert m["genome"] == genome().to_dict()
    for name in ("a", "b"):
        spec = m["models"][name]
        assert [s["name"] for s in spec["feature_specs"]] == spec["features"]
        assert all({"kind", "source", "warmup_bars", "needs_volume"} <= set(s) for s in spec["feature_specs"])
        assert len(spec["scaler"]["mean"]) == len(spec["features"])
        assert spec["lr"] == record(genome()).result[f"lr_{name}"]
        assert spec["fit"]["best_epoch"] >= 0 and spec["fit"]["n_windows"] == 300
    assert m["consensus"] == {"rule": "weighted", "threshold": 0.36, "weight": 0.6, "allow_short": False}
    assert {"size", "stop_loss", "fees_bps", "slippage_bps", "fill"} <= set(m["risk"])
    assert m["risk"]["stops"] == STOP_RULE   # the backtest's stop rule, for the live bot
    assert m["metrics"]["walk_forward_oos"]["sharpe"] == 0.8
    assert m["metrics"]["holdout"]["trades"] == 9 and "returns" not in m["metrics"]["holdout"]
    # trained before the 20 % holdout, which starts at bar 1200
    assert m["training"]["mode"] == "default" and m["training"]["holdout"][0] == ds.bars.index[1200].isoformat()
    assert m["training"]["val"][1] < m["training"]["holdout"][0]
    assert {"evo", "torch", "xlstm", "ta-lib", "ta"} <= set(m["versions"])
    assert set(m["entries"]) == {"model_a.safetensors", "model_b.safetensors", "model_a.onnx", "model_b.onnx"}
    # the ONNX graphs were checked against the torch models over every holdout decision the replay makes
    check = m["graphs"]["check"]
    assert m["graphs"]["quantize"] is None and check["span"] == "holdout" and check["differ"] == 0
    assert check["decisions"] == ds.n_bars - 1 - 1200 and check["max_prob_diff"] <= 1e-5
    assert bundle.engine.name == "onnx" and bundle.models is None
    assert m["min_bars"] == 49 + 8 and m["tail_bars"] == 8 + 49 + 519   # ema_50: warm-up + seed margin
    assert m["tail"]["max_feature_diff_std"] < 1e-6
    decisions = bundle.decide(ds.bars, last=3)
    assert [d.time for d in decisions] == [t.isoformat() for t in ds.bars.index[-3:]]
    assert all(d.signal in ("long", "flat") and 0 <= d.p_a <= 1 and 0 <= d.p_b <= 1 for d in decisions)
    assert bundle.verify() <= 1e-5                                        # onnx: the graphs' tolerance
    assert Bundle.load(path, engine="torch").verify() <= 1e-6


def test_bundle_decides_as_the_in_memory_models_did(exported, bundle, ds):
    """The exported weights, rebuilt on the CPU from the file, give the trained models' numbers."""
    from backtest.consensus import consensus_signal
    from models import make_windows, predict_proba

    _, manifest, fit = exported
    stop = fit.val[1]
    ends = np.arange(stop - 64, stop)
    want = {}
    for name, fm in fit.models.items():
        X = fm.run.scaler.transform(ds.features[list(fm.run.genes.features)].to_numpy())
        want[name] = predict_proba(fm.run.model, make_windows(X, ends, 8))
    got = bundle.probabilities(ds.bars.iloc[:stop], last=64)
    np.testing.assert_allclose(got.p_a, want["a"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(got.p_b, want["b"], atol=1e-6, rtol=0)
    c = manifest["consensus"]
    np.testing.assert_array_equal(got.signal, consensus_signal(want["a"], want["b"], rule=c["rule"],
                                                               threshold=c["threshold"], weight=c["weight"]))
    assert manifest["golden"]["trained_model_max_diff"] <= 1e-6


def test_verify_refuses_a_bundle_whose_golden_numbers_are_not_reproduced(exported, tmp_path):
    def nudge(m):
        m["golden"]["p_a"][-1] = [p + d for p, d in zip(m["golden"]["p_a"][-1], (1e-5, -1e-5, 0.0))]

    b = Bundle.load(resign(exported[0], tmp_path / "nudged.evo", nudge))
    with pytest.raises(BundleError, match="does not reproduce"):
        b.verify()
    with pytest.raises(BundleError, match="does not reproduce"):
        Bundle.load(tmp_path / "nudged.evo", verify=True)


def test_final_fit_matches_the_search_training_and_refit_all_uses_every_labelled_bar(exported, ds, budget):
    _, _, fit = exported
    g = genome()
    # export's own fit reproduces evo.evaluation.evaluate's training exactly (same windows, scaler, seed)
    run, _ = train_pair_model(g.model_b, g, ds, fit.train, fit.val, budget, lr=2e-3, seed=1, device="cpu")
    mine = fit.models["b"].run
    assert mine.dead_zone == run.dead_zone
    for (k, v), (_, w) in zip(mine.model.state_dict().items(), run.model.state_dict().items()):
        assert np.array_equal(v.numpy(), w.numpy()), k
    refit = train_final(record(g), ds, budget, seed=1, refit_all=True)
    assert refit.val is None and refit.train[1] == ds.n_bars - g.horizon
    for name in ("a", "b"):
        assert refit.models[name].epochs_run == fit.models[name].best_epoch + 1
        assert refit.models[name].windows == (ds.n_bars - g.horizon - 300, ds.n_bars - g.horizon)
    one = fit_final_model(g.model_a, g, ds, refit.train, None, budget, lr=3e-3, seed=1, device="cpu", epochs=1)
    assert one.epochs_run == 1 and one.best_epoch == 0


# ---------------------------------------------------------------------------------- refusals

def _data_offsets(path: Path) -> dict[str, tuple[int, int]]:
    """(offset, length) of each entry's stored bytes inside the zip file."""
    raw = path.read_bytes()
    out = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            h = info.header_offset
            name_len = int.from_bytes(raw[h + 26: h + 28], "little")
            extra_len = int.from_bytes(raw[h + 28: h + 30], "little")
            out[info.filename] = (h + 30 + name_len + extra_len, info.compress_size)
    return out


@pytest.mark.parametrize("entry", ENTRIES + GRAPHS)
def test_a_flipped_byte_in_any_entry_is_refused(exported, tmp_path, entry):
    path = exported[0]
    offset, size = _data_offsets(path)[entry]
    raw = bytearray(path.read_bytes())
    raw[offset + size // 2] ^= 0x01
    bad = tmp_path / "flipped.evo"
    bad.write_bytes(bytes(raw))
    with pytest.raises(BundleError):
        Bundle.load(bad)


@pytest.mark.parametrize("entry", ENTRIES + GRAPHS)
def test_an_edited_entry_in_a_valid_zip_is_refused_by_its_checksum(exported, tmp_path, entry):
    items = entries_of(exported[0])
    data = bytearray(items[entry])
    i = len(data) - 3 if entry.endswith((".safetensors", ".onnx")) else data.index(b"4") if entry == "manifest.json" \
        else 0
    data[i] = ord("5") if entry == "manifest.json" else data[i] ^ 0x01
    items[entry] = bytes(data)
    bad = write_zip(tmp_path / "edited.evo", list(items.items()))
    with pytest.raises(BundleError, match="checksum"):
        Bundle.load(bad)


@pytest.mark.parametrize("extra", ["../evil", "/abs", "model_a.safetensors", "notes.txt"])
def test_extra_duplicate_or_path_entries_are_refused(exported, tmp_path, extra):
    items = list(entries_of(exported[0]).items()) + [(extra, b"x")]
    bad = write_zip(tmp_path / "extra.evo", items)
    assert extra in zipfile.ZipFile(bad).namelist()
    with pytest.raises(BundleError, match="entry"):
        Bundle.load(bad)


def test_the_bundle_holds_no_pickle(exported):
    from safetensors.torch import load

    items = entries_of(exported[0])
    assert sorted(items) == sorted(ENTRIES + GRAPHS)
    for name, data in items.items():
        assert not name.endswith((".pkl", ".pt", ".pth", ".bin")) and "data.pkl" not in name
        assert data[:2] not in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"), name
        assert b"data.pkl" not in data, name
    for name in ("model_a.safetensors", "model_b.safetensors"):
        tensors = load(items[name])   # safetensors' own parser: a header and raw float32 data
        assert tensors and all(str(t.dtype) == "torch.float32" for t in tensors.values())
    json.loads(items["manifest.json"])


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(catalog_version="0"), "feature catalog '0'"),
    (lambda m: m["models"]["b"]["feature_specs"][0].update(warmup_bars=20), "ema_50"),
    (lambda m: m.update(version=1), "version 2"),
    (lambda m: m.update(export_layout="something else"), "layout"),
    (lambda m: m["models"]["a"].pop("scaler"), "scaler"),
])
def test_an_incompatible_or_incomplete_manifest_is_refused(exported, tmp_path, edit, message):
    with pytest.raises(BundleError, match=message):
        Bundle.load(resign(exported[0], tmp_path / "edited.evo", edit))


def without_graphs(src: Path, dst: Path, edit=lambda m: None) -> Path:
    """A copy of a bundle as versions 2 and 3 wrote them: no ONNX entries, no ``graphs`` block."""
    items = {n: d for n, d in entries_of(src).items() if n not in GRAPHS}
    manifest = json.loads(items["manifest.json"])
    del manifest["graphs"]
    manifest["entries"] = {n: d for n, d in manifest["entries"].items() if n not in GRAPHS}
    manifest["version"] = 3
    edit(manifest)
    items["manifest.json"] = json.dumps(manifest, indent=1).encode()
    items["manifest.sha256"] = hashlib.sha256(items["manifest.json"]).hexdigest().encode()
    return write_zip(dst, list(items.items()))


def test_a_version_2_bundle_still_loads_and_decides_alike(exported, bundle, ds, tmp_path):
    """Bundles written before timeframes were genes (version 2: no timeframes, regime, clock, graphs)."""
    def to_v2(m):
        m["version"] = 2
        for name in ("a", "b"):
            del m["models"][name]["timeframes"]

    old = Bundle.load(without_graphs(exported[0], tmp_path / "v2.evo", to_v2), verify=True)
    assert old.engine.name == "torch"
    assert old.decide(ds.bars, last=5) == Bundle.load(exported[0], engine="torch").decide(ds.bars, last=5)
    assert [d.signal for d in old.decide(ds.bars, last=5)] == [d.signal for d in bundle.decide(ds.bars, last=5)]


def test_a_bundle_trained_with_the_cuda_backend_loads_and_decides_on_the_cpu(exported, bundle, ds, tmp_path):
    def to_cuda(m):
        for name in ("a", "b"):
            m["models"][name]["config"]["backend"] = "cuda"

    cuda = Bundle.load(resign(exported[0], tmp_path / "cuda.evo", to_cuda), verify=True, engine="torch")
    assert cuda.manifest["models"]["a"]["config"]["backend"] == "cuda"
    assert cuda.models["a"].config.backend == "vanilla" and cuda.models["a"].config.slstm_at == (0,)
    assert cuda.decide(ds.bars, last=5) == Bundle.load(exported[0], engine="torch").decide(ds.bars, last=5)


# ---------------------------------------------------------------------------------- live stream

@pytest.mark.parametrize("data, engine", [("nvda", "onnx"), ("indexfut", "onnx"), ("nvda", "torch")])
def test_the_stream_decides_as_the_full_history_does(exported, request, data, engine):
    """Every streamed decision over 300 bars equals full-history ``decide``: NVDA daily 1999-2014
    (4012 bars), and 3000 bars of the 1-minute index future (overnight gaps included). The stream
    keeps only tail_bars (576) bars, so every recursive indicator is reseeded ~3000 bars late."""
    bundle = Bundle.load(exported[0], engine=engine)
    bars = request.getfixturevalue(data)
    if data == "indexfut":
        bars = bars.iloc[10_000:13_000]
    assert len(bars) - STREAMED > 2 * bundle.tail_bars
    full, streamed = stream_vs_full(bundle, bars, STREAMED)
    assert [d.time for d in streamed] == [t.isoformat() for t in bars.index[-STREAMED:]]
    diff = max(max(abs(d.p_a - pa[2]), abs(d.p_b - pb[2])) for d, pa, pb in zip(streamed, full.p_a, full.p_b))
    assert diff <= PROB_TOL
    names = {1: "long", 0: "flat", -1: "short"}
    assert [d.signal for d in streamed] == [names[int(s)] for s in full.signal]
    assert len({d.signal for d in streamed}) == 2, "both signals should occur, or the comparison is weak"
    assert bundle.settled and bundle.bars_seen == len(bars)


def test_a_tail_without_the_seed_margin_would_not_match(exported, bundle, nvda):
    """Control: with only warm-up + window (no seed margin), the EMA-type features differ and the
    probabilities move by far more than the tolerance: the test above has teeth."""
    short = Bundle({**bundle.manifest, "tail_bars": bundle.min_bars}, bundle.engine, bundle.scalers)
    full, streamed = stream_vs_full(short, nvda, 40)
    diff = max(abs(d.p_b - pb[2]) for d, pb in zip(streamed, full.p_b))
    assert diff > 100 * PROB_TOL


def test_step_needs_min_bars_and_takes_each_bar_once_in_order(bundle, nvda):
    bundle.reset()
    rows = list(nvda.iloc[: bundle.min_bars + 1].iterrows())
    assert all(bundle.step(row) is None for _, row in rows[: bundle.min_bars - 1])
    first = bundle.step(rows[bundle.min_bars - 1][1])
    assert first == bundle.decide(nvda.iloc[: bundle.min_bars])[0]       # exact while nothing was dropped
    with pytest.raises(DataError, match="not after"):
        bundle.step(rows[3][1])
    bad = dict(rows[-1][1]) | {"time": rows[-1][0], "low": -1.0}
    with pytest.raises(DataError, match="prices"):
        bundle.step(bad)
    with pytest.raises(DataError, match="lacks"):
        bundle.step({"time": rows[-1][0], "close": 1.0})
    assert bundle.bars_seen == bundle.min_bars                          # refused bars left no trace
    d = bundle.step({"Time": str(rows[-1][0]), **{k.capitalize(): v for k, v in rows[-1][1].items()}})
    assert d == bundle.decide(nvda.iloc[: bundle.min_bars + 1])[0]


# ---------------------------------------------------------------------------------- CLI

NVDA_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "NVDA_1d_1999_2014.csv"


def test_predict_stream_prints_the_same_decisions_as_predict(exported, capsys):
    from evo.cli import main

    # the NVDA file ends in 2014: replaying history needs --allow-stale
    assert main(["predict", "--bundle", str(exported[0]), "--data", str(NVDA_CSV), "--bars", "4", "--json",
                 "--allow-stale"]) == 0
    batch = json.loads(capsys.readouterr().out)
    assert main(["predict", "--bundle", str(exported[0]), "--data", str(NVDA_CSV), "--bars", "4", "--stream",
                 "--json", "--allow-stale"]) == 0
    lines = capsys.readouterr().out.splitlines()
    streamed = [json.loads(line) for line in lines]
    assert [d["time"] for d in streamed] == [d["time"] for d in batch]
    assert [d["signal"] for d in streamed] == [d["signal"] for d in batch]
    assert max(abs(s["p_a"] - b["p_a"]) for s, b in zip(streamed, batch)) <= PROB_TOL


def test_bench_bundle_reports_both_paths(exported, capsys):
    from evo.cli import main

    assert main(["bench-bundle", str(exported[0]), "--data", str(NVDA_CSV), "--decisions", "5", "--cold-starts", "0",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for path in ("full", "stream"):
        assert 0 < report[path]["p50_ms"] <= report[path]["p99_ms"]
    assert report["ratio_p50"] > 0 and report["signals_equal"] == 5 and report["tail_bars"] == 576


def test_a_corrupt_bundle_exits_2_with_one_line(exported, tmp_path, capsys):
    from evo.cli import main

    bad = tmp_path / "corrupt.evo"
    raw = bytearray(exported[0].read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    for extra in ([], ["--stream"]):
        assert main(["predict", "--bundle", str(bad), "--data", str(NVDA_CSV), *extra]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("evo: error:") and "corrupt" in lines[0]


@pytest.mark.slow
def test_predict_in_a_fresh_process_imports_no_search_library(exported):
    bundle, data = str(exported[0]), str(NVDA_CSV)
    code = ("import sys; from evo.cli import main; "
            f"rc = main(['predict', '--bundle', {bundle!r}, '--data', {data!r}, '--allow-stale']) or "
            f"main(['predict', '--bundle', {bundle!r}, '--data', {data!r}, '--stream', '--bars', '3', '--json', "
            "'--allow-stale']); "
            "bad = sorted(m for m in ('deap', 'optuna', 'nevergrad', 'vectorbt') if m in sys.modules); "
            "print('LOADED', bad); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout
    assert len([line for line in proc.stdout.splitlines() if line.startswith("{")]) == 3


# ------------------------------------------------------------------ multi-timeframe and regime bundles

MULTI_TINY = {**TINY, "search": {**TINY["search"], "timeframes": [1, 5, 15], "fusion": ["concat", "attention"],
                                 "regime": ["none", "features", "gate"]}}


def multi_genome() -> Genome:
    """A: 1/5/15-minute encoders fused by attention, regime inputs; B: 1/5-minute, concat, gating
    the threshold. Finite-memory features, so a short stream tail must reproduce everything."""
    return Genome(
        model_a=ModelGenes(("body_range", "gap", "close_pos"), 8, 1, 2, (0,), 0.0, timeframes=(1, 5, 15),
                           fusion="attention", regime="features"),
        model_b=ModelGenes(("logret_5", "bb_pctb_20_2", "realvol_20"), 8, 1, 2, (), 0.0, timeframes=(1, 5),
                           regime="gate"),
        seq_len=8, horizon=2, consensus="either", threshold=0.36,
    )


@pytest.fixture(scope="module")
def multi_exported(indexfut, tmp_path_factory):
    budget = budget_from_dict("multi", MULTI_TINY)
    ds = prepare_dataset(indexfut.iloc[:5000].copy(), "indexfut", budget)
    g = multi_genome()
    rec = record(g)
    rec.result["risk"] = {**rec.result["risk"], "threshold": 0.4, "gate_low": -0.04, "gate_high": 0.05}
    fit = train_final(rec, ds, budget, seed=1)
    path = tmp_path_factory.mktemp("multi") / "multi.evo"
    return path, write_member_bundle(fit, rec, ds, budget, path), ds


def test_multi_timeframe_bundle_round_trip(multi_exported):
    from models.multi import MultiTimeframeModel

    path, manifest, ds = multi_exported
    b = Bundle.load(path, verify=True, engine="torch")
    assert manifest["clock"] == {"base_seconds": 60, "label": "close", "week_days": 5}
    assert manifest["models"]["a"]["timeframes"] == [1, 5, 15] and manifest["models"]["a"]["config"]["fusion"]
    assert manifest["models"]["a"]["regime"]["mode"] == "features"
    assert manifest["consensus"]["gate_model"] == "b" and manifest["consensus"]["gate_high"] == 0.05
    assert isinstance(b.models["a"], MultiTimeframeModel) and len(b.models["a"].encoders) == 3
    assert manifest["golden"]["trained_model_max_diff"] <= 1e-6
    assert manifest["min_bars"] == max(15 * (1 + 8 + 1), 5 * (20 + 8 + 1))   # x15: warm-up 1 + window 8
    assert manifest["tail_bars"] >= manifest["min_bars"]
    with pytest.raises(DataError):
        b.decide(ds.bars.iloc[-(manifest["min_bars"] - 30):])
    # the ONNX graphs of both multi-timeframe encoders (attention + sLSTM, concat) decide alike
    graphs = Bundle.load(path, verify=True, engine="onnx")
    assert manifest["graphs"]["check"]["differ"] == 0 and manifest["graphs"]["check"]["max_prob_diff"] <= 1e-5
    want, got = b.probabilities(ds.bars, last=50), graphs.probabilities(ds.bars, last=50)
    np.testing.assert_allclose(got.p_a, want.p_a, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got.p_b, want.p_b, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got.signal, want.signal)


def test_multi_timeframe_stream_decides_as_the_full_history(multi_exported, indexfut):
    """Bar by bar, the bundle rebuilds the 5- and 15-minute bars from its tail and decides as the
    full history does (1e-5), after the tail has dropped thousands of bars."""
    path, manifest, _ = multi_exported
    b = Bundle.load(path)
    bars = indexfut.iloc[10_000:10_000 + 2 * b.tail_bars + 120]
    full, streamed = stream_vs_full(b, bars, 120)
    diff = max(max(abs(d.p_a - pa[2]), abs(d.p_b - pb[2])) for d, pa, pb in zip(streamed, full.p_a, full.p_b))
    assert diff <= PROB_TOL
    names = {1: "long", 0: "flat", -1: "short"}
    assert [d.signal for d in streamed] == [names[int(s)] for s in full.signal]
    assert b.settled
