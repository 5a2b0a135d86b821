"""Regimes: causal statistics, thresholds fitted on training rows only, the regime inputs.

Real bars from ../shared/data (NVIDIA daily, the 1-minute index future); nothing mocked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evo.errors import GenomeError
from evo.pipeline.regime import RegimeThresholds, fit_regime, regime_features, regime_inputs, vol_regime


@pytest.mark.parametrize("dataset", ["nvda", "indexfut"])
def test_regime_inputs_do_not_look_ahead(dataset: str, request: pytest.FixtureRequest) -> None:
    """Deleting or changing every bar after t leaves rows <= t unchanged."""
    bars = request.getfixturevalue(dataset).iloc[:1500]
    full = regime_inputs(bars)
    assert np.isnan(full[:19, 0]).all() and np.isfinite(full[20:, 0]).all()
    assert np.isnan(full[:59, 1]).all() and np.isfinite(full[59:, 1]).all()
    for k in (60, 700, 1499):
        assert np.array_equal(regime_inputs(bars.iloc[:k]), full[:k], equal_nan=True)
        changed = bars.copy()
        changed.iloc[k:, :4] *= 1.5
        assert np.array_equal(regime_inputs(changed)[:k], full[:k], equal_nan=True)


def test_thresholds_come_from_training_rows_only(nvda: pd.DataFrame) -> None:
    raw = regime_inputs(nvda)
    train = (100, 2000)
    thr = fit_regime(raw, train)
    changed = nvda.copy()
    changed.iloc[2000:, :4] *= np.linspace(1.0, 3.0, len(nvda) - 2000)[:, None]
    assert fit_regime(regime_inputs(changed), train) == thr            # the future does not move them
    changed_inside = nvda.copy()
    changed_inside.iloc[1500:2000, :4] *= np.linspace(1.0, 3.0, 500)[:, None]
    assert fit_regime(regime_inputs(changed_inside), train) != thr     # the training rows do
    assert 0 < thr.vol_low < thr.vol_high and thr.trend > 0
    # About a third of the training rows in each volatility regime.
    share = np.bincount(vol_regime(raw[100:2000], thr), minlength=3) / 1900
    assert np.allclose(share, 1 / 3, atol=0.01)
    assert RegimeThresholds.from_dict(thr.to_dict()) == thr
    with pytest.raises(GenomeError):
        fit_regime(raw, (0, 10))


def test_regime_features(indexfut: pd.DataFrame) -> None:
    raw = regime_inputs(indexfut.iloc[:4000])
    thr = fit_regime(raw, (0, 3000))
    f = regime_features(raw, thr)
    assert f.shape == (4000, 2) and set(np.unique(f)) <= {-1.0, 0.0, 1.0}
    assert (f[:59, 1] == 0).all()                                      # warm-up is neutral
    high = raw[:, 0] > thr.vol_high
    assert (f[high, 0] == 1).all() and (f[raw[:, 0] < thr.vol_low, 0] == -1).all()
    assert (f[raw[:, 1] > thr.trend, 1] == 1).all() and (f[raw[:, 1] < -thr.trend, 1] == -1).all()


def test_the_gate_moves_the_threshold_by_volatility_regime() -> None:
    """signal_for with a regime: the low regime's rows use threshold + gate_low, the high regime's
    threshold + gate_high, the mid regime's the threshold; without offsets the regime changes nothing."""
    from evo.evaluation.risk import RiskParams, gates, signal_for
    from evo.genome import Genome, ModelGenes

    g = Genome(ModelGenes(("a",), 8, 1, 2, (), 0.0, regime="gate"), ModelGenes(("b",), 8, 1, 2, (), 0.0),
               seq_len=8, horizon=1, consensus="both", threshold=0.5)
    assert gates(g) and not gates(Genome(ModelGenes(("a",), 8, 1, 2, (), 0.0), g.model_b, 8, 1, "both", 0.5))
    up = np.array([0.45, 0.55, 0.45, 0.55, 0.45, 0.55])
    p = np.column_stack([(1 - up) / 2, (1 - up) / 2, up])
    regime = np.array([0, 0, 1, 1, 2, 2])
    risk = RiskParams(threshold=0.5, gate_low=-0.1, gate_high=0.1)
    assert signal_for(p, p, g, risk, False, regime).tolist() == [1, 1, 0, 1, 0, 0]
    plain = RiskParams(threshold=0.5)
    assert signal_for(p, p, g, plain, False, regime).tolist() == signal_for(p, p, g, plain, False).tolist()
    assert "gate_low" not in plain.to_dict() and RiskParams.from_dict(risk.to_dict()) == risk
