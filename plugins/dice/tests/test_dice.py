"""DICE: pytorch-ood 0.4.0 parity on the same features, the mask, export, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_dice import DICE

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.posthoc import assert_onnx_matches, cluster_head, cluster_samples
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"
DIM, CLASSES = 32, 5


def _data(seed):
    x, y = cluster_samples(300, DIM, CLASSES, seed=seed)
    test = torch.cat([cluster_samples(40, DIM, CLASSES, seed=seed + 9)[0], torch.randn(40, DIM)])
    return x.relu(), y, test.relu()  # post-ReLU features, as DICE assumes


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pytorch_ood_fitted_on_the_same_features(p, seed):
    x, y, test = _data(seed)
    y[::5] = -1  # OOD rows: dropped by both
    head = cluster_head(DIM, CLASSES)
    ours = ood_core.create_scorer("DICE", head=head, p=p).fit(x, y)
    theirs = pytorch_ood_detector("dice").DICE(None, head.weight, head.bias, p).fit_features(x, y)
    assert torch.equal(ours.masked_weight != 0, theirs.masked_w != 0)
    torch.testing.assert_close(ours(test), theirs.predict_features(test), rtol=1e-5, atol=1e-5)


def test_masks_the_fraction_p_of_lowest_contributions():
    x, y, test = _data(2)
    head = cluster_head(DIM, CLASSES)
    scorer = DICE(None, head.weight, head.bias, 0.7).fit([x[:100], x[100:]])
    contribution = x.double().mean(0)[None] * head.weight.double()
    kept = scorer.masked_weight != 0
    assert kept.sum() == round(0.3 * DIM * CLASSES)
    assert contribution[kept].min() > contribution[~kept].max()
    logits = test @ (head.weight * kept).T + head.bias
    torch.testing.assert_close(scorer(test), -torch.logsumexp(logits, dim=1))


def test_exports_to_onnx_with_its_fitted_mask():
    x, y, test = _data(3)
    assert_onnx_matches(DICE(head=cluster_head(DIM, CLASSES), p=0.5).fit(x, y), test)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda h: DICE(torch.nn.Identity(), head=h, p=0.5), "DICE: argument 'encoder'"),
        (lambda h: DICE(p=0.5), "DICE: argument 'head'"),
        (lambda h: DICE(head=h), "DICE: argument 'p'"),
        (lambda h: DICE(head=h, p=1.0), "DICE: argument 'p'"),
        (lambda h: DICE(head=torch.nn.ReLU(), p=0.5), "DICE: argument 'head' must be an nn.Linear"),
        (lambda h: DICE(None, h.weight, h.bias, 0.5, head=h), "DICE: argument 'head' must be None"),
        (lambda h: DICE(head=h, p=0.5, detector=3), "DICE: argument 'detector'"),
        (lambda h: DICE(head=h, p=0.5).fit(torch.rand(20, 7)), r"DICE.fit: argument 'x'"),
        (lambda h: DICE(head=h, p=0.5).fit(torch.full((3, DIM), float("nan"))), "NaN"),
        (lambda h: DICE(head=h, p=0.5).fit(torch.rand(20, DIM))(torch.rand(2, 5)), "'features'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(cluster_head(DIM, CLASSES))


def test_unfitted_use_raises():
    with pytest.raises(NotFittedError, match="DICE is not fitted"):
        DICE(head=cluster_head(DIM, CLASSES), p=0.5)(torch.rand(2, DIM))


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (16,)
