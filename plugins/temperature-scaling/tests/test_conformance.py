"""The temperature-scaling scorer passes the oodx conformance kit."""

import torch

from ood_core.testing import ScorerCase, parametrize_with_checks


def _fit(scorer, spec):
    g = torch.Generator().manual_seed(spec.seed)
    y = torch.arange(80) % spec.num_classes
    logits = torch.randn(80, spec.num_classes, generator=g) * 2
    logits[torch.arange(80), y] += 1.5  # mostly right, not always: a finite optimum
    scorer.fit(logits, y)


CASES = [ScorerCase("temperature-scaling", fit=_fit)]


@parametrize_with_checks(CASES)
def test_temperature_scaling_conformance(case, check):
    check(case)
