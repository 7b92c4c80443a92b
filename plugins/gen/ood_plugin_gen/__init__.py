"""Generalized entropy score (Liu et al., CVPR 2023) for oodx: ``GEN``.

Importing this package does not import torch; the scorer loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"GEN": ".scorer"})

__all__ = ["GEN", "__version__"]
