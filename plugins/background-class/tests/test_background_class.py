"""BackgroundClassLoss and its scorer: formula, pytorch-ood 0.4.0, divergences."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from ood_plugin_background_class import BackgroundClassLoss, BackgroundClassScorer

from ood_core.testing import InputSpec, default_inputs
from ood_core.testing.dropin import assert_same_signature
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses
from ood_core.testing.toy import smoke_train
from ood_core.validation import set_value_checks

REDUCTIONS = ("mean", "sum", "none")


def inputs(seed: int, batch: int = 9, n: int = 4, spatial=(), dtype=None):
    """``(B, n + 1[, H, W])`` logits and targets in ``0..n-1`` or -1, from the kit's generator."""
    spec = InputSpec(
        batch, "segmentation" if spatial else "classification", num_classes=n, seed=seed
    )
    spec = spec.replace(spatial=spatial or spec.spatial, dtype=dtype or torch.float32)
    (target,) = default_inputs(spec, ("target",))
    (logits,) = default_inputs(spec.replace(num_classes=n + 1, seed=seed + 1), ("logits",))
    return logits, target


def paper(logits: torch.Tensor, target: torch.Tensor, n: int) -> torch.Tensor:
    """Per-sample cross-entropy with outliers labelled as class n (fp64)."""
    out = []
    for x, y in zip(logits.double(), target):
        label = n if y < 0 else int(y)
        out.append(-(x[label] - torch.log(torch.exp(x).sum())))
    return torch.stack(out)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_formula(reduction):
    logits, target = inputs(0)
    values = paper(logits, target, 4)
    expected = {"mean": values.mean(), "sum": values.sum(), "none": values}[reduction]
    got = BackgroundClassLoss(4, reduction=reduction)(logits, target)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [1, 4, 9])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_equals_pytorch_ood(seed, n, reduction):
    logits, target = inputs(seed, batch=11, n=n)
    ours = BackgroundClassLoss(n, reduction=reduction)(logits, target)
    theirs = pytorch_ood_losses().BackgroundClassLoss(n, reduction=reduction)(logits, target)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(
        torch.autograd.grad(ours.sum(), logits)[0], torch.autograd.grad(theirs.sum(), logits)[0]
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_segmentation_equals_pytorch_ood(reduction):
    logits, target = inputs(3, batch=2, n=3, spatial=(4, 5))
    ours = BackgroundClassLoss(3, reduction=reduction)(logits, target)
    theirs = pytorch_ood_losses().BackgroundClassLoss(3, reduction=reduction)(logits, target)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(
        torch.autograd.grad(ours.sum(), logits)[0], torch.autograd.grad(theirs.sum(), logits)[0]
    )


def test_loads_pytorch_ood_state_dict():
    ref = pytorch_ood_losses().BackgroundClassLoss(5)
    ours = BackgroundClassLoss(5)
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert ours.num_classes == ref.num_classes == 5


def test_keywords_and_forward_arguments_match_pytorch_ood():
    assert_same_signature(BackgroundClassLoss, pytorch_ood_losses().BackgroundClassLoss)


# -- divergences from pytorch-ood 0.4.0 ------------------------------------------------------


@pytest.mark.parametrize("spatial", [(), (3, 4)])
def test_empty_batch_is_zero_with_graph(spatial):
    """0.4.0 averages over nothing: NaN."""
    logits, target = inputs(4, batch=0, spatial=spatial)
    assert torch.isnan(pytorch_ood_losses().BackgroundClassLoss(4)(logits, target))
    value = BackgroundClassLoss(4)(logits, target)
    assert value.item() == 0.0 and value.requires_grad
    value.backward()


def test_reduction_none_is_accepted():
    """0.4.0 hands reduction=None to F.cross_entropy, which raises."""
    logits, target = inputs(5)
    with pytest.raises(ValueError):
        pytorch_ood_losses().BackgroundClassLoss(4, reduction=None)(logits, target)
    got = BackgroundClassLoss(4, reduction=None)(logits, target)
    torch.testing.assert_close(got, BackgroundClassLoss(4, reduction="none")(logits, target))
    torch.testing.assert_close(got.double(), paper(logits, target, 4), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("columns", [4, 6])
def test_logits_need_n_plus_one_columns(columns):
    logits = torch.randn(5, columns)
    with pytest.raises(ValueError, match=r"BackgroundClassLoss.*'logits'.*5 columns"):
        BackgroundClassLoss(4)(logits, torch.zeros(5, dtype=torch.long))


@pytest.mark.parametrize("outlier", [-1, -5])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("checks", ["auto", "never"])
def test_any_negative_target_is_the_background_class(outlier, reduction, checks):
    """Relabelling takes a shortcut when every outlier is -1; any negative label must agree."""
    logits, target = inputs(7)
    target = torch.where(target < 0, outlier, target)
    target[0] = outlier
    set_value_checks(checks)
    try:
        got = BackgroundClassLoss(4, reduction=reduction)(logits, target)
    finally:
        set_value_checks("auto")
    values = paper(logits, target, 4)
    expected = {"mean": values.mean(), "sum": values.sum(), "none": values}[reduction]
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


INF, NAN = float("inf"), float("nan")
#: (row, column, value) put into logits of 3 samples with targets [0, -1, 2] (n = 3, 4 columns)
BAD_LOGITS = {
    "NaN in an ID row": (0, 1, NAN),
    "NaN in an outlier row": (1, 0, NAN),
    "+inf in an outlier row": (1, 2, INF),
    "-inf at an ID target": (2, 2, -INF),
    "-inf at an outlier's background class": (1, 3, -INF),
    "a row of -inf": (0, slice(None), -INF),
}


@pytest.mark.parametrize("bad", BAD_LOGITS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bad_logits_raise_in_every_reduction(bad, reduction):
    """The forward checks its result, not the logits: a bad value anywhere must still raise."""
    row, column, value = BAD_LOGITS[bad]
    logits = torch.randn(3, 4)
    logits[row, column] = value
    with pytest.raises(ValueError, match=r"^BackgroundClassLoss: argument 'logits' must be"):
        BackgroundClassLoss(3, reduction=reduction)(logits, torch.tensor([0, -1, 2]))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_minus_inf_masks_a_non_target_class(reduction):
    logits = torch.randn(3, 4)
    logits[0, 1] = logits[1, 0] = logits[2, 3] = -INF
    logits.requires_grad_()
    value = BackgroundClassLoss(3, reduction=reduction)(logits, torch.tensor([0, -1, 2]))
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(logits.grad).all()
    assert logits.grad[0, 1] == 0.0


def test_target_of_background_index_raises():
    logits, target = inputs(6)
    target[0] = 4
    with pytest.raises(ValueError, match=r"BackgroundClassLoss.*'targets'"):
        BackgroundClassLoss(4)(logits, target)


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "3"])
def test_bad_n_classes_raises(bad):
    with pytest.raises(ValueError, match="BackgroundClassLoss.*n_classes"):
        BackgroundClassLoss(bad)


def test_half_precision_is_computed_in_fp32():
    logits, target = inputs(7, dtype=torch.bfloat16)
    got = BackgroundClassLoss(4, reduction="none")(logits, target)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), paper(logits, target, 4), rtol=1e-5, atol=1e-5)


# -- scorer ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial", [(), (3, 4)])
def test_scorer_is_background_softmax_mass(spatial):
    logits, _ = inputs(8, spatial=spatial)
    logits = logits.detach()
    scorer = BackgroundClassLoss(4).scorer()
    assert isinstance(scorer, BackgroundClassScorer)
    torch.testing.assert_close(scorer(logits), torch.softmax(logits, dim=1)[:, 4])
    torch.testing.assert_close(scorer.predict(logits), logits[:, :4].argmax(dim=1))


def test_scorer_needs_a_background_column():
    with pytest.raises(ValueError, match=r"BackgroundClassScorer.*'logits'"):
        BackgroundClassScorer()(torch.randn(3, 1))


def test_readme_example_runs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace = run_readme_examples(Path(__file__).parents[1] / "README.md")
    assert ((namespace["scores"] >= 0) & (namespace["scores"] <= 1)).all()


# -- training smoke test -----------------------------------------------------------------------


def test_trains_a_detector():
    """ToyNet's embedding (dim = 4 classes + background) serves as the N + 1 logits."""
    result = smoke_train(
        BackgroundClassLoss(4),
        inputs=("logits", "target"),
        reads="embedding",
        dim=5,
        steps=200,
        feed=lambda out, y: (out["embedding"], y),
    )
    assert result["AUROC"] > 0.8 and result["ACC"] > 0.9, result
