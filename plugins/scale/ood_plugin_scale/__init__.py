"""SCALE (Xu et al., ICLR 2024): ``SCALE``, an oodx scorer scaling feature maps.

Importing this package does not import torch; the scorer loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"SCALE": ".scorer"})

__all__ = ["SCALE", "__version__"]
