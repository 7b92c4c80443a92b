"""LTS, logit scaling (Djurisic et al., 2025): ``LTS``, an oodx scorer with nothing to fit.

Importing this package does not import torch; the scorer loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"LTS": ".scorer"})

__all__ = ["LTS", "__version__"]
