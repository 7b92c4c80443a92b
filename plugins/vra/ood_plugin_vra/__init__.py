"""VRA (Xu, Lian, Liu and Tao, NeurIPS 2023): ``VRA``, a fitted oodx scorer shaping feature maps.

Importing this package does not import torch; the scorer loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"VRA": ".scorer"})

__all__ = ["VRA", "__version__"]
