"""Access to pytorch-ood 0.4.0's losses for differential tests, without torchvision.

pytorch-ood's package ``__init__`` imports its models and datasets, which need torchvision (not a
dependency of oodx). Its loss modules themselves need only torch, so :func:`pytorch_ood_losses`
registers empty parent packages and imports ``pytorch_ood.loss`` directly. Test-only: install
with ``pip install --no-deps pytorch-ood==0.4.0``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

REFERENCE_VERSION = "0.4.0"


def pytorch_ood_available() -> bool:
    """Whether pytorch-ood is installed (without importing it)."""
    return importlib.util.find_spec("pytorch_ood") is not None


def pytorch_ood_losses() -> Any:
    """The module ``pytorch_ood.loss`` of the installed pytorch-ood 0.4.0."""
    if "pytorch_ood.loss" in sys.modules:
        return sys.modules["pytorch_ood.loss"]
    spec = importlib.util.find_spec("pytorch_ood")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "differential tests need pytorch-ood 0.4.0: pip install --no-deps pytorch-ood==0.4.0"
        )
    from importlib import metadata

    version = metadata.version("pytorch-ood")
    if version != REFERENCE_VERSION:
        raise ImportError(
            f"differential tests compare with pytorch-ood {REFERENCE_VERSION}, found {version}"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    if "pytorch_ood" not in sys.modules:
        for name, path in (("pytorch_ood", root), ("pytorch_ood.model", root / "model")):
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            package.__package__ = name
            sys.modules[name] = package
        centers = importlib.import_module("pytorch_ood.model.centers")
        model = sys.modules["pytorch_ood.model"]
        model.ClassCenters = centers.ClassCenters
        model.RunningCenters = centers.RunningCenters
    return importlib.import_module("pytorch_ood.loss")


def pytorch_ood_utils() -> Any:
    """The module ``pytorch_ood.utils`` (loaded the same way as the losses)."""
    pytorch_ood_losses()
    return importlib.import_module("pytorch_ood.utils")


def pytorch_ood_detector(module: str) -> Any:
    """The module ``pytorch_ood.detector.<module>`` (e.g. ``"gen"``), without the detector package.

    The package ``__init__`` of ``pytorch_ood.detector`` imports every detector (some need
    torchvision or libraries oodx does not depend on); an empty parent package is registered
    instead, so only the named detector module and what it imports load.
    """
    pytorch_ood_losses()
    if "pytorch_ood.detector" not in sys.modules:
        root = Path(sys.modules["pytorch_ood"].__path__[0])
        package = types.ModuleType("pytorch_ood.detector")
        package.__path__ = [str(root / "detector")]
        package.__package__ = "pytorch_ood.detector"
        sys.modules["pytorch_ood.detector"] = package
    return importlib.import_module(f"pytorch_ood.detector.{module}")
