"""Deliberate differences from pytorch-ood 0.4.0, each pinned against 0.4.0's behaviour."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from ood_plugin_vos import (
    VirtualOutlierSynthesizingRegLoss,
    VOSRegLoss,
    WeightedEnergyScore,
    weighted_energy,
)
from torch.nn import functional as F

import ood_core


def _paper_energy(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """-log sum_c relu(w_c) exp(x_c), written out in float64 (fine for |x| < 700)."""
    return -torch.log((w.double().relu() * x.double().exp()).sum(1))


def _vos(ref, num_classes: int, weight: torch.Tensor):
    phi, weights = torch.nn.Linear(1, 2), torch.nn.Linear(num_classes, 1)
    with torch.no_grad():
        weights.weight.copy_(weight.reshape(1, -1))
    return VOSRegLoss(phi, weights), ref.VOSRegLoss(phi, weights)


def test_non_positive_weights_finite_where_0_4_0_is_nan(ref):
    torch.manual_seed(0)
    ours, theirs = _vos(ref, 4, torch.tensor([-0.5, 0.0, -2.0, -0.1]))
    x = (torch.randn(8, 4) * 3).requires_grad_()
    y = torch.tensor([0, 1, 2, 3, -1, -1, 0, -1])
    assert torch.isnan(theirs(x, y))
    value = ours(x, y)
    assert torch.isfinite(value)
    (grad,) = torch.autograd.grad(value, x)
    assert torch.isfinite(grad).all()
    # no positive weight: every class counts with weight 1, the plain free energy
    energy = -torch.logsumexp(x, 1)
    reg = F.cross_entropy(ours.logistic_regression(energy[:, None]), (y >= 0).long())
    expected = F.cross_entropy(x, torch.where(y >= 0, y, -100), ignore_index=-100) + 0.1 * reg
    torch.testing.assert_close(value, expected)
    scores = ours.scorer()(x)
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(scores, energy)


def test_weighted_energy_does_not_overflow_where_0_4_0_webo_does(webo):
    x = torch.tensor([[100.0, 90.0, 80.0], [120.0, -5.0, 3.0], [1.0, 2.0, 3.0]])
    w = torch.tensor([0.5, 1.0, 0.0])
    theirs = webo.score(x, w.reshape(1, -1))
    assert torch.isinf(theirs[:2]).all() and (theirs[:2] < 0).all()
    ours = WeightedEnergyScore(w)(x)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours.double(), _paper_energy(x, w))


def test_training_energy_and_scorer_are_one_function(ref, webo):
    torch.manual_seed(1)
    loss = VOSRegLoss(num_classes=5)
    x = torch.randn(64, 5) * 200  # large logits
    train, test = loss.energy(x), loss.scorer()(x)
    assert torch.equal(train, test)
    assert torch.equal(test, weighted_energy(x, loss.weights_energy.weight))
    # 0.4.0: the training energy and the test-time score of the same weights disagree
    theirs = ref.VOSRegLoss(loss.logistic_regression, loss.weights_energy)
    assert not torch.equal(theirs._energy(x), webo.score(x, loss.weights_energy.weight))


def test_largest_logit_with_zero_weight_is_stable(ref):
    # 0.4.0 subtracts the unweighted max: exp(0 - 1000) underflows and the energy becomes inf
    ours, theirs = _vos(ref, 2, torch.tensor([0.0, 1.0]))
    x = torch.tensor([[1000.0, 0.0], [0.0, 2.0]])
    assert torch.isinf(theirs._energy(x)[0])
    torch.testing.assert_close(ours.energy(x), torch.tensor([0.0, -2.0]))


def test_weighted_energy_gradient_matches_relu_form():
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([[0.3, -0.2, 1.5, 0.0]], dtype=torch.float64, requires_grad=True)
    ours = weighted_energy(x, w).sum()
    paper = (-torch.log((w.relu() * x.exp()).sum(1))).sum()
    ga = torch.autograd.grad(ours, [x, w])
    gb = torch.autograd.grad(paper, [x, w])
    torch.testing.assert_close(ours, paper)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b)


def _filled(seed: int = 0) -> VirtualOutlierSynthesizingRegLoss:
    torch.manual_seed(seed)
    loss = VirtualOutlierSynthesizingRegLoss(
        num_classes=3, num_features=4, sample_number=3, sample_from=16
    )
    for _ in range(3):
        y = torch.tensor([0, 1, 2, 0, 1, 2, -1])
        loss(torch.randn(7, 3), torch.randn(7, 4), y)
    return loss


def test_queues_survive_save_and_load_unlike_0_4_0(ref):
    loss = _filled()
    assert loss.number_dict == {0: 3, 1: 3, 2: 3}
    buffer = io.BytesIO()
    torch.save(loss.state_dict(), buffer)
    buffer.seek(0)
    fresh = VirtualOutlierSynthesizingRegLoss(
        num_classes=3, num_features=4, sample_number=3, sample_from=16
    )
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh.data_dict, loss.data_dict) and fresh.data_dict.abs().sum() > 0
    assert fresh.number_dict == {0: 3, 1: 3, 2: 3} and bool(fresh.queues_full())
    # the resumed loss regularises at once, like the original
    args = (torch.randn(5, 3), torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))
    ce = F.cross_entropy(args[0], args[2])
    assert fresh(*args) > ce
    # 0.4.0 keeps its queues out of the state dict: a resumed run starts empty
    theirs = ref.VirtualOutlierSynthesizingRegLoss(
        loss.logistic_regression, loss.weights_energy, loss.fc, sample_number=3, sample_from=16
    )
    assert "data_dict" not in theirs.state_dict()
    resumed = ref.VirtualOutlierSynthesizingRegLoss(
        torch.nn.Linear(1, 2),
        torch.nn.Linear(3, 1),
        torch.nn.Linear(4, 3),
        sample_number=3,
        sample_from=16,
    )
    resumed.load_state_dict(loss.state_dict(), strict=False)
    assert sum(resumed.number_dict.values()) == 0


def test_reduction_none_keeps_the_batch_shape(ref):
    loss = VirtualOutlierSynthesizingRegLoss(
        num_classes=3, num_features=4, sample_number=9, reduction="none"
    )
    theirs = ref.VirtualOutlierSynthesizingRegLoss(
        loss.logistic_regression, loss.weights_energy, loss.fc, sample_number=9, reduction="none"
    )
    x, f, y = torch.randn(5, 3), torch.randn(5, 4), torch.tensor([0, -1, 2, -1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert theirs(x, f, y).shape == (3,)  # data-dependent shape
    out = loss(x, f, y)
    assert out.shape == (5,) and not out[[1, 3]].any()


def test_segmentation_rejected_with_value_error():
    loss = VirtualOutlierSynthesizingRegLoss(num_classes=3, num_features=4)
    with pytest.raises(ValueError, match="VirtualOutlierSynthesizingRegLoss.*'logits'"):
        loss(
            torch.randn(2, 3, 4, 4), torch.randn(2, 4, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
        )


def test_cholesky_failure_falls_back_to_the_diagonal():
    loss = VirtualOutlierSynthesizingRegLoss(
        num_classes=2, num_features=3, sample_number=2, sample_from=8
    )
    # rank-one covariance at scale 1e8: the 1e-4 ridge is lost in fp32 and Cholesky fails
    loss.data_dict.copy_(torch.tensor([[[1e4, 1e4, 1e4], [-1e4, -1e4, -1e4]]] * 2))
    loss.queue_counts.fill_(2)
    means, chol = loss.class_gaussians()
    torch.testing.assert_close(chol, torch.eye(3) * 1e4)
    v = loss.sample_virtual_outliers()
    assert v.shape == (2, 3) and torch.isfinite(v).all()


def test_compiled_step_fills_queues_like_eager():
    """fullgraph compile across the fill -> full transition: buffers equal to eager."""
    torch.manual_seed(0)
    eager = VirtualOutlierSynthesizingRegLoss(
        num_classes=3, num_features=4, sample_number=2, sample_from=8
    )
    compiled_loss = VirtualOutlierSynthesizingRegLoss(
        num_classes=3, num_features=4, sample_number=2, sample_from=8
    )
    compiled_loss.load_state_dict(eager.state_dict())
    torch._dynamo.reset()
    compiled = torch.compile(compiled_loss, fullgraph=True, backend="eager")
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        y = torch.randint(-1, 3, (5,), generator=g)
        x, f = torch.randn(5, 3, generator=g), torch.randn(5, 4, generator=g)
        torch.manual_seed(7)
        a = eager(x, f, y)
        torch.manual_seed(7)
        b = compiled(x, f, y)
        assert torch.isfinite(b)
        torch.testing.assert_close(a, b)
        assert torch.equal(eager.data_dict, compiled_loss.data_dict)
        assert torch.equal(eager.queue_counts, compiled_loss.queue_counts)


def test_vos_segmentation_compiles_fullgraph():
    torch.manual_seed(0)
    loss = VOSRegLoss(num_classes=4)
    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True, backend="eager")
    x = torch.randn(2, 4, 3, 5, dtype=torch.bfloat16)
    y = torch.randint(-1, 4, (2, 3, 5))
    torch.testing.assert_close(compiled(x, y), loss(x, y))


def test_create_from_registry_and_scorer_copy():
    loss = ood_core.create_loss("vos", num_classes=3)
    assert (loss.weights_energy.weight >= 0).all()
    scorer = loss.scorer()
    before = scorer(torch.ones(1, 3))
    with torch.no_grad():
        loss.weights_energy.weight.mul_(5)
    torch.testing.assert_close(scorer(torch.ones(1, 3)), before)
    plain = ood_core.create_scorer("weighted-energy", num_classes=3)
    torch.testing.assert_close(plain(torch.zeros(2, 3)), torch.full((2,), -math.log(3)))


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({}, "num_classes"),
        ({"num_classes": 3, "reduction": "avg"}, "reduction"),
        ({"num_classes": 3, "weights_energy": torch.nn.Linear(4, 1)}, "weights_energy"),
    ],
)
def test_constructor_errors_name_the_argument(kwargs, arg):
    with pytest.raises(ValueError, match=f"VOSRegLoss.*{arg}"):
        VOSRegLoss(**kwargs)


def test_wrong_class_count_is_rejected():
    with pytest.raises(ValueError, match="VOSRegLoss.*'logits'"):
        VOSRegLoss(num_classes=3)(torch.randn(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="VirtualOutlierSynthesizingRegLoss.*'features'"):
        VirtualOutlierSynthesizingRegLoss(num_classes=3, num_features=4)(
            torch.randn(4, 3), torch.randn(4, 5), torch.zeros(4, dtype=torch.long)
        )


@pytest.mark.parametrize("synthesis", [False, True])
def test_checkpoint_round_trip_keeps_weights_and_queues(tmp_path, synthesis):

    torch.manual_seed(0)
    if synthesis:
        loss = VirtualOutlierSynthesizingRegLoss(num_classes=3, num_features=4, sample_number=5)
        loss(torch.randn(6, 3), torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
    else:
        loss = VOSRegLoss(num_classes=3, alpha=0.3)
    model = torch.nn.Linear(4, 3)
    path = ood_core.save(tmp_path / "m.pt2", model, loss=loss, example_input=torch.randn(2, 4))
    rebuilt = ood_core.load(path).build_loss()
    assert type(rebuilt) is type(loss)
    for key, value in loss.state_dict().items():
        torch.testing.assert_close(rebuilt.state_dict()[key], value)


def test_cpu_eager_skips_sampling_while_filling_with_the_same_loss_and_gradients(monkeypatch):
    """The eager CPU shortcut (no synthesis while the queues fill) equals the masked path."""
    from ood_core.validation import set_value_checks

    def build():
        torch.manual_seed(0)
        return VirtualOutlierSynthesizingRegLoss(
            num_classes=3, num_features=4, sample_number=50, sample_from=8
        )

    shortcut, masked = build(), build()
    calls = {"n": 0}
    original = VirtualOutlierSynthesizingRegLoss.sample_virtual_outliers

    def counting(self):
        calls["n"] += 1
        return original(self)

    monkeypatch.setattr(VirtualOutlierSynthesizingRegLoss, "sample_virtual_outliers", counting)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):  # 3 x 6 samples never fill 3 queues of 50
        y = torch.randint(-1, 3, (6,), generator=g)
        x, f = torch.randn(6, 3, generator=g), torch.randn(6, 4, generator=g)
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        before = calls["n"]
        a = shortcut(xa, f, y)
        assert calls["n"] == before  # no sampling on the eager CPU path
        set_value_checks("never")  # the path a GPU or a compiled graph takes
        try:
            b = masked(xb, f, y)
        finally:
            set_value_checks("auto")
        assert calls["n"] == before  # nor on the GPU path: the host learns the fill flag async
        assert torch.equal(shortcut.data_dict, masked.data_dict)
        assert torch.equal(shortcut.queue_heads, masked.queue_heads)
        torch.testing.assert_close(a, b)
        a.backward()
        b.backward()
        torch.testing.assert_close(xa.grad, xb.grad)
        for pa, pb in zip(shortcut.parameters(), masked.parameters()):
            ga = torch.zeros_like(pa) if pa.grad is None else pa.grad
            gb = torch.zeros_like(pb) if pb.grad is None else pb.grad
            torch.testing.assert_close(ga, gb)
        assert torch.equal(shortcut.data_dict, masked.data_dict)
        assert torch.equal(shortcut.queue_counts, masked.queue_counts)
    assert not bool(shortcut.queues_full())
