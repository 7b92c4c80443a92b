"""DICE (Sun and Li, ECCV 2022): ``DICE``, a fitted oodx scorer.

Importing this package does not import torch; the scorer loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"DICE": ".scorer"})

__all__ = ["DICE", "__version__"]
