"""Energy-bounded regularisation (Liu et al., NeurIPS 2020) for oodx: ``EnergyRegularizedLoss``.

Its natural scorer is the built-in ``energy`` scorer (:class:`ood_core.builtin.scorers.EnergyScore`).
Importing this package does not import torch; the loss loads on first access.
"""

from __future__ import annotations

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(__name__, {"EnergyRegularizedLoss": ".loss"})

__all__ = ["EnergyRegularizedLoss", "__version__"]
