"""Background-class loss and scorer (outliers as an extra class) for oodx.

Importing this package is light: the classes are loaded on first use.
"""

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(
    __name__, {"BackgroundClassLoss": ".loss", "BackgroundClassScorer": ".scorer"}
)

__all__ = ["BackgroundClassLoss", "BackgroundClassScorer", "__version__"]
