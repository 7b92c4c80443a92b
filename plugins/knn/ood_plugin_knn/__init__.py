"""Deep nearest-neighbour OOD scorer (Sun et al., ICML 2022): ``KNN``, a fitted oodx scorer.

Importing this package does not import torch; the scorer loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"KNN": ".scorer"})

__all__ = ["KNN", "__version__"]
