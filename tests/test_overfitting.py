"""Deflated Sharpe and PBO reproduce the published worked example and behave on known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backtest.overfitting import (
    MIN_TRIALS,
    deflated_sharpe,
    deflated_sharpe_of,
    expected_max_sharpe,
    probability_of_backtest_overfitting,
    return_moments,
)


def test_dsr_reproduces_bailey_lopez_de_prado_2014_example():
    # Annual SR 2.5 over 1250 daily returns, skew -3, kurtosis 10, 100 trials with annual SR
    # variance 0.5: the paper gives SR0 = 0.1132 (daily) and DSR = 0.9004.
    daily_sr = 2.5 / math.sqrt(250)
    assert expected_max_sharpe(100, 0.5 / 250) == pytest.approx(0.1132, abs=5e-5)
    assert deflated_sharpe(daily_sr, 1250, -3.0, 10.0, n_trials=100, sharpe_variance=0.5 / 250) == \
        pytest.approx(0.9004, abs=5e-4)


def test_more_trials_deflate_more():
    values = [deflated_sharpe(0.1, 1000, 0.0, 3.0, n_trials=n, sharpe_variance=0.001) for n in (2, 10, 100, 1000)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_best_of_many_random_walks_is_not_significant():
    rng = np.random.default_rng(0)
    returns = rng.normal(0.0, 0.01, size=(1000, 200))
    sharpes = returns.mean(0) / returns.std(0, ddof=1)
    best = int(np.argmax(sharpes))
    assert deflated_sharpe_of(returns[:, best], sharpes) < 0.95


def test_a_strong_real_edge_survives_deflation():
    rng = np.random.default_rng(1)
    returns = rng.normal(0.0, 0.01, size=(1000, 50))
    returns[:, 0] += 0.004           # per-bar Sharpe ~0.4: far beyond what 50 trials explain
    sharpes = returns.mean(0) / returns.std(0, ddof=1)
    assert deflated_sharpe_of(returns[:, 0], sharpes) > 0.99


def test_return_moments_of_normal_and_flat_series():
    rng = np.random.default_rng(2)
    sr, skew, kurt = return_moments(rng.normal(0.001, 0.01, 200_000))
    assert sr == pytest.approx(0.1, abs=0.01) and abs(skew) < 0.05 and kurt == pytest.approx(3.0, abs=0.05)
    assert return_moments(np.zeros(10)) == (0.0, 0.0, 3.0)


def test_pbo_is_about_one_half_on_noise_and_zero_with_a_dominant_strategy():
    noise = [probability_of_backtest_overfitting(np.random.default_rng(s).normal(0, 0.01, (600, 20)), 8)
             for s in range(20)]
    assert 0.35 < float(np.mean(noise)) < 0.65
    rng = np.random.default_rng(99)
    skilled = rng.normal(0, 0.01, (600, 20))
    skilled[:, 3] += 0.005
    assert probability_of_backtest_overfitting(skilled, 8) == 0.0


def test_pbo_needs_two_strategies():
    assert math.isnan(probability_of_backtest_overfitting(np.zeros((100, 1))))


def _partly_idle_strategies() -> np.ndarray:
    """(320, 9) returns, 8 blocks of 40 bars: strategies that trade in some blocks only (Sharpe
    exactly 0 on a half where they never trade, so they tie in sample), losers, copies of one
    strategy (ties in and out of sample) and three that never trade at all."""
    rng = np.random.default_rng(7)
    m = np.zeros((320, 9))
    m[160:, 0] = rng.normal(0.001, 0.01, 160)          # idle in the first half
    m[:160, 1] = rng.normal(0.001, 0.01, 160)          # idle in the second half
    m[::2, 2] = rng.normal(-0.002, 0.01, 160)          # a loser
    m[:, 3] = rng.normal(0.0, 0.01, 320)
    m[:, 4] = m[:, 3]                                  # an identical copy: tied everywhere
    m[40:120, 5] = rng.normal(0.0005, 0.01, 80)
    return m                                           # columns 6, 7, 8: never traded


def test_pbo_does_not_depend_on_the_order_of_the_columns_even_with_ties():
    m = _partly_idle_strategies()
    rng = np.random.default_rng(0)
    values = {probability_of_backtest_overfitting(m[:, rng.permutation(m.shape[1])], 8) for _ in range(12)}
    values.add(probability_of_backtest_overfitting(m, 8))
    values.add(probability_of_backtest_overfitting(m[:, ::-1], 8))
    assert len(values) == 1, values
    (pbo,) = values
    assert 0.0 <= pbo <= 1.0
    # the never-trading columns are left out: the same figure without them
    assert probability_of_backtest_overfitting(m[:, :6], 8) == pbo


def test_pbo_of_trials_that_never_trade_is_not_meaningful():
    assert math.isnan(probability_of_backtest_overfitting(np.zeros((320, 12)), 8))
    one = np.zeros((320, 12))
    one[:, 4] = np.random.default_rng(3).normal(0.0, 0.01, 320)
    assert math.isnan(probability_of_backtest_overfitting(one, 8))   # one trading trial: nothing to rank
    assert MIN_TRIALS == 2
