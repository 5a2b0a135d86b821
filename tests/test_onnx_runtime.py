"""The direction models as ONNX graphs (issue 18): every genome family (all mLSTM, sLSTM, mixed,
multi-timeframe concat/attention) exports to a graph that gives the torch model's probabilities
within 1e-5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evo.deploy.engines import ONNX_TOLERANCE, OnnxEngine
from models import ModelConfig, MultiConfig, build_model, load_model, predict_proba, state_dict_for_export
from models.onnx import to_onnx

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
