"""LogitNorm: paper formula, pytorch-ood 0.4.0 (values and gradients), divergences."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from ood_plugin_logitnorm import LogitNorm, logit_norm_loss

from ood_core.builtin.scorers import MaxSoftmax
from ood_core.testing import InputSpec, default_inputs
from ood_core.testing.dropin import assert_same_signature
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses
from ood_core.testing.toy import smoke_train

REDUCTIONS = ("mean", "sum", "none")


def inputs(seed: int, batch: int = 9, classes: int = 5, mode="mixed", spatial=(), dtype=None):
    """Logits and targets from the conformance kit's generator (``mode``: mixed, id or ood)."""
    task = "segmentation" if spatial else "classification"
    spec = InputSpec(batch, task, dtype or torch.float32, mode=mode, num_classes=classes, seed=seed)
    return default_inputs(spec.replace(spatial=spatial or spec.spatial), ("logits", "target"))


def paper(logits: torch.Tensor, target: torch.Tensor, t: float) -> torch.Tensor:
    """The LogitNorm loss of Wei et al. per known sample (fp64), with the authors' 1e-7 on the norm."""
    out = []
    for f, y in zip(logits.double(), target):
        if y < 0:
            out.append(torch.zeros((), dtype=torch.float64))
            continue
        scaled = f / (t * (torch.sqrt((f**2).sum()) + 1e-7))
        out.append(-torch.log(torch.exp(scaled[y]) / torch.exp(scaled).sum()))
    return torch.stack(out)


def reference(logits, target, t=1.0, reduction="mean"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.4.0 warns when it drops outliers
        return pytorch_ood_losses().LogitNorm(t=t, reduction=reduction)(logits, target)


@pytest.mark.parametrize("t", [1.0, 0.04])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_paper(t, reduction):
    logits, target = inputs(0)
    values = paper(logits, target, t)
    known = target >= 0
    expected = {
        "mean": values.sum() / known.sum(),
        "sum": values.sum(),
        "none": values,
    }[reduction]
    torch.testing.assert_close(
        LogitNorm(t=t, reduction=reduction)(logits, target).double(), expected, rtol=1e-5, atol=1e-5
    )


def test_logit_scale_does_not_change_the_loss():
    logits, target = inputs(1, mode="id")
    torch.testing.assert_close(LogitNorm()(logits * 50, target), LogitNorm()(logits, target))


def test_zero_logits_are_finite():
    logits = torch.zeros(3, 4, requires_grad=True)
    value = LogitNorm(t=0.04)(logits, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(value, torch.log(torch.tensor(4.0)))
    (grad,) = torch.autograd.grad(value, logits)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(9, 5), (16, 3), (4, 10)])
@pytest.mark.parametrize("t", [1.0, 0.04])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_equals_pytorch_ood(seed, shape, t, reduction):
    logits, target = inputs(seed, *shape)
    ours = LogitNorm(t=t, reduction=reduction)(logits, target)
    theirs = reference(logits, target, t, reduction)
    torch.testing.assert_close(ours, theirs)
    ours_g = torch.autograd.grad(ours, logits)[0]
    theirs_g = torch.autograd.grad(theirs, logits)[0]
    torch.testing.assert_close(ours_g, theirs_g)
    torch.testing.assert_close(logit_norm_loss(logits, target, t, reduction), ours)


def test_loads_pytorch_ood_state_dict():
    state = pytorch_ood_losses().LogitNorm(t=0.5).state_dict()
    LogitNorm(t=0.5).load_state_dict(state, strict=True)


def test_keywords_and_forward_arguments_match_pytorch_ood():
    ref = pytorch_ood_losses()
    assert_same_signature(LogitNorm, ref.LogitNorm)
    assert_same_signature(logit_norm_loss, ref.logitnorm.logit_norm_loss)


# -- divergences from pytorch-ood 0.4.0 ------------------------------------------------------


def test_reduction_none_keeps_one_value_per_sample():
    """0.4.0 drops the outlier rows: its output length depends on the data."""
    logits, target = inputs(3)
    known = target >= 0
    theirs = reference(logits, target, reduction="none")
    ours = LogitNorm(reduction="none")(logits, target)
    assert theirs.shape == (int(known.sum()),) and ours.shape == target.shape
    torch.testing.assert_close(ours[known], theirs)
    assert (ours[~known] == 0).all()


def test_segmentation_is_per_pixel_classification():
    """0.4.0 accepts only (B,) targets."""
    logits, target = inputs(4, batch=2, classes=4, spatial=(3, 5))
    with pytest.raises(ValueError):
        reference(logits, target)
    ours = LogitNorm(t=0.5, reduction="none")(logits, target)
    flat = LogitNorm(t=0.5, reduction="none")(
        logits.movedim(1, -1).reshape(-1, 4), target.reshape(-1)
    )
    torch.testing.assert_close(ours.reshape(-1), flat)


def test_half_precision_is_computed_in_fp32():
    logits, target = inputs(5, dtype=torch.float16)
    got = LogitNorm(t=0.04, reduction="none")(logits, target)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), paper(logits, target, 0.04), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("t", [0.0, -1.0])
def test_non_positive_temperature_raises(t):
    with pytest.raises(ValueError, match="LogitNorm.*'t'"):
        LogitNorm(t=t)
    with pytest.raises(ValueError, match="logit_norm_loss.*'t'"):
        logit_norm_loss(*inputs(6), t=t)


def test_scorer_is_builtin_msp():
    assert isinstance(LogitNorm().scorer(), MaxSoftmax)


# -- training smoke test -----------------------------------------------------------------------


def test_trains_a_detector():
    result = smoke_train(
        LogitNorm(t=0.1), inputs=("logits", "target"), reads="logits", use_ood=False, steps=200
    )
    assert result["AUROC"] > 0.8 and result["ACC"] > 0.9, result


def test_readme_example_runs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace = run_readme_examples(Path(__file__).parents[1] / "README.md")
    assert namespace["criterion"].t == 0.04
