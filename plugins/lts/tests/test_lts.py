"""LTS: pytorch-ood 0.4.0 parity, export at any batch size (0.4.0's TorchScript fails), errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_lts import LTS

import ood_core
from ood_core.testing.posthoc import assert_onnx_matches, cluster_head, cluster_samples
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"
DIM, CLASSES = 32, 5


def _features(seed):
    x, _ = cluster_samples(60, DIM, CLASSES, seed=seed)
    return torch.cat([x, torch.randn(20, DIM)])


@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 1.0])
def test_matches_pytorch_ood_on_the_same_features(p):
    head, z = cluster_head(DIM, CLASSES), _features(0)
    ours = ood_core.create_scorer("LTS", head=head, p=p)
    theirs = pytorch_ood_detector("lts").LTS(None, head, p)
    torch.testing.assert_close(ours(z), theirs.predict_features(z), rtol=1e-5, atol=1e-5)


def test_the_formula_and_a_sample_without_positive_features():
    head = torch.nn.Linear(4, 3)
    z = torch.tensor([[3.0, -1.0, 1.0, 0.0], [-1.0, -2.0, -0.5, -3.0]])
    got = LTS(head=head, p=0.25)(z)  # k = max(1, 4 - round(3)) = 1: S = (4 / 3)^2
    torch.testing.assert_close(got[0], -torch.logsumexp(head(z[:1]) * (4 / 3) ** 2, dim=1)[0])
    torch.testing.assert_close(got[1], -torch.logsumexp(torch.zeros(3), dim=0))  # S = 0


def test_exports_to_onnx_at_two_batch_sizes():
    assert_onnx_matches(LTS(head=cluster_head(DIM, CLASSES)), _features(1))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda h: LTS(torch.nn.Identity(), h), "LTS: argument 'encoder' must be None"),
        (lambda h: LTS(), "LTS: argument 'head'"),
        (lambda h: LTS(head=h, p=2), "LTS: argument 'p'"),
        (lambda h: LTS(head=h)(torch.rand(2, 7)), "LTS: argument 'features'"),
        (lambda h: LTS(head=h)(torch.rand(2, DIM, 2, 2)), "LTS: argument 'features'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(cluster_head(DIM, CLASSES))


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (16,)
