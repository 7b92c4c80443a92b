"""Entropic open-set and Objectosphere losses: paper formula, pytorch-ood 0.4.0, divergences."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from ood_plugin_entropic import EntropicOpenSetLoss, ObjectosphereLoss, ObjectosphereScorer

from ood_core.testing.dropin import assert_same_signature
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses
from ood_core.testing.toy import smoke_train

REDUCTIONS = ("mean", "sum", "none")


def inputs(seed: int, batch: int = 7, classes: int = 5, dim: int = 6, spatial=(), dtype=None):
    g = torch.Generator().manual_seed(seed)
    dtype = dtype or torch.float32
    logits = (torch.randn(batch, classes, *spatial, generator=g) * 3).to(dtype)
    features = torch.randn(batch, dim, *spatial, generator=g).to(dtype)
    target = torch.randint(0, classes, (batch, *spatial), generator=g)
    target = torch.where(torch.rand(target.shape, generator=g) < 0.4, -1, target)
    return logits.requires_grad_(), features.requires_grad_(), target


def paper_entropic(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample entropic open-set loss written out from the paper, in fp64."""
    out = []
    for x, y in zip(logits.double(), target):
        log_s = x - torch.log(torch.exp(x).sum())
        out.append(-log_s[y] if y >= 0 else -log_s.sum() / len(x))
    return torch.stack(out)


def paper_objectosphere(logits, features, target, alpha, xi):
    """Per-sample Objectosphere loss written out from the paper, in fp64."""
    norms = torch.sqrt((features.double() ** 2).sum(dim=1))
    extra = [max(xi - n, 0.0) ** 2 if y >= 0 else n**2 for n, y in zip(norms, target)]
    return paper_entropic(logits, target) + alpha * torch.stack(
        [torch.as_tensor(e, dtype=torch.float64) for e in extra]
    )


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"mean": values.mean(), "sum": values.sum(), "none": values}[reduction]


# -- paper formula -------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_entropic_matches_paper(reduction):
    logits, _, target = inputs(0)
    got = EntropicOpenSetLoss(reduction)(logits, target)
    torch.testing.assert_close(
        got.double(), reduce(paper_entropic(logits, target), reduction), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_objectosphere_matches_paper(reduction):
    logits, features, target = inputs(1)
    got = ObjectosphereLoss(alpha=0.7, xi=2.0, reduction=reduction)(logits, features, target)
    expected = paper_objectosphere(logits, features, target, 0.7, 2.0)
    torch.testing.assert_close(got.double(), reduce(expected, reduction), rtol=1e-5, atol=1e-5)


def test_entropic_outlier_term_is_minimal_for_uniform_softmax():
    target = torch.tensor([-1])
    uniform = EntropicOpenSetLoss()(torch.zeros(1, 4), target)
    peaked = EntropicOpenSetLoss()(torch.tensor([[5.0, 0.0, 0.0, 0.0]]), target)
    torch.testing.assert_close(uniform, torch.log(torch.tensor(4.0)))
    assert peaked > uniform


def test_segmentation_is_per_pixel_classification():
    logits, features, target = inputs(2, batch=2, spatial=(3, 4))
    loss = ObjectosphereLoss(alpha=0.5, xi=1.5, reduction="none")
    per_pixel = loss(logits, features, target)
    flat = ObjectosphereLoss(alpha=0.5, xi=1.5, reduction="none")(
        logits.movedim(1, -1).reshape(-1, logits.shape[1]),
        features.movedim(1, -1).reshape(-1, features.shape[1]),
        target.reshape(-1),
    )
    assert per_pixel.shape == target.shape
    torch.testing.assert_close(per_pixel.reshape(-1), flat)


# -- differential against pytorch-ood 0.4.0 (where it agrees with the paper) -------------------


def _grads(value, *tensors):
    return torch.autograd.grad(value.sum(), tensors)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(7, 5), (16, 3)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_entropic_equals_pytorch_ood(seed, shape, reduction):
    ref = pytorch_ood_losses().EntropicOpenSetLoss(reduction=reduction)
    logits, _, target = inputs(seed, batch=shape[0], classes=shape[1])
    ours = EntropicOpenSetLoss(reduction=reduction)(logits, target)
    theirs = ref(logits, target)
    torch.testing.assert_close(ours, theirs)
    for a, b in zip(_grads(ours, logits), _grads(theirs, logits)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_entropic_segmentation_equals_pytorch_ood(seed, reduction):
    ref = pytorch_ood_losses().EntropicOpenSetLoss(reduction=reduction)
    logits, _, target = inputs(seed, batch=2, classes=4, spatial=(3, 5))
    ours = EntropicOpenSetLoss(reduction=reduction)(logits, target)
    theirs = ref(logits, target)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(_grads(ours, logits)[0], _grads(theirs, logits)[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kwargs", [{}, {"alpha": 0.3, "xi": 2.5}, {"alpha": 2.0, "xi": 0.5}])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_objectosphere_equals_pytorch_ood(seed, kwargs, reduction):
    ref = pytorch_ood_losses().ObjectosphereLoss(**kwargs, reduction=reduction)
    logits, features, target = inputs(seed, batch=9)
    ours = ObjectosphereLoss(**kwargs, reduction=reduction)(logits, features, target)
    theirs = ref(logits, features, target)
    torch.testing.assert_close(ours, theirs)
    for a, b in zip(_grads(ours, logits, features), _grads(theirs, logits, features)):
        torch.testing.assert_close(a, b)


def test_loads_pytorch_ood_state_dicts():
    ref = pytorch_ood_losses()
    ours = ObjectosphereLoss(alpha=0.5)
    state = ref.ObjectosphereLoss(alpha=0.5).state_dict()
    ours.load_state_dict(state, strict=True)
    assert set(ours.state_dict()) == set(state)
    EntropicOpenSetLoss().load_state_dict(ref.EntropicOpenSetLoss().state_dict(), strict=True)


def test_keywords_and_forward_arguments_match_pytorch_ood():
    ref = pytorch_ood_losses()
    assert_same_signature(EntropicOpenSetLoss, ref.EntropicOpenSetLoss)
    assert_same_signature(ObjectosphereLoss, ref.ObjectosphereLoss)


# -- divergences from pytorch-ood 0.4.0 (each fails on 0.4.0's behaviour) ----------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_double_precision_work(dtype):
    """0.4.0 crashes: it writes the loss of a non-fp32 input into an fp32 buffer."""
    ref = pytorch_ood_losses()
    logits, features, target = inputs(4, dtype=dtype)
    with pytest.raises(RuntimeError):
        ref.ObjectosphereLoss()(logits, features, target)
    with pytest.raises(RuntimeError):
        ref.EntropicOpenSetLoss()(logits, target)
    got = ObjectosphereLoss(reduction="none")(logits, features, target)
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    expected = paper_objectosphere(logits, features, target, 1.0, 1.0)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
    got = EntropicOpenSetLoss(reduction="none")(logits, target)
    torch.testing.assert_close(got.double(), paper_entropic(logits, target), rtol=1e-5, atol=1e-5)


def test_empty_batch_is_zero_with_graph():
    """0.4.0 takes the mean over no samples: NaN."""
    ref = pytorch_ood_losses()
    logits, features, target = inputs(5, batch=0)
    assert torch.isnan(ref.ObjectosphereLoss()(logits, features, target))
    assert torch.isnan(ref.EntropicOpenSetLoss()(logits, target))
    for value in (
        ObjectosphereLoss()(logits, features, target),
        EntropicOpenSetLoss()(logits, target),
    ):
        assert value.item() == 0.0 and value.requires_grad
        value.backward()


def test_score_uses_deep_feature_magnitude():
    """0.4.0 scores with the norm of the logits; the method regularises the deep features."""
    logits, features, _ = inputs(6)
    logits, features = logits.detach(), features.detach()
    theirs = pytorch_ood_losses().ObjectosphereLoss.score(logits)
    msp = torch.softmax(logits.double(), dim=1).max(dim=1).values
    paper = -msp * torch.sqrt((features.double() ** 2).sum(dim=1))
    ours = ObjectosphereLoss.score(logits, features)
    torch.testing.assert_close(ours.double(), paper, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, theirs)
    torch.testing.assert_close(ObjectosphereScorer().combined(logits, features), ours)
    # the exported scorer reads the features alone: -||F(x)||
    torch.testing.assert_close(
        ObjectosphereLoss().scorer()(features).double(), -features.double().norm(dim=1)
    )


def test_score_with_logits_only_warns_and_keeps_0_4_0_value():
    logits = inputs(7)[0].detach()
    with pytest.warns(FutureWarning, match="features"):
        ours = ObjectosphereLoss.score(logits)
    torch.testing.assert_close(ours, pytorch_ood_losses().ObjectosphereLoss.score(logits))


def test_objectosphere_scorer_has_no_class_decision():
    assert not hasattr(ObjectosphereScorer(), "predict")


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda x, f, t: (x, f[:, :, None], t), "features"),
        (lambda x, f, t: (x, f[:-1], t), "features"),
        (lambda x, f, t: (x, f.long(), t), "features"),
    ],
)
def test_bad_features_raise(bad, match):
    args = bad(*inputs(8))
    with pytest.raises(ValueError, match=f"ObjectosphereLoss.*{match}"):
        ObjectosphereLoss()(*args)


def test_bad_keywords_raise():
    with pytest.raises(ValueError, match="reduction"):
        EntropicOpenSetLoss(reduction="max")
    with pytest.raises(ValueError, match="xi"):
        ObjectosphereLoss(xi=-1.0)


# -- training smoke tests ------------------------------------------------------------------


def train(loss: torch.nn.Module, inputs: tuple[str, ...], reads: str) -> dict[str, float]:
    """smoke_train for 200 steps."""
    return smoke_train(loss, inputs=inputs, reads=reads, steps=200)


def test_entropic_trains_a_detector():
    result = train(EntropicOpenSetLoss(), ("logits", "target"), "logits")
    assert result["AUROC"] > 0.8 and result["ACC"] > 0.9, result


def test_objectosphere_trains_a_detector():
    result = train(ObjectosphereLoss(), ("logits", "features", "target"), "features")
    assert result["AUROC"] > 0.8, result


# -- README --------------------------------------------------------------------------------


def test_readme_example_runs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace = run_readme_examples(Path(__file__).parents[1] / "README.md")
    assert (namespace["scores"] <= 0).all()  # negative feature norms
