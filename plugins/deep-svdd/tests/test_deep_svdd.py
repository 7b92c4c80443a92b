"""Deep SVDD / Deep SAD: paper formulas, pytorch-ood 0.4.0 parity and divergences, training."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from ood_plugin_deep_svdd import DeepSADLoss, DeepSVDDLoss, DeepSVDDScorer

import ood_core
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses
from ood_core.testing.toy import smoke_train, toy_data

README = Path(__file__).resolve().parents[1] / "README.md"


def _batch(seed: int, batch: int, n_dim: int, ood: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_dim, generator=g) * 1.5
    y = torch.randint(0, 3, (batch,), generator=g)
    y = torch.where(torch.rand(batch, generator=g) < ood, torch.full_like(y, -1), y)
    y[0] = 0  # at least one ID sample
    return x, y


def _value_and_grad(loss, x, *args):
    x = x.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.4.0 warns when it drops OOD samples
        value = loss(x, *args)
    (grad,) = torch.autograd.grad(value.sum(), x)
    return value, grad


def _paper_svdd(x, y, center, radius):
    """Deep SVDD per ID sample, written out: max(0, sum_j (x_j - c_j)^2 - r^2)."""
    out = []
    for xi, yi in zip(x.tolist(), y.tolist()):
        if yi >= 0:
            d = sum((a - b) ** 2 for a, b in zip(xi, center.tolist()))
            out.append(max(0.0, d - radius**2))
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# differential tests: 0.4.0 follows the paper for both losses on non-empty batches


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(16, 2), (33, 5)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("radius", [0.0, 0.8])
@pytest.mark.parametrize("with_targets", [True, False])
def test_deep_svdd_matches_pytorch_ood(seed, shape, reduction, radius, with_targets):
    batch, n_dim = shape
    center = torch.randn(n_dim, generator=torch.Generator().manual_seed(seed + 10))
    ours = DeepSVDDLoss(n_dim, reduction=reduction, radius=radius, center=center)
    ref = pytorch_ood_losses().DeepSVDDLoss(
        n_dim, reduction=reduction, radius=radius, center=center
    )
    x, y = _batch(seed, batch, n_dim)
    args = (y,) if with_targets else ()
    v_ours, g_ours = _value_and_grad(ours, x, *args)
    v_ref, g_ref = _value_and_grad(ref, x, *args)
    if reduction == "none" and with_targets:
        v_ours = v_ours[y >= 0]  # 0.4.0 drops the OOD rows
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-5)
    known = y >= 0 if with_targets else torch.ones_like(y, dtype=torch.bool)
    paper = _paper_svdd(x, torch.where(known, 0, -1), center, radius)
    per_sample = ours.svdd_loss(x, ours.center, radius, y if with_targets else None)
    torch.testing.assert_close(per_sample[known].double(), paper, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(ours.distance(x), ref.distance(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(16, 2), (33, 5)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eta", [1.0, 3.0])
def test_deep_sad_matches_pytorch_ood(seed, shape, reduction, eta):
    batch, n_dim = shape
    center = torch.randn(n_dim, generator=torch.Generator().manual_seed(seed + 10))
    ours = DeepSADLoss(n_dim, eta=eta, reduction=reduction, center=center)
    ref = pytorch_ood_losses().DeepSADLoss(n_dim, eta=eta, reduction=reduction, center=center)
    x, y = _batch(seed, batch, n_dim)
    v_ours, g_ours = _value_and_grad(ours, x, y)
    v_ref, g_ref = _value_and_grad(ref, x, y)
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-5)
    # the paper, written out: d for normal samples, eta / (d + eps) for labelled outliers
    d = ((x - center) ** 2).sum(1)
    expected = torch.tensor(
        [di if yi >= 0 else eta / (di + 1e-6) for di, yi in zip(d.tolist(), y.tolist())]
    )
    if reduction == "none":
        torch.testing.assert_close(v_ours, expected)
    else:
        total = expected.sum()
        torch.testing.assert_close(v_ours, total / batch if reduction == "mean" else total)


# ---------------------------------------------------------------------------------------------
# divergences from 0.4.0


def test_deep_sad_empty_batch_is_zero_with_graph_not_nan():
    x = torch.zeros(0, 3, requires_grad=True)
    y = torch.zeros(0, dtype=torch.long)
    ref = pytorch_ood_losses().DeepSADLoss(3)(x, y)
    assert torch.isnan(ref), "0.4.0 gives NaN on an empty batch"
    ours = DeepSADLoss(3)(x, y)
    assert ours.item() == 0.0 and ours.requires_grad
    ours.backward()


def test_deep_svdd_reduction_none_keeps_the_batch_shape():
    x, y = _batch(0, 10, 3)
    center = torch.zeros(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pytorch_ood_losses().DeepSVDDLoss(3, reduction="none", center=center)(x, y)
    ours = DeepSVDDLoss(3, reduction="none", center=center)(x, y)
    assert ref.shape == (int((y >= 0).sum()),)  # 0.4.0: data-dependent shape
    assert ours.shape == (10,)
    assert (ours[y < 0] == 0).all()
    torch.testing.assert_close(ours[y >= 0], ref)


def test_deep_svdd_all_ood_sum_is_zero_with_graph():
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.full((4,), -1)
    out = DeepSVDDLoss(3, reduction="sum")(x, y)
    assert out.item() == 0.0 and out.requires_grad


# ---------------------------------------------------------------------------------------------
# state, scorer, construction


def test_loads_a_pytorch_ood_state_dict():
    P = pytorch_ood_losses()
    center = torch.randn(4)
    ref_svdd = P.DeepSVDDLoss(4, radius=0.3, center=center)
    ours_svdd = DeepSVDDLoss(4)
    ours_svdd.load_state_dict(ref_svdd.state_dict(), strict=True)
    x = torch.randn(7, 4)
    torch.testing.assert_close(ours_svdd.distance(x), ref_svdd.distance(x))
    assert ours_svdd.radius.item() == pytest.approx(0.3)
    ref_sad = P.DeepSADLoss(4, center=center)
    ours_sad = DeepSADLoss(4)
    ours_sad.load_state_dict(ref_sad.state_dict(), strict=True)
    torch.testing.assert_close(ours_sad.distance(x), ref_sad.distance(x))


def test_scorer_is_squared_distance_minus_squared_radius_and_holds_a_copy():
    center = torch.tensor([1.0, -2.0, 0.5])
    loss = DeepSVDDLoss(3, radius=0.5, center=center)
    scorer = loss.scorer()
    assert isinstance(scorer, DeepSVDDScorer)
    z = torch.randn(6, 3)
    expected = torch.tensor(
        [sum((a - b) ** 2 for a, b in zip(row, center.tolist())) - 0.25 for row in z.tolist()]
    )
    torch.testing.assert_close(scorer(z), expected)
    assert scorer.predict(z).tolist() == [0] * 6
    with torch.no_grad():
        loss.center.params.add_(5.0)
        loss.radius.fill_(3.0)
    torch.testing.assert_close(scorer(z), expected)
    sad_scorer = DeepSADLoss(3, center=center).scorer()
    torch.testing.assert_close(sad_scorer(z), expected + 0.25)
    made = ood_core.create_scorer("deep-svdd", n_dim=3)
    made.load_state_dict(scorer.state_dict())
    torch.testing.assert_close(made(z), expected)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DeepSVDDLoss(3, center=torch.zeros(4)), r"DeepSVDDLoss: argument 'center'"),
        (lambda: DeepSVDDLoss(0), r"DeepSVDDLoss: argument 'n_dim'"),
        (lambda: DeepSVDDLoss(3, reduction="avg"), r"DeepSVDDLoss: argument 'reduction'"),
        (lambda: DeepSADLoss(3, eps=0.0), r"DeepSADLoss: argument 'eps'"),
        (lambda: DeepSVDDLoss(3)(torch.randn(2, 4)), r"DeepSVDDLoss: argument 'x'"),
        (lambda: DeepSVDDScorer(3)(torch.randn(2, 4)), r"DeepSVDDScorer: argument 'embedding'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------------------------------------
# training and the README


def _init_center_after_first_step(net, loss, step):
    """The paper initialises the centre with the mean embedding of the training data."""
    if step == 0:
        with torch.no_grad():
            loss.center.params.copy_(net(toy_data().x_train)["embedding"].mean(0, keepdim=True))


@pytest.mark.parametrize(
    "name, use_ood", [("deep-svdd", False), ("deep-sad", True)], ids=["deep-svdd", "deep-sad"]
)
def test_smoke_training(name, use_ood):
    loss = ood_core.create_loss(name, n_dim=8)
    result = smoke_train(
        loss,
        inputs=("embedding", "target"),
        reads="embedding",
        use_ood=use_ood,
        steps=100,
        after_step=_init_center_after_first_step,
    )
    assert result["AUROC"] > 0.8, result


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (32,)
