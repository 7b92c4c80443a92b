"""Maximum concept matching (Ming et al., NeurIPS 2022) for oodx: ``MCM``.

Importing this package does not import torch; the scorer loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"MCM": ".scorer"})

__all__ = ["MCM", "__version__"]
