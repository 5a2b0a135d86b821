"""features: the feature catalog (candlestick patterns, pattern features, indicators) and its cache.

Bars in, a float64 feature matrix out, one column per catalog name; the value at bar ``t`` uses
bars ``<= t`` only. Importing this package is cheap: TA-Lib, ``ta`` and numba load on first use,
and nothing here imports vectorbt, optuna, deap or nevergrad.
"""

from features.cache import cache_key, cache_path, data_hash, load_or_compute
from features.catalog import (
    CATALOG_VERSION,
    KINDS,
    OHLCV_COLUMNS,
    PATTERN_EVENTS,
    SOURCES,
    FeatureSpec,
    catalog,
    compute_feature,
    compute_features,
    feature_spec,
    has_usable_volume,
    model_a_features,
    model_b_features,
    usable_features,
)
from features.timeframes import BarClock, aligned_features, infer_clock, resample_closed, timeframe_features

__all__ = [
    "BarClock",
    "CATALOG_VERSION",
    "KINDS",
    "OHLCV_COLUMNS",
    "PATTERN_EVENTS",
    "SOURCES",
    "FeatureSpec",
    "aligned_features",
    "cache_key",
    "cache_path",
    "catalog",
    "compute_feature",
    "compute_features",
    "data_hash",
    "feature_spec",
    "has_usable_volume",
    "infer_clock",
    "load_or_compute",
    "model_a_features",
    "model_b_features",
    "resample_closed",
    "timeframe_features",
    "usable_features",
]
