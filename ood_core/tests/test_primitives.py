"""Shared primitives: labels, reductions, validation messages, centres and distances."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch

import ood_core
from ood_core.arguments import check_positive
from ood_core.centers import ClassCenters, RunningCenters, squared_distances
from ood_core.functional import cross_entropy, energy, nll_and_logsumexp
from ood_core.labels import is_known, is_unknown, known_or_zero
from ood_core.reduction import apply_reduction, in_compute_dtype, masked_mean, masked_reduction
from ood_core.validation import (
    check_batch,
    check_classification,
    check_float,
    check_target,
    check_target_bounds,
    fail_closed,
    set_value_checks,
)


def test_label_convention():
    t = torch.tensor([0, 3, -1, -7])
    assert is_known(t).tolist() == [True, True, False, False]
    assert is_unknown(t).tolist() == [False, False, True, True]
    assert known_or_zero(t).tolist() == [0, 3, 0, 0]


@pytest.mark.parametrize(
    "reduction, expected",
    [("mean", 2.0), ("sum", 6.0), ("none", [1.0, 2.0, 3.0]), (None, [1.0, 2.0, 3.0])],
)
def test_apply_reduction(reduction, expected):
    out = apply_reduction(torch.tensor([1.0, 2.0, 3.0]), reduction)
    assert out.tolist() == expected


@pytest.mark.parametrize("bad", ["avg", "MEAN", 1, "batchmean"])
def test_bad_reduction_names_owner_and_argument(bad):
    with pytest.raises(ValueError, match=r"MyLoss: argument 'reduction' must be one of .* got"):
        apply_reduction(torch.ones(2), bad, "MyLoss")


def test_masked_mean_empty_is_zero_with_graph_and_ignores_masked_nan():
    v = torch.tensor([1.0, float("nan"), 3.0], requires_grad=True)
    m = torch.tensor([True, False, True])
    out = masked_mean(v, m)
    assert out.item() == 2.0
    out.backward()
    assert torch.isfinite(v.grad).all()
    empty = torch.zeros(0, requires_grad=True)
    out = masked_mean(empty, torch.zeros(0, dtype=torch.bool))
    assert out.item() == 0.0 and out.requires_grad
    assert masked_reduction(
        torch.tensor([1.0, 5.0]), torch.tensor([False, True]), "none"
    ).tolist() == [0.0, 5.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5, 2)])
def test_cross_entropy_ignores_ood_matches_torch(dtype, shape):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=g)
    target = torch.randint(-1, 4, (shape[0], *shape[2:]), generator=g)
    ours = cross_entropy(logits.to(dtype), target)
    ref = torch.nn.functional.cross_entropy(logits.to(dtype).float(), target, ignore_index=-1)
    torch.testing.assert_close(ours, ref.to(ours.dtype), atol=1e-5, rtol=1e-5)


def test_cross_entropy_all_ood_is_zero_not_nan():
    logits = torch.randn(3, 4, requires_grad=True)
    out = cross_entropy(logits, torch.full((3,), -1))
    assert out.item() == 0.0 and out.requires_grad


TARGETS = {
    "OOD as -1": [0, -1, 3, -1, 2, 1],
    "OOD below -1": [0, -7, 3, -1, -100, 1],
    "all ID": [0, 1, 3, 2, 2, 1],
    "all OOD": [-1, -3, -1, -1, -2, -1],
}


@pytest.mark.parametrize("targets", TARGETS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("spatial", [(), (2, 3)])
def test_cross_entropy_bounds_shortcut_equals_masked_path(targets, reduction, spatial):
    """With the target's (min, max) read on the host: same values and gradients as without."""
    g = torch.Generator().manual_seed(3)
    target = torch.tensor(TARGETS[targets]).reshape(6, *([1] * len(spatial))).expand(6, *spatial)
    logits = torch.randn((6, 4, *spatial), generator=g, requires_grad=True)
    bounds = (int(target.min()), int(target.max()))
    fast = cross_entropy(logits, target, reduction, bounds=bounds)
    (fast_grad,) = torch.autograd.grad(fast.sum(), logits)
    slow = cross_entropy(logits, target, reduction)
    (slow_grad,) = torch.autograd.grad(slow.sum(), logits)
    torch.testing.assert_close(fast, slow)
    torch.testing.assert_close(fast_grad, slow_grad)
    assert torch.isfinite(fast).all() and fast.requires_grad


def test_check_target_bounds_reads_min_and_max_where_checks_run():
    target = torch.tensor([2, -5, 0])
    assert check_target_bounds("L", target, 3) == (-5, 2)
    with pytest.raises(ValueError, match=r"^L: argument 'y' must be a class index below 2 .* 2"):
        check_target_bounds("L", target, 2, arg="y")
    assert check_target_bounds("L", target[:0], 3) is None
    set_value_checks("never")
    try:
        assert check_target_bounds("L", target, 2) is None
    finally:
        set_value_checks("auto")


@pytest.mark.parametrize("mode, enabled", [("never", False), ("auto", True)])
def test_value_checks_mode_is_read_from_the_environment(mode, enabled):
    code = (
        "import torch; from ood_core.validation import value_checks_enabled; "
        "print(value_checks_enabled(torch.ones(1)))"
    )
    env = {**os.environ, "OODX_VALUE_CHECKS": mode}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(enabled)


@pytest.mark.parametrize("row", [0, 1])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_builtin_cross_entropy_refuses_non_finite_even_in_ignored_rows(row, value, reduction):
    """Row 1 is OOD: ignored by the loss, but a NaN there would still give NaN gradients."""
    logits = torch.randn(3, 4)
    logits[row, 2] = value
    loss = ood_core.create_loss("cross-entropy", reduction=reduction)
    with pytest.raises(ValueError, match=r"^CrossEntropyLoss: argument 'logits' must be"):
        loss(logits, torch.tensor([0, -1, 3]))
    with pytest.raises(ValueError, match=r"^CrossEntropyLoss: argument 'targets' must be a class"):
        loss(torch.randn(3, 4), torch.tensor([0, -1, 4]))


@pytest.mark.parametrize(
    "dtype, expected",
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_in_compute_dtype_promotes_half_precision_and_keeps_the_rest(dtype, expected):
    x = torch.randn(3, 2).to(dtype)
    out = in_compute_dtype(x)
    assert out.dtype == expected and torch.equal(out, x.to(expected))
    assert (out is x) == (dtype == expected)


def test_energy_is_stable_for_large_logits():
    x = torch.tensor([[1e4, 0.0], [-1e4, -1e4]])
    torch.testing.assert_close(energy(x), torch.tensor([-1e4, 1e4 - torch.log(torch.tensor(2.0))]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5, 2)])
def test_nll_and_logsumexp_match_torch_values_and_gradients(dtype, shape):
    g = torch.Generator().manual_seed(1)
    base = (torch.randn(shape, generator=g) * 5).to(dtype)
    target = torch.randint(-1, 4, (shape[0], *shape[2:]), generator=g)
    x = base.detach().clone().requires_grad_(True)
    nll, lse = nll_and_logsumexp(x, target)
    (nll.sum() + (lse * 0.3).sum()).backward()

    ref_x = base.detach().to(torch.promote_types(dtype, torch.float32)).requires_grad_(True)
    ref_nll = torch.nn.functional.cross_entropy(ref_x, target, ignore_index=-1, reduction="none")
    ref_lse = torch.logsumexp(ref_x, dim=1)
    (ref_nll.sum() + (ref_lse * 0.3).sum()).backward()
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype != torch.float64 else {"atol": 1e-12, "rtol": 1e-12}
    torch.testing.assert_close(nll, ref_nll, **tol)
    torch.testing.assert_close(lse, ref_lse, **tol)
    torch.testing.assert_close(x.grad.to(ref_x.grad.dtype), ref_x.grad, atol=1e-2, rtol=1e-2)
    assert bool((nll[target < 0] == 0).all())


def test_nll_and_logsumexp_precise_near_zero_and_finite_edge_rows():
    # a confident prediction, -log p_y ~ 1e-4 to 3e-7: as precise as torch's fused kernel (error
    # ~4e-8), where the unshifted ``logsumexp(x) - x_y`` loses ~1e-6 to the rounding of |x| ~ 30
    x = torch.tensor([[30.0, 30.0 - 9.21, -1e4], [30.0, 30.0 - 15.1, 0.0], [float("-inf"), 2, 1]])
    target = torch.tensor([0, 0, 1])
    nll, lse = nll_and_logsumexp(x, target)
    exact = torch.nn.functional.cross_entropy(x.double(), target, reduction="none")
    fused = torch.nn.functional.cross_entropy(x, target, reduction="none")
    assert float((nll.double() - exact).abs().max()) <= 5e-8
    torch.testing.assert_close(nll, fused, rtol=0.0, atol=1e-8)
    torch.testing.assert_close(lse, torch.logsumexp(x, dim=1))
    # an all -inf row gives -inf energy input, not NaN, as torch.logsumexp does
    _, lse_inf = nll_and_logsumexp(torch.full((1, 3), float("-inf")), torch.tensor([-1]))
    assert lse_inf.item() == float("-inf")


def test_validation_messages_name_owner_argument_expected_and_got():
    with pytest.raises(
        ValueError,
        match=r"L: argument 'logits' must be a tensor of rank 2 or 4, got tensor of shape \(3,\)",
    ):
        check_classification("L", torch.ones(3), torch.zeros(3).long())
    with pytest.raises(ValueError, match=r"L: argument 'target' must be an integer tensor"):
        check_classification("L", torch.ones(3, 2), torch.zeros(3))
    with pytest.raises(
        ValueError, match=r"argument 'target' must be a class index below 2 .* the value 5"
    ):
        check_classification("L", torch.ones(3, 2), torch.tensor([0, 5, -1]))
    with pytest.raises(ValueError, match=r"argument 'logits' must be free of NaN, got 1 NaN"):
        check_classification("L", torch.tensor([[0.0, float("nan")]]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"argument 'target' must be a batch of 2"):
        check_classification("L", torch.ones(2, 2), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"same batch size, got batch sizes a: 2, b: 3"):
        check_batch("L", a=torch.ones(2), b=torch.ones(3))


def test_value_checks_can_be_turned_off():
    set_value_checks("never")
    try:
        check_classification("L", torch.tensor([[float("nan"), 0.0]]), torch.tensor([7]))
    finally:
        set_value_checks("auto")
    with pytest.raises(ValueError, match="'mode' must be one of"):
        set_value_checks("sometimes")


def test_squared_distances_exact_near_centre_unlike_expanded_and_cdist():
    mu = torch.full((1, 64), 1000.0, dtype=torch.float32)
    z = mu + 1e-3
    exact = 64 * 1e-6
    ours = squared_distances(z, mu)[0, 0].item()
    expanded = ((z**2).sum(1)[:, None] - 2 * z @ mu.T + (mu**2).sum(1)[None])[0, 0].item()
    cdist = (torch.cdist(z, mu, compute_mode="use_mm_for_euclid_dist") ** 2)[0, 0].item()
    assert abs(ours - exact) / exact < 0.05
    assert abs(expanded - exact) / exact > 1.0  # catastrophic cancellation
    assert abs(cdist - exact) / exact > 1.0


def test_squared_distances_matches_formula():
    g = torch.Generator().manual_seed(1)
    z, mu = (
        torch.randn(5, 3, generator=g, dtype=torch.float64),
        torch.randn(4, 3, generator=g, dtype=torch.float64),
    )
    ref = torch.tensor([[float(((a - b) ** 2).sum()) for b in mu] for a in z], dtype=torch.float64)
    torch.testing.assert_close(squared_distances(z, mu), ref)


def test_class_centers_learnable_or_fixed_and_state_key():
    c = ClassCenters(3, 2)
    assert c.params.requires_grad and list(c.state_dict()) == ["_params"]
    assert not ClassCenters(3, 2, fixed=True).params.requires_grad
    assert c(torch.zeros(4, 2)).shape == (4, 3)
    with pytest.raises(ValueError, match="n_classes"):
        ClassCenters(0, 2)


def test_running_centers_exact_per_class_means_without_graph():
    rc = RunningCenters(3, 2)
    z1 = torch.tensor([[1.0, 1.0], [3.0, 3.0], [9.0, 9.0]], requires_grad=True)
    rc.update(z1 * 1.0, torch.tensor([0, 0, -1]))
    z2 = torch.tensor([[5.0, 5.0], [2.0, 4.0]], requires_grad=True)
    rc.update(z2 * 1.0, torch.tensor([0, 2]))  # class 2 first seen in the second batch
    torch.testing.assert_close(rc.centers, torch.tensor([[3.0, 3.0], [0.0, 0.0], [2.0, 4.0]]))
    assert rc.counts.tolist() == [3.0, 0.0, 1.0]
    assert not rc.running_centers.requires_grad and rc.running_centers.grad_fn is None
    copy.deepcopy(rc)
    assert set(rc.state_dict()) == {"running_centers", "counts"}
    rc.reset()
    assert rc.counts.sum() == 0


def test_running_centers_compile_without_graph_breaks():
    rc = RunningCenters(3, 2)

    def step(z, y):
        rc.update(z, y)
        return rc(z).min(1).values

    compiled = torch.compile(step, fullgraph=True, backend="eager")
    out = compiled(torch.randn(4, 2), torch.tensor([0, 1, -1, 1]))
    assert out.shape == (4,)


INF = float("inf")


@pytest.mark.parametrize(
    "row, masks, message",
    [
        ([0.0, INF], True, r"'logits' must be finite \(-inf only to mask a class\), got 1 \+inf"),
        ([0.0, -INF], False, r"'logits' must be finite, got 0 \+inf and 1 -inf"),
        ([-INF, -INF], True, r"'logits' must be finite for at least one class of every sample"),
    ],
)
def test_non_finite_values_are_refused_by_name(row, masks, message):
    x = torch.tensor([[1.0, 2.0], row])
    with pytest.raises(ValueError, match=rf"^L: argument {message}"):
        check_float("L", "logits", x, masks=masks)


def test_minus_inf_masks_a_class_but_not_the_target():
    x = torch.tensor([[1.0, -INF, 0.5], [0.0, 2.0, -INF]])
    check_float("L", "logits", x, masks=True)  # a mask per row: accepted
    _, target = check_classification("L", x, torch.tensor([0, -1], dtype=torch.int8), masks=True)
    assert target.dtype == torch.int64
    with pytest.raises(ValueError, match="finite at the target class of every ID entry"):
        check_classification("L", x, torch.tensor([1, 0]), masks=True)


def test_fp16_sum_overflow_is_not_mistaken_for_inf():
    x = torch.full((64, 64), 60000.0, dtype=torch.float16)  # sums to inf in fp16, values finite
    assert check_float("L", "logits", x) is x


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.uint8])
def test_integer_targets_of_any_width_become_int64(dtype):
    target = check_target("L", torch.tensor([0, 2, 1], dtype=dtype), shape=(3,), num_classes=3)
    assert target.dtype == torch.int64 and target.tolist() == [0, 2, 1]


def test_zero_classes_named():
    with pytest.raises(
        ValueError, match=r"'logits' must be a tensor with at least one entry in dim 1"
    ):
        check_classification("L", torch.ones(2, 0), torch.tensor([-1, -1]))


def test_fail_closed_maps_nan_and_minus_inf_to_plus_inf():
    scores = torch.tensor([0.5, float("nan"), -INF, INF, -3.0])
    assert fail_closed(scores).tolist() == [0.5, INF, INF, INF, -3.0]


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan"), INF, True])
def test_check_positive_refuses_non_positive_and_non_finite(bad):
    with pytest.raises(ValueError, match="O: argument 'temperature' must be a finite real number"):
        check_positive("O", "temperature", bad)
    assert check_positive("O", "temperature", 2) == 2.0


def test_scorers_flag_non_finite_logits_without_checks():
    from ood_core.builtin.scorers import EnergyScore, Entropy, MaxLogit, MaxSoftmax

    x = torch.tensor([[1.0, 2.0, 0.0], [INF, 0.0, 1.0], [float("nan"), 0.0, 1.0], [0.0, -INF, 1.0]])
    set_value_checks("never")
    try:
        for scorer in (MaxSoftmax(), MaxLogit(), EnergyScore(), Entropy()):
            scores = scorer(x)
            assert scores[1] == INF and scores[2] == INF, type(scorer).__name__
            assert torch.isfinite(scores[[0, 3]]).all(), type(scorer).__name__
    finally:
        set_value_checks("auto")
    with pytest.raises(ValueError, match="MaxSoftmax: argument 'logits' must be free of NaN"):
        MaxSoftmax().predict(x)


@pytest.mark.parametrize("name", ["MaxSoftmax", "EnergyBased"])
def test_pytorch_ood_temperature_keyword_t_is_accepted(name):
    logits = torch.randn(6, 5)
    by_t = ood_core.create_scorer(name, t=2.5)
    assert by_t.temperature == 2.5
    assert torch.equal(by_t(logits), ood_core.create_scorer(name, temperature=2.5)(logits))
    assert ood_core.create_scorer(name).temperature == 1.0
    with pytest.raises(TypeError, match="not both"):
        ood_core.create_scorer(name, t=2.0, temperature=2.0)
    with pytest.raises(ValueError, match="'t'"):
        ood_core.create_scorer(name, t=0.0)
