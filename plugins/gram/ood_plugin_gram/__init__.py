"""Gram matrices (Sastry and Oore, ICML 2020): ``Gram``, a fitted multi-layer oodx scorer.

Importing this package does not import torch; the scorer loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"Gram": ".scorer"})

__all__ = ["Gram", "__version__"]
