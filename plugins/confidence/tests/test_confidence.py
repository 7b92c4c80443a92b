"""ConfidenceLoss and ConfidenceScorer: paper formula, pytorch-ood 0.4.0, divergences."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from ood_plugin_confidence import ConfidenceLoss, ConfidenceScorer, split_confidence

from ood_core.testing.dropin import assert_same_signature
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses
from ood_core.testing.toy import smoke_train


def inputs(seed: int, batch: int = 7, classes: int = 5, ood: float = 0.3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(batch, classes, generator=g) * 3).to(dtype).requires_grad_()
    confidence = torch.rand(batch, 1, generator=g).to(dtype).requires_grad_()
    target = torch.randint(0, classes, (batch,), generator=g)
    target = torch.where(torch.rand(batch, generator=g) < ood, -1, target)
    return logits, confidence, target


def paper(logits, confidence, target, alpha: float = 1.0) -> torch.Tensor:
    """The loss of DeVries & Taylor written out per known sample, in fp64."""
    terms_t, terms_c = [], []
    for x, c, y in zip(logits.double(), confidence.double().reshape(-1), target):
        if y < 0:
            continue
        p = torch.exp(x) / torch.exp(x).sum()
        one_hot = torch.zeros_like(p)
        one_hot[y] = 1
        p_adj = c * p + (1 - c) * one_hot
        terms_t.append(-(torch.log(p_adj) * one_hot).sum())
        terms_c.append(-torch.log(c))
    if not terms_t:
        return torch.zeros((), dtype=torch.float64)
    return torch.stack(terms_t).mean() + alpha * torch.stack(terms_c).mean()


def reference(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.4.0 warns when it drops outliers
        return pytorch_ood_losses().ConfidenceLoss(**kwargs)(*args)


@pytest.mark.parametrize("alpha", [1.0, 0.25])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_paper(alpha, seed):
    logits, confidence, target = inputs(seed)
    got = ConfidenceLoss(alpha=alpha)(logits, confidence, target)
    torch.testing.assert_close(
        got.double(), paper(logits, confidence, target, alpha), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(7, 5), (12, 3), (4, 10)])
@pytest.mark.parametrize("kwargs", [{}, {"alpha": 0.3, "eps": 1e-8}])
def test_equals_pytorch_ood(seed, shape, kwargs):
    logits, confidence, target = inputs(seed, *shape)
    ours = ConfidenceLoss(**kwargs)(logits, confidence, target)
    theirs = reference(logits, confidence, target, **kwargs)
    torch.testing.assert_close(ours, theirs)
    ours_g = torch.autograd.grad(ours, (logits, confidence))
    theirs_g = torch.autograd.grad(theirs, (logits, confidence))
    for a, b in zip(ours_g, theirs_g):
        torch.testing.assert_close(a, b)


def test_clipping_matches_pytorch_ood_at_zero_confidence():
    logits, confidence, target = inputs(3, ood=0.0)
    confidence = torch.zeros_like(confidence).requires_grad_()
    ours = ConfidenceLoss()(logits, confidence, target)
    torch.testing.assert_close(ours, reference(logits, confidence, target))
    assert torch.isfinite(ours) and ours > 50  # -log(1e-24) = 55.3


def test_loads_pytorch_ood_state_dict():
    state = pytorch_ood_losses().ConfidenceLoss(alpha=0.5).state_dict()
    ConfidenceLoss(alpha=0.5).load_state_dict(state, strict=True)


def test_keywords_and_forward_arguments_match_pytorch_ood():
    assert_same_signature(ConfidenceLoss, pytorch_ood_losses().ConfidenceLoss)


# -- divergences from pytorch-ood 0.4.0 ------------------------------------------------------


def test_flat_confidence_is_per_sample_when_batch_equals_classes():
    """0.4.0 broadcasts a (B,) confidence over the classes: with B == C the value is wrong."""
    logits, confidence, target = inputs(4, batch=5, classes=5, ood=0.0)
    flat = confidence.detach().reshape(-1).requires_grad_()
    ours = ConfidenceLoss()(logits, flat, target)
    torch.testing.assert_close(ours, ConfidenceLoss()(logits, confidence, target))
    torch.testing.assert_close(ours.double(), paper(logits, flat, target), rtol=1e-5, atol=1e-5)
    theirs = reference(logits, flat, target)
    assert not torch.allclose(ours, theirs)


def test_flat_confidence_works_when_batch_differs_from_classes():
    """0.4.0 crashes on a (B,) confidence when B != C."""
    logits, confidence, target = inputs(5, batch=6, classes=4, ood=0.0)
    flat = confidence.detach().reshape(-1)
    with pytest.raises(RuntimeError):
        reference(logits, flat, target)
    got = ConfidenceLoss()(logits, flat, target)
    torch.testing.assert_close(got.double(), paper(logits, flat, target), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(6, 4), (6, 2), (6, 1, 1), ()])
def test_other_confidence_shapes_raise(shape):
    logits, _, target = inputs(6, batch=6, classes=4)
    with pytest.raises(ValueError, match=r"ConfidenceLoss.*'confidence'"):
        ConfidenceLoss()(logits, torch.full(shape, 0.5), target)


def test_mismatched_confidence_batch_raises():
    logits, confidence, target = inputs(7)
    with pytest.raises(ValueError, match=r"ConfidenceLoss.*confidence"):
        ConfidenceLoss()(logits, confidence[:-1], target)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_confidence_outside_unit_interval_raises(value):
    logits, confidence, target = inputs(8)
    bad = confidence.detach().clone()
    bad[0] = value
    with pytest.raises(ValueError, match=r"ConfidenceLoss.*'confidence'.*sigmoid"):
        ConfidenceLoss()(logits, bad, target)


def test_half_precision_is_computed_in_fp32():
    logits, confidence, target = inputs(9, dtype=torch.float16)
    got = ConfidenceLoss()(logits, confidence, target)
    assert got.dtype == torch.float32
    torch.testing.assert_close(
        got.double(), paper(logits, confidence, target), rtol=1e-5, atol=1e-5
    )


def test_all_outlier_batch_is_zero_with_graph():
    logits, confidence, target = inputs(10, ood=1.0)
    got = ConfidenceLoss()(logits, confidence, target)
    assert got.item() == 0.0 and got.requires_grad


def test_bad_keywords_raise():
    with pytest.raises(ValueError, match="ConfidenceLoss.*alpha"):
        ConfidenceLoss(alpha=-1.0)
    with pytest.raises(ValueError, match="ConfidenceLoss.*eps"):
        ConfidenceLoss(eps=0.0)


# -- scorer convention -----------------------------------------------------------------------


def test_scorer_reads_the_appended_confidence_logit():
    g = torch.Generator().manual_seed(11)
    output = torch.randn(6, 4, generator=g) * 4
    logits, confidence = split_confidence(output)
    assert logits.shape == (6, 3) and confidence.shape == (6, 1)
    scorer = ConfidenceLoss().scorer()
    assert isinstance(scorer, ConfidenceScorer) and scorer.reads == "logits"
    torch.testing.assert_close(scorer(output), 1 - confidence.squeeze(1))
    torch.testing.assert_close(scorer.predict(output), output[:, :3].argmax(dim=1))
    assert math.isclose(float(scorer(torch.tensor([[0.0, 1e4]]))), 0.0, abs_tol=1e-30)


def test_scorer_needs_a_confidence_column():
    with pytest.raises(ValueError, match=r"ConfidenceScorer.*'logits'"):
        ConfidenceScorer()(torch.randn(3, 1))


# -- training smoke test -----------------------------------------------------------------------


def test_trains_a_detector():
    """ToyNet's embedding (dim = 4 classes + 1) plays the (B, C + 1) output of the convention.

    Trained on known samples only (the method uses no outliers); on this toy problem the learned
    confidence separates ID from OOD less well than with outlier exposure, hence the modest margin.
    """
    result = smoke_train(
        ConfidenceLoss(),
        inputs=("logits", "confidence", "target"),
        reads="embedding",
        dim=5,
        use_ood=False,
        steps=200,
        feed=lambda out, y: (*split_confidence(out["embedding"]), y),
    )
    assert result["AUROC"] > 0.8, result
    assert result["ACC"] > 0.9, result


def test_readme_example_runs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace = run_readme_examples(Path(__file__).parents[1] / "README.md")
    assert isinstance(namespace["scorer"], ConfidenceScorer)
