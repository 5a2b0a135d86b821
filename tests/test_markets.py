"""experiments.markets: synthetic markets whose planted edge is computed by the catalog's own
code, at bar t from bars <= t."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.markets import FAMILIES, KINDS, check_market, make_market, oracle_sharpe, uses


@pytest.mark.parametrize("kind", KINDS)
def test_the_planted_signal_is_the_catalogs_rule_and_ignores_the_future(kind):
    m = make_market(kind, n_bars=300, seed=3)
    check_market(m)   # the whole catalog recomputed on the finished bars gives the same signal
    short = make_market(kind, n_bars=200, seed=3)
    pd.testing.assert_frame_equal(m.bars.iloc[:200], short.bars)
    assert np.array_equal(m.signal[:200], short.signal)
    if kind == "noise":
        assert not m.signal.any() and m.info["oracle_sharpe"] == 0.0
    else:
        assert 0.05 < m.info["signal_share"] < 0.8


def test_the_edge_is_real_and_strength_zero_removes_it():
    m = make_market("pattern", n_bars=1500, seed=1)
    assert m.info["oracle_sharpe"] > 2.0
    flat = make_market("pattern", n_bars=1500, seed=1, strength=0.0)
    assert abs(oracle_sharpe(flat.bars, m.signal)) < 1.5


def test_a_tampered_signal_is_caught():
    m = make_market("both", n_bars=200, seed=2)
    bad = m.signal.copy()
    i = int(np.flatnonzero(bad)[0])
    bad[i] = 0
    with pytest.raises(AssertionError, match="differs"):
        check_market(type(m)(m.kind, m.bars, bad, m.info))


def test_recovery_of_planted_features_and_their_family():
    assert uses(("cdl_belthold", "gap"), ("rsi_14",), "pattern")
    assert not uses(("gap",), ("cdl_belthold",), "pattern")           # in the wrong model
    assert uses(("upper_shadow",), (), "pattern", family=True) and not uses(("upper_shadow",), (), "pattern")
    assert uses(("cdl_belthold",), ("willr_14",), "both") and not uses(("cdl_belthold",), (), "both")
    assert uses((), ("stoch_k_14_3",), "indicator", family=True) and not uses((), ("stoch_k_14_3",), "indicator")
    assert not uses(("cdl_belthold",), ("willr_14",), "noise")
    import features
    assert set(FAMILIES["cdl_belthold"]) <= set(features.model_a_features())
    assert set(FAMILIES["willr_14"]) <= set(features.model_b_features())


def test_no_planted_feature_is_among_todays_bots():
    from evo.genome import load_genome_file
    from experiments.markets import PLANTED
    from experiments.search_study import ROOT

    [(_, bot)] = load_genome_file(ROOT / "experiments" / "seeds" / "todays_bot.toml")
    for kind in PLANTED:
        assert not uses(tuple(bot.model_a.features), tuple(bot.model_b.features), kind)
