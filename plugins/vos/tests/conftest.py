"""Shared fixtures: pytorch-ood 0.4.0's losses and its WeightedEBO detector (reference only)."""

from __future__ import annotations

import importlib
import sys
import types

import pytest


@pytest.fixture(scope="session")
def ref():
    """``pytorch_ood.loss`` of pytorch-ood 0.4.0."""
    reference = pytest.importorskip("ood_core.testing.reference")
    try:
        return reference.pytorch_ood_losses()
    except ImportError as exc:  # pragma: no cover - pytorch-ood not installed
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def webo(ref):
    """0.4.0's ``WeightedEBO`` (its detector package imports torchvision; load the module alone)."""
    root = sys.modules["pytorch_ood"].__path__[0]
    if "pytorch_ood.detector" not in sys.modules:
        package = types.ModuleType("pytorch_ood.detector")
        package.__path__ = [f"{root}/detector"]
        sys.modules["pytorch_ood.detector"] = package
    return importlib.import_module("pytorch_ood.detector.webo").WeightedEBO


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is faster, and much faster on a shared machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
