"""LogitNorm loss (Wei et al., ICML 2022) for oodx.

Importing this package is light: the class is loaded on first use. Its natural scorer is the
built-in ``msp``.
"""

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"LogitNorm": ".loss", "logit_norm_loss": ".loss"})

__all__ = ["LogitNorm", "logit_norm_loss", "__version__"]
