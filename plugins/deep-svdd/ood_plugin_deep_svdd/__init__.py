"""Deep SVDD and Deep SAD for oodx: ``DeepSVDDLoss``, ``DeepSADLoss`` and ``DeepSVDDScorer``.

Importing this package does not import torch; the classes load on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(
    __name__, {"DeepSVDDLoss": ".loss", "DeepSADLoss": ".loss", "DeepSVDDScorer": ".scorer"}
)

__all__ = ["DeepSADLoss", "DeepSVDDLoss", "DeepSVDDScorer", "__version__"]
