"""The bundle's ONNX graphs and the trading PC without torch (issue 18).

- every genome family (all mLSTM, sLSTM, mixed, multi-timeframe concat/attention) exports to a graph
  that gives the torch model's probabilities within 1e-5;
- the export refuses graphs that do not reproduce the torch path, and int8 graphs that change more
  than ``max_disagreement`` of the holdout's decisions, writing nothing;
- the engine rule; bundles without graphs (versions 2, 3) still load, on torch;
- ``predict`` and ``--stream`` in a fresh process where ``import torch`` and ``import xlstm`` fail
  decide as the torch engine does.

One bundle per module: the genome, tiny budget and data of test_bundle.py (the last 1500 NVIDIA
daily bars, a 20 % holdout from bar 1200; model A has an sLSTM block, model B is all mLSTM).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from test_bundle import NVDA_CSV, TINY, genome, record

from evo.config import budget_from_dict
from evo.deploy.bundle import GRAPHS, Bundle
from evo.deploy.engines import ONNX_TOLERANCE, OnnxEngine, choose_engine
from evo.deploy.export import export_member, train_final, write_member_bundle
from evo.errors import BundleError
from evo.evaluation.dataset import prepare_dataset
from models import ModelConfig, MultiConfig, build_model, load_model, predict_proba, state_dict_for_export
from models.onnx import to_onnx

ROOT = Path(__file__).resolve().parents[1]
PROB_TOL = ONNX_TOLERANCE    # 1e-5: onnxruntime vs torch, float32 graphs (measured ~1e-7)

# ---------------------------------------------------------------------------------- every genome family

BASE = {"n_features": 5, "embedding_dim": 16, "num_blocks": 1, "num_heads": 4, "slstm_at": (), "dropout": 0.1,
        "seq_len": 12}
FAMILIES = {
    "mlstm": ModelConfig(**{**BASE, "num_blocks": 2}),
    "slstm": ModelConfig(**{**BASE, "slstm_at": (0,)}),
    "mixed": ModelConfig(**{**BASE, "num_blocks": 3, "slstm_at": (1,), "proj_factor": 1.5}),
    "multi-concat": MultiConfig(ModelConfig(**{**BASE, "slstm_at": (0,)}), (1, 5), "concat"),
    "multi-attention": MultiConfig(ModelConfig(**{**BASE, "num_blocks": 2, "slstm_at": (0,)}), (1, 5, 15),
                                   "attention"),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_genome_family_exports_to_a_graph_equal_to_the_torch_model(family):
    """Weights moved off their initial values (so every gate matters), windows at batch 1 and 9."""
    cfg = FAMILIES[family]
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    tensors = state_dict_for_export(model)
    graph = to_onnx(cfg, tensors)
    engine = OnnxEngine({"a": graph})
    torch_model = load_model(cfg, tensors)                     # what the torch engine runs
    X = (2 * np.random.default_rng(1).standard_normal((9, cfg.seq_len, cfg.n_features))).astype(np.float32)
    for batch in (X[:1], X):
        want, got = predict_proba(torch_model, batch), engine.proba("a", batch)
        assert got.shape == want.shape and np.abs(got - want).max() <= PROB_TOL
        np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    with torch.no_grad():
        ret = torch_model(torch.from_numpy(X))[1].numpy()
    got_ret = engine.sessions["a"].run(["ret"], {"x": X})[0]
    assert np.abs(got_ret - ret).max() <= PROB_TOL                # the return head is in the graph too
    assert engine.input_shape("a")[1:] == [cfg.seq_len, cfg.n_features]
    import onnx

    ops = [n.op_type for n in onnx.load_from_string(graph).graph.node]
    assert ("Loop" in ops) == cfg.has_slstm                        # the sLSTM recurrence is one loop, not unrolled


# ---------------------------------------------------------------------------------- export

@pytest.fixture(scope="module")
def budget():
    return budget_from_dict("tiny", TINY)


@pytest.fixture(scope="module")
def ds(nvda, budget):
    return prepare_dataset(nvda.iloc[-1500:].copy(), "nvda", budget)


@pytest.fixture(scope="module")
def fit(ds, budget):
    return train_final(record(genome()), ds, budget, seed=1)


@pytest.fixture(scope="module")
def exported(fit, ds, budget, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "member.evo"
    write_member_bundle(fit, record(genome()), ds, budget, path)
    return path


def _graph_with_bias(graph: bytes, shift: tuple[float, float, float]) -> bytes:
    """``graph`` with ``shift`` added to the class head's bias (a graph that decides otherwise)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load_from_string(graph)
    for i, init in enumerate(m.graph.initializer):
        if init.name == "head_cls.bias":
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(init) + np.asarray(shift, np.float32), init.name))
            return m.SerializeToString()
    raise AssertionError("no head_cls.bias in the graph")


def test_export_refuses_graphs_that_do_not_reproduce_the_torch_path(ds, budget, tmp_path, monkeypatch):
    """Graphs 1e-3 off in a logit: the export fails with the largest difference, in one line, and
    leaves nothing (export_member stages the bundle)."""
    import evo.deploy.graphs as graphs

    real = graphs.export_graphs
    monkeypatch.setattr(graphs, "export_graphs",
                        lambda *a: {k: _graph_with_bias(g, (0.0, 0.0, 1e-3)) if k == "a" else g
                                    for k, g in real(*a).items()})
    out = tmp_path / "member.evo"
    with pytest.raises(BundleError, match=r"ONNX graphs do not reproduce the torch models over the holdout") as info:
        export_member(record(genome()), ds, budget, out, seed=1)
    message = str(info.value)
    assert "\n" not in message and "differ by up to" in message
    diff = float(message.split("differ by up to ")[1].split(" ")[0])
    assert 1e-5 < diff < 1e-3                                  # a 1e-3 logit shift moves p by less than 1e-3
    assert list(tmp_path.iterdir()) == []


def test_quantised_graphs_record_their_agreement_and_decide_as_recorded(fit, ds, budget, exported, tmp_path):
    """Real int8 quantisation: the manifest's disagreement is what the loaded int8 bundle does
    over the holdout, and verify() holds the int8 graphs to their own golden block."""
    out = tmp_path / "int8.evo"
    m = write_member_bundle(fit, record(genome()), ds, budget, out, quantize="int8", max_disagreement=1.0)
    q = m["graphs"]["quantization"]
    assert m["graphs"]["quantize"] == "int8" and q["decisions"] == ds.n_bars - 1 - 1200
    assert 0 <= q["differ"] <= q["decisions"] and q["disagreement"] == q["differ"] / q["decisions"]
    assert q["latency_ms"]["int8"]["p50"] > 0 and q["latency_gain_p50"] > 0
    int8 = Bundle.load(out, verify=True)
    assert int8.engine.name == "onnx"
    bars = ds.bars.iloc[: ds.n_bars - 1]
    got = int8.probabilities(bars, last=q["decisions"])
    floats = Bundle.load(exported).probabilities(bars, last=q["decisions"])
    assert int((got.signal != floats.signal).sum()) == q["differ"]
    moved = max(np.abs(got.p_a - floats.p_a).max(), np.abs(got.p_b - floats.p_b).max())
    assert abs(moved - q["max_prob_diff"]) <= 1e-9                 # same graphs, same windows, same machine
    with zipfile.ZipFile(out) as zf:
        import onnx

        ops = {n.op_type for n in onnx.load_from_string(zf.read("model_b.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops        # really quantised


def test_quantised_graphs_that_change_decisions_are_refused(fit, ds, budget, tmp_path, monkeypatch):
    """'int8' graphs pushing every decision long: refused at the default limit (0), one line,
    nothing written; accepted when the limit allows it, with the share recorded."""
    import evo.deploy.graphs as graphs

    monkeypatch.setattr(graphs, "quantize_int8", lambda g: _graph_with_bias(g, (-5.0, -5.0, 5.0)))
    out = tmp_path / "int8.evo"
    with pytest.raises(BundleError, match=r"int8 graphs change \d+ of \d+ decisions over the holdout") as info:
        export_member(record(genome()), ds, budget, out, seed=1, quantize="int8")
    assert "\n" not in str(info.value) and "--max-disagreement 0.00%" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    m = write_member_bundle(fit, record(genome()), ds, budget, out, quantize="int8", max_disagreement=1.0)
    q = m["graphs"]["quantization"]
    assert q["differ"] > 0 and q["max_disagreement"] == 1.0
    assert {d.signal for d in Bundle.load(out).decide(ds.bars, last=5)} == {"long"}
    assert Bundle.load(out, engine="torch").decide(ds.bars, last=5) != Bundle.load(out).decide(ds.bars, last=5)


def test_export_cli_checks_max_disagreement_first(tmp_path, capsys):
    from evo.cli import main

    assert main(["export", str(tmp_path / "no-run"), "--member", "abcd", "--quantize", "int8",
                 "--max-disagreement", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-disagreement must be a fraction in [0, 1]" in err[0]


# ---------------------------------------------------------------------------------- engines and old bundles

def test_the_engine_rule():
    assert choose_engine("auto", True) == "onnx"          # onnxruntime is installed here
    assert choose_engine("auto", False) == "torch"
    assert choose_engine("torch", True) == "torch"
    assert choose_engine("onnx", True) == "onnx"
    with pytest.raises(BundleError, match="no ONNX graphs"):
        choose_engine("onnx", False)
    with pytest.raises(BundleError, match="unknown engine"):
        choose_engine("tensorrt", True)


def version_3(src: Path, dst: Path) -> Path:
    """``src`` as bundle version 3 wrote it: no ONNX entries, no ``graphs`` block."""
    with zipfile.ZipFile(src) as zf:
        items = {n: zf.read(n) for n in zf.namelist() if n not in GRAPHS}
    manifest = json.loads(items["manifest.json"])
    manifest.pop("graphs", None)
    manifest["entries"] = {n: d for n, d in manifest["entries"].items() if n not in GRAPHS}
    manifest["version"] = 3
    items["manifest.json"] = json.dumps(manifest, indent=1).encode()
    items["manifest.sha256"] = hashlib.sha256(items["manifest.json"]).hexdigest().encode()
    with zipfile.ZipFile(dst, "w") as zf:
        for name, data in items.items():
            zf.writestr(name, data)
    return dst


def test_a_bundle_without_graphs_runs_on_torch_and_refuses_the_onnx_engine(fit, ds, budget, exported, tmp_path,
                                                                           capsys):
    """Written without graphs (as before version 4), then marked version 3: loads, verifies and
    decides on torch as the version-4 bundle does on either engine."""
    plain = tmp_path / "plain.evo"
    m = write_member_bundle(fit, record(genome()), ds, budget, plain, graphs=False)
    assert "graphs" not in m and set(m["entries"]) == {"model_a.safetensors", "model_b.safetensors"}
    old = Bundle.load(version_3(plain, tmp_path / "v3.evo"), verify=True)
    assert old.engine.name == "torch" and old.manifest["version"] == 3
    new = Bundle.load(exported)
    assert [d.signal for d in old.decide(ds.bars, last=20)] == [d.signal for d in new.decide(ds.bars, last=20)]
    with pytest.raises(BundleError, match="v3.evo: this bundle carries no ONNX graphs"):
        Bundle.load(tmp_path / "v3.evo", engine="onnx")
    from evo.cli import main

    assert main(["predict", "--bundle", str(tmp_path / "v3.evo"), "--data", str(NVDA_CSV), "--allow-stale",
                 "--engine", "onnx"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evo:")]
    assert len(err) == 1 and "no ONNX graphs" in err[0]


def test_a_graph_entry_without_its_checksum_is_refused(exported, tmp_path):
    with zipfile.ZipFile(exported) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(items["manifest.json"])
    del manifest["entries"]["model_a.onnx"]
    items["manifest.json"] = json.dumps(manifest).encode()
    items["manifest.sha256"] = hashlib.sha256(items["manifest.json"]).hexdigest().encode()
    bad = tmp_path / "unlisted.evo"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, data in items.items():
            zf.writestr(name, data)
    with pytest.raises(BundleError):
        Bundle.load(bad)
    with zipfile.ZipFile(bad, "w") as zf:   # one graph without the other
        for name, data in items.items():
            if name != "model_b.onnx":
                zf.writestr(name, data)
    with pytest.raises(BundleError, match="model_a.onnx without model_b.onnx"):
        Bundle.load(bad)


# ---------------------------------------------------------------------------------- without torch

HIDE_TORCH = '''
import sys

class _Hidden:
    """Make torch and xlstm look uninstalled: their import raises ModuleNotFoundError."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "xlstm"):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
        return None

sys.meta_path.insert(0, _Hidden())
'''

RUN_PREDICT = '''
import json, sys
from evo.cli import main
rc = main(sys.argv[1:])
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "xlstm", "safetensors", "deap", "optuna",
                                                         "nevergrad", "vectorbt"})
print("LOADED", json.dumps(loaded), file=sys.stderr)
sys.exit(rc)
'''


def _no_torch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    hide = tmp_path / "hide"
    hide.mkdir(exist_ok=True)
    (hide / "sitecustomize.py").write_text(HIDE_TORCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", RUN_PREDICT, *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)


def test_predict_and_stream_without_torch_decide_as_the_torch_engine(exported, nvda, tmp_path):
    common = ["predict", "--bundle", str(exported), "--data", str(NVDA_CSV), "--bars", "4", "--json",
              "--allow-stale"]
    batch = _no_torch(tmp_path, *common)
    assert batch.returncode == 0, batch.stderr
    assert 'LOADED []' in batch.stderr                           # no torch, xlstm, safetensors, search library
    stream = _no_torch(tmp_path, *common, "--stream")
    assert stream.returncode == 0, stream.stderr
    assert 'LOADED []' in stream.stderr
    want = Bundle.load(exported, engine="torch").decide(nvda, last=4)
    for got in (json.loads(batch.stdout), [json.loads(line) for line in stream.stdout.splitlines()]):
        assert [d["time"] for d in got] == [d.time for d in want]
        assert [d["signal"] for d in got] == [d.signal for d in want]
        assert max(max(abs(g["p_a"] - w.p_a), abs(g["p_b"] - w.p_b)) for g, w in zip(got, want)) <= PROB_TOL
    # the hiding works: torch is really absent there
    torch_asked = _no_torch(tmp_path, *common, "--engine", "torch")
    err = [line for line in torch_asked.stderr.splitlines() if line.startswith("evo:")]
    assert torch_asked.returncode == 2 and len(err) == 1 and "needs torch and xlstm" in err[0]


# ---------------------------------------------------------------------------------- bench and packaging

def test_bench_bundle_times_both_engines_cold_starts_and_install_sizes(exported, tmp_path, capsys):
    from evo.cli import main
    from experiments.bench.render import experiment_sections

    record_path = tmp_path / "trading_pc.json"
    assert main(["bench-bundle", str(exported), "--data", str(NVDA_CSV), "--decisions", "5", "--cold-starts", "1",
                 "--record", str(record_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    eng = report["engines"]
    for e in ("onnx", "torch"):
        for part in ("step", "models"):
            assert 0 < eng[e][part]["p50_ms"] <= eng[e][part]["p99_ms"]
    assert eng["signals_equal"] == 5 and eng["max_prob_diff"] <= PROB_TOL
    cold = report["cold_start"]["median_s"]
    assert set(cold) == {"import pandas, talib", "features only", "predict --engine onnx", "predict --engine torch"}
    assert all(v > 0 for v in cold.values())
    sizes = report["install"]
    assert "torch" in sizes["torch"]["largest_mib"] and "onnxruntime" in sizes["runtime"]["largest_mib"]
    assert sizes["runtime"]["mib"] < sizes["torch"]["mib"] and not sizes["runtime"]["missing"]
    text = "\n".join(experiment_sections(tmp_path))
    assert "## Trading PC: onnx vs torch engine" in text and "Bundle.step per bar" in text


def test_the_runtime_requirements_are_the_runtime_set_without_torch():
    from evo.commands.bench_bundle import RUNTIME_SET

    full = {line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()}
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements-runtime.txt").read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("-")]
    names = {line.split("=")[0].split(">")[0].split("<")[0].lower() for line in lines}
    assert names == set(RUNTIME_SET) and not names & {"torch", "xlstm", "safetensors"}
    assert set(lines) <= full                                   # the same pins as the full install

