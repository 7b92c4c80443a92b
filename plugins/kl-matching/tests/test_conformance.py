"""The KL-matching scorer passes the oodx conformance kit."""

import torch

from ood_core.testing import ScorerCase, parametrize_with_checks


def _fit(scorer, spec):
    g = torch.Generator().manual_seed(spec.seed)
    logits = torch.randn(64, spec.num_classes, generator=g) * 3
    scorer.fit(logits, torch.arange(64) % spec.num_classes)


def _fit_three_classes(scorer, spec):
    # class 3 is never predicted: the minimum runs over the other three
    logits = torch.randn(64, spec.num_classes, generator=torch.Generator().manual_seed(spec.seed))
    logits[:, 3] -= 20
    scorer.fit(logits)


CASES = [
    ScorerCase("kl-matching", fit=_fit),
    ScorerCase("kl-matching", fit=_fit_three_classes, id="kl-matching-unpredicted-class"),
]


@parametrize_with_checks(CASES)
def test_kl_matching_conformance(case, check):
    check(case)
