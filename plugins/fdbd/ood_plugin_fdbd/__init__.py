"""Fast decision-boundary distance scorer (Liu & Qin, ICML 2024): ``fDBD``, a fitted oodx scorer.

Importing this package does not import torch; the scorer loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"fDBD": ".scorer"})

__all__ = ["fDBD", "__version__"]
