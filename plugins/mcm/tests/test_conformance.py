"""The MCM scorer passes the oodx conformance kit."""

import torch

from ood_core.testing import ScorerCase, parametrize_with_checks

TEXT = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))

CASES = [
    ScorerCase("mcm", {"text_embeddings": TEXT}, num_classes=4, dim=8),
    ScorerCase("mcm", {"text_embeddings": TEXT.double() * 3, "temperature": 0.01}, id="mcm-sharp"),
]


@parametrize_with_checks(CASES)
def test_mcm_conformance(case, check):
    check(case)
