"""Entropic open-set and Objectosphere losses (Dhamija et al., NeurIPS 2018) for oodx.

Importing this package is light: the classes are loaded on first use.
"""

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "EntropicOpenSetLoss": ".loss",
        "ObjectosphereLoss": ".loss",
        "ObjectosphereScorer": ".scorer",
    },
)

__all__ = ["EntropicOpenSetLoss", "ObjectosphereLoss", "ObjectosphereScorer", "__version__"]
