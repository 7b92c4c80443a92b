"""Learned-confidence loss (DeVries & Taylor, 2018) and its confidence scorer for oodx.

Importing this package is light: the classes are loaded on first use.
"""

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ConfidenceLoss": ".loss",
        "ConfidenceScorer": ".scorer",
        "split_confidence": ".scorer",
    },
)

__all__ = ["ConfidenceLoss", "ConfidenceScorer", "split_confidence", "__version__"]
