"""VOS for oodx: energy-based uncertainty regularisation, virtual outlier synthesis, weighted energy.

Du et al., "VOS: Learning What You Don't Know by Virtual Outlier Synthesis", ICLR 2022.
Importing this package is light; the torch-based classes load on first access.
"""

from ood_core.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "VOSRegLoss": ".loss",
        "VirtualOutlierSynthesizingRegLoss": ".loss",
        "WeightedEnergyScore": ".scorer",
        "weighted_energy": ".functional",
    },
)
