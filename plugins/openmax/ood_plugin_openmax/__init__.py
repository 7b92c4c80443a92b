"""OpenMax with a Weibull fit in torch (Bendale & Boult, CVPR 2016) for oodx: ``OpenMax``.

Importing this package does not import torch; the scorer loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"OpenMax": ".scorer"})

__all__ = ["OpenMax", "__version__"]
