"""Outlier Exposure for oodx: ``OutlierExposureLoss`` (natural scorer: the built-in ``msp``).

Importing this package does not import torch; the loss loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"OutlierExposureLoss": ".loss"})

__all__ = ["OutlierExposureLoss", "__version__"]
