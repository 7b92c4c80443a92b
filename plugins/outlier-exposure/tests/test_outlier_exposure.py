"""OutlierExposureLoss: the paper's formula, pytorch-ood 0.4.0 parity, divergences, training."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ood_plugin_outlier_exposure import OutlierExposureLoss

import ood_core
from ood_core.builtin.scorers import MaxSoftmax
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses
from ood_core.testing.toy import smoke_train

README = Path(__file__).resolve().parents[1] / "README.md"


def _reference(**kwargs):
    return pytorch_ood_losses().OutlierExposureLoss(**kwargs)


def _inputs(seed: int, shape: tuple[int, ...], ood: float = 0.4, dtype=torch.float32):
    """Logits ``shape`` (B, C[, H, W]) and targets with at least one ID and one OOD entry."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    target_shape = (shape[0], *shape[2:])
    y = torch.randint(0, shape[1], target_shape, generator=g)
    outlier = torch.rand(target_shape, generator=g) < ood
    if 0.0 < ood < 1.0:
        outlier.view(-1)[0], outlier.view(-1)[-1] = False, True
    return logits, torch.where(outlier, torch.full_like(y, -1), y)


def _value_and_grad(loss, logits, y):
    x = logits.clone().requires_grad_(True)
    value = loss(x, y)
    (grad,) = torch.autograd.grad(value.sum(), x)
    return value, grad


def _paper_loss(logits: torch.Tensor, y: torch.Tensor, alpha: float) -> float:
    """The reference implementation's loss, written out entry by entry (float64, Python)."""
    x = logits.double().movedim(1, -1).reshape(-1, logits.shape[1])
    t = y.reshape(-1)
    ce, oe = [], []
    for row, label in zip(x, t):
        logp = torch.log_softmax(row, dim=0)
        if label >= 0:
            ce.append(-float(logp[label]))
        else:
            oe.append(-sum(float(v) for v in logp) / len(row))
    mean = lambda v: sum(v) / len(v) if v else 0.0  # noqa: E731
    return mean(ce) + alpha * mean(oe)


SHAPES = [(16, 5), (7, 10), (3, 4, 5, 6), (2, 3, 4, 4)]


# ---------------------------------------------------------------------------------------------
# differential tests: where 0.4.0 agrees with the paper (per-entry terms, sums, one-sided batches)
# and with 0.4.0's own weighting kept reachable (batch_mean=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    "kwargs",
    [
        {"reduction": "none"},
        {"reduction": None, "alpha": 1.3},
        {"reduction": "sum"},
        {"reduction": "sum", "alpha": 0.0},
        {"reduction": "mean", "batch_mean": True},
        {"reduction": "mean", "batch_mean": True, "alpha": 2.0},
    ],
)
def test_matches_pytorch_ood(seed, shape, kwargs):
    ref_kwargs = {k: v for k, v in kwargs.items() if k != "batch_mean"}
    ours, ref = OutlierExposureLoss(**kwargs), _reference(**ref_kwargs)
    logits, y = _inputs(seed, shape)
    v_ours, g_ours = _value_and_grad(ours, logits, y)
    v_ref, g_ref = _value_and_grad(ref, logits, y)
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ood", [0.0, 1.0])
@pytest.mark.parametrize("alpha", [0.5, 3.0])
def test_matches_pytorch_ood_on_one_sided_batches(shape, ood, alpha):
    """With only ID or only outlier entries both weightings coincide (paper = 0.4.0)."""
    logits, y = _inputs(4, shape, ood=ood)
    v_ours, g_ours = _value_and_grad(OutlierExposureLoss(alpha), logits, y)
    v_ref, g_ref = _value_and_grad(_reference(alpha=alpha), logits, y)
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-6)


def test_oe_term_is_cross_entropy_to_uniform():
    logits, y = _inputs(0, (6, 4), ood=1.0, dtype=torch.float64)
    oe = OutlierExposureLoss(alpha=1.0).terms(logits, y)["oe"]
    uniform = torch.full((6, 4), 0.25, dtype=torch.float64)
    expected = -(uniform * torch.log_softmax(logits, dim=1)).sum(dim=1)
    torch.testing.assert_close(oe, expected)


# ---------------------------------------------------------------------------------------------
# divergences from 0.4.0, each checked against the paper's formula written out here


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_mean_averages_each_term_over_its_own_part(seed, shape, alpha):
    logits, y = _inputs(seed, shape, ood=0.3)
    expected = _paper_loss(logits, y, alpha)
    ours = float(OutlierExposureLoss(alpha)(logits, y))
    ref = float(_reference(alpha=alpha)(logits, y))
    assert ours == pytest.approx(expected, rel=1e-5)
    assert ref != pytest.approx(expected, rel=1e-3)  # 0.4.0 divides both by the batch size


def test_mean_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, -1.0]])
    y = torch.tensor([0, -1, -1])
    ce = math.log(1 + math.exp(-2.0))
    oe = [math.log(2.0), math.log(math.exp(1) + math.exp(-1))]
    expected = ce + 0.5 * (oe[0] + oe[1]) / 2
    assert float(OutlierExposureLoss()(logits, y)) == pytest.approx(expected)
    whole_batch = (ce + 0.5 * (oe[0] + oe[1])) / 3
    assert float(_reference()(logits, y)) == pytest.approx(whole_batch)
    assert float(OutlierExposureLoss(batch_mean=True)(logits, y)) == pytest.approx(whole_batch)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_low_and_double_precision_logits(dtype):
    logits, y = _inputs(1, (12, 5))
    with pytest.raises(RuntimeError):  # 0.4.0: index_put dtype mismatch
        _reference()(logits.to(dtype), y)
    x = logits.to(dtype).requires_grad_(True)
    value = OutlierExposureLoss()(x, y)
    assert value.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    value.backward()
    assert x.grad is not None and x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()
    expected = _paper_loss(logits.to(dtype), y, 0.5)
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    assert float(value.detach()) == pytest.approx(expected, rel=tol)


@pytest.mark.parametrize("shape", [(0, 4), (0, 4, 3, 3)])
@pytest.mark.parametrize("batch_mean", [False, True])
def test_empty_batch_is_zero_not_nan(shape, batch_mean):
    x = torch.zeros(shape, requires_grad=True)
    y = torch.zeros((0, *shape[2:]), dtype=torch.long)
    assert torch.isnan(_reference()(x, y))
    value = OutlierExposureLoss(batch_mean=batch_mean)(x, y)
    assert float(value.detach()) == 0.0 and value.requires_grad


# ---------------------------------------------------------------------------------------------
# state, construction, scorer, registration


def test_loads_a_pytorch_ood_state_dict():
    ours = OutlierExposureLoss()
    ours.load_state_dict(_reference(alpha=0.3).state_dict(), strict=True)
    assert set(ours.state_dict()) == set(_reference().state_dict()) == set()


def test_constructor_matches_pytorch_ood():
    loss = OutlierExposureLoss()
    ref = _reference()
    assert (loss.alpha, loss.reduction) == (ref.alpha, ref.reduction) == (0.5, "mean")
    assert OutlierExposureLoss(0.2, "sum").alpha == 0.2


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": float("inf")}, "alpha"),
        ({"alpha": "0.5"}, "alpha"),
        ({"reduction": "max"}, "reduction"),
        ({"batch_mean": 1}, "batch_mean"),
    ],
)
def test_bad_constructor_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=f"OutlierExposureLoss: argument '{arg}'"):
        OutlierExposureLoss(**kwargs)


def test_bad_forward_arguments_name_what_is_wrong():
    loss = OutlierExposureLoss()
    with pytest.raises(ValueError, match=r"OutlierExposureLoss: argument 'logits' must be"):
        loss(torch.randn(4, 3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"argument 'target' must be a class index below 3"):
        loss(torch.randn(4, 3), torch.tensor([0, 1, 3, -1]))
    with pytest.raises(ValueError, match=r"argument 'target' must be of shape \(2, 4, 4\)"):
        loss(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long))


def test_none_reduction_keeps_the_target_shape():
    logits, y = _inputs(0, (2, 3, 4, 5))
    out = OutlierExposureLoss(reduction="none")(logits, y)
    assert out.shape == y.shape


def test_scorer_is_msp():
    scorer = OutlierExposureLoss().scorer()
    assert isinstance(scorer, MaxSoftmax)
    logits = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    torch.testing.assert_close(scorer(logits), -torch.softmax(logits, 1).amax(1))


def test_registration():
    info = ood_core.get_info("loss", "outlier-exposure")
    assert ood_core.get_info("loss", "oe") == info
    assert info.target == "ood_plugin_outlier_exposure.loss:OutlierExposureLoss"
    assert info.scorer == "msp" and info.uses_ood and info.inputs == ("logits", "target")
    assert set(info.tasks) == {"classification", "segmentation"}


def test_package_import_is_light():
    code = "import sys, ood_plugin_outlier_exposure; sys.exit(3 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


# ---------------------------------------------------------------------------------------------
# training and documentation


def test_smoke_training_separates_outliers():
    loss = OutlierExposureLoss()
    result = smoke_train(loss, inputs=("logits", "target"), reads="logits", steps=200)
    assert result["AUROC"] > 0.8, result
    assert result["ACC"] > 0.9, result


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (16,)
    assert torch.isfinite(namespace["loss"])
