"""II loss for oodx: ``IILoss`` and ``IIScorer``.

Importing this package does not import torch; the classes load on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"IILoss": ".loss", "IIScorer": ".scorer"})

__all__ = ["IILoss", "IIScorer", "__version__"]
