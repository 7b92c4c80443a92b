"""The SHE plugin passes the oodx conformance kit."""

from __future__ import annotations

import torch

from ood_core.testing import ScorerCase, parametrize_with_checks
from ood_core.testing.contract import _fit_data

DIM, CLASSES = 16, 4


def _kit_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The kit's own fit data (15 samples, labels arange % 4), one tensor."""
    batches = _fit_data(ScorerCase("she", dim=DIM, num_classes=CLASSES), "features")
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def _trained_head() -> torch.nn.Linear:
    """A head that fits the kit's data (least squares on one-hot targets, D > N): SHE keeps
    only correctly classified samples, so every class needs one."""
    x, y = _kit_data()
    ones = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    solution = torch.linalg.lstsq(ones, torch.eye(CLASSES)[y] * 10).solution
    head = torch.nn.Linear(DIM, CLASSES)
    with torch.no_grad():
        head.weight.copy_(solution[:-1].T)
        head.bias.copy_(solution[-1])
    return head


def _fit(scorer, spec) -> None:
    scorer.fit(*_kit_data())


CASES = [ScorerCase("she", {"head": _trained_head()}, dim=DIM, num_classes=CLASSES, fit=_fit)]


@parametrize_with_checks(CASES)
def test_oodx_conformance(case, check):
    check(case)
