"""The meaning of the weights a bundle stores, as a version string (no torch needed to read it).

Bump :data:`EXPORT_LAYOUT` when the meaning of the exported tensors changes (names, shapes, the
sLSTM kernels' layout: :mod:`models.network`); bundles store it and readers refuse another one.
"""

from __future__ import annotations

__all__ = ["EXPORT_LAYOUT"]

EXPORT_LAYOUT = "evo-direction-model/1 (slstm: xlstm external layout)"

