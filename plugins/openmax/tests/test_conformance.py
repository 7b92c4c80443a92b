"""The OpenMax scorer passes the oodx conformance kit."""

import torch

from ood_core.testing import ScorerCase, parametrize_with_checks


def _fit(scorer, spec):
    g = torch.Generator().manual_seed(spec.seed)
    y = torch.arange(80) % spec.num_classes
    logits = torch.randn(80, spec.num_classes, generator=g)
    logits[torch.arange(80), y] += 3
    scorer.fit(logits, y)


CASES = [
    ScorerCase("openmax", {"tailsize": 8, "alpha": 2}, fit=_fit),
    ScorerCase("openmax", {"tailsize": 5, "euclid_weight": 0.5}, fit=_fit, id="openmax-mixed"),
]


@parametrize_with_checks(CASES)
def test_openmax_conformance(case, check):
    check(case)
