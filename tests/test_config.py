"""Budget presets parse into bounded, validated configs; gpu without CUDA is a clear error."""

from __future__ import annotations

import pytest

from evo.config import budget_from_dict, check_device
from evo.errors import ConfigError
from experiments import load_budget


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu"])
def test_presets_parse(name):
    b = load_budget(name)
    assert b.name == name
    assert b.ga.population >= 2 and b.evaluate.folds >= 1
    assert all(any(e % h == 0 for h in b.search.num_heads) for e in b.search.embedding_dim)


def test_gpu_preset_opens_the_reference_ranges():
    s = load_budget("gpu").search
    assert min(s.embedding_dim) == 64 and max(s.embedding_dim) == 512
    assert s.num_blocks == (2, 8) and set(s.horizon) == {1, 3, 5, 10}


def test_gpu_budget_without_cuda_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="CUDA"):
        check_device(load_budget("gpu"))


def test_user_preset_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[search]\nembedding_dim = [32]\nnum_heads = [2]\n[ga]\npopulation = 4\n')
    b = load_budget(str(path))
    assert b.name == "mine" and b.search.embedding_dim == (32,) and b.ga.population == 4


@pytest.mark.parametrize("bad", [
    {"search": {"embedding_dim": [10], "num_heads": [4]}},   # no head divides 10
    {"search": {"dropout": [0.5, 0.1]}},
    {"train": {"max_epochs": 0}},
    {"ga": {"population": 1}},
    {"evaluate": {"nonsense": 1}},
    {"surprise": {}},
])
def test_invalid_presets_are_refused(bad):
    with pytest.raises(ConfigError):
        budget_from_dict("bad", bad)


def test_unknown_budget_name():
    with pytest.raises(ConfigError, match="unknown budget"):
        load_budget("huge")
