"""KL matching to class-typical posteriors (Hendrycks et al., ICML 2022) for oodx: ``KLMatching``.

Importing this package does not import torch; the scorer loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"KLMatching": ".scorer"})

__all__ = ["KLMatching", "__version__"]
