"""RankFeat (Song, Sebe and Wang, NeurIPS 2022): ``RankFeat``, an oodx scorer shaping feature maps.

Importing this package does not import torch; the scorer loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"RankFeat": ".scorer"})

__all__ = ["RankFeat", "__version__"]
