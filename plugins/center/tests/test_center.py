"""CenterLoss and CenterScorer: the paper's formula, pytorch-ood 0.4.0 parity and divergences."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from ood_plugin_center import CenterLoss, CenterScorer

import ood_core
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses
from ood_core.testing.toy import smoke_train

README = Path(__file__).resolve().parents[1] / "README.md"


def _pair(seed: int, n_classes: int, n_dim: int, ref_radius: float | None = None, **kwargs):
    """Our loss and 0.4.0's (float64) with the same centres; 0.4.0 gets ``ref_radius``."""
    torch.manual_seed(seed)
    ours = CenterLoss(n_classes, n_dim, **kwargs).double()
    if ref_radius is not None:
        kwargs["radius"] = ref_radius
    ref = pytorch_ood_losses().CenterLoss(n_classes, n_dim, **kwargs).double()
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def _inputs(seed: int, batch: int, n_classes: int, n_dim: int):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, n_dim, generator=g, dtype=torch.float64) * 1.5
    y = torch.randint(0, n_classes, (batch,), generator=g)
    y = torch.where(torch.rand(batch, generator=g) < 0.3, torch.full_like(y, -1), y)
    y[0] = 0
    return z, y


def _value_and_grads(loss, z, y):
    """Loss through ``distance`` and its gradients w.r.t. the embeddings and the centres."""
    z = z.clone().requires_grad_(True)
    leaves = [z] + [p for p in loss.parameters() if p.requires_grad]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.4.0 warns when it drops OOD samples
        value = loss(loss.centers(z), y)
    return value, torch.autograd.grad(value, leaves)


def _paper_loss(z, y, centers, radius, n_classes):
    """Written out: mean over ID rows of max(0, |z - mu_y|^2 - r^2), divided by C."""
    rows = [
        max(0.0, sum((a - b) ** 2 for a, b in zip(zi, centers[yi])) - radius**2)
        for zi, yi in zip(z.tolist(), y.tolist())
        if yi >= 0
    ]
    return sum(rows) / max(len(rows), 1) / n_classes


# ---------------------------------------------------------------------------------------------
# differential tests: 0.4.0 agrees where r == r^2 (r = 0, the original center loss, and r = 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(16, 3, 2), (33, 5, 7), (8, 4, 4)])
@pytest.mark.parametrize("radius", [0.0, 1.0])
@pytest.mark.parametrize("fixed", [False, True])
def test_matches_pytorch_ood_where_radius_equals_its_square(seed, shape, radius, fixed):
    batch, n_classes, n_dim = shape
    ours, ref = _pair(seed, n_classes, n_dim, radius=radius, fixed=fixed)
    z, y = _inputs(seed, batch, n_classes, n_dim)
    v_ours, g_ours = _value_and_grads(ours, z, y)
    v_ref, g_ref = _value_and_grads(ref, z, y)
    # 0.4.0 clamps every entry, masked ones too, at 1e-12
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-9, atol=1e-11)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    centers = ours.centers.params.tolist()
    assert v_ours.item() == pytest.approx(_paper_loss(z, y, centers, radius, n_classes), rel=1e-9)


# ---------------------------------------------------------------------------------------------
# divergences from 0.4.0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("radius", [0.5, 2.0])
def test_radius_is_the_radius_of_the_sphere(seed, radius):
    n_classes, n_dim = 3, 2
    z, y = _inputs(seed, 24, n_classes, n_dim)
    ours, ref = _pair(seed, n_classes, n_dim, radius=radius)
    ours_value, ours_grads = _value_and_grads(ours, z, y)
    ref_value, _ = _value_and_grads(ref, z, y)
    centers = ours.centers.params.tolist()
    assert ours_value.item() == pytest.approx(
        _paper_loss(z, y, centers, radius, n_classes), rel=1e-9
    )
    assert ref_value.item() != pytest.approx(ours_value.item(), rel=1e-3)
    # 0.4.0 given r^2 computes our loss: its radius acts on squared distances
    _, as_square = _pair(seed, n_classes, n_dim, ref_radius=radius**2, radius=radius)
    square_value, square_grads = _value_and_grads(as_square, z, y)
    torch.testing.assert_close(ours_value, square_value, rtol=1e-9, atol=1e-11)
    for a, b in zip(ours_grads, square_grads):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_a_point_inside_the_sphere_is_not_penalised():
    centers = torch.zeros(1, 2)
    z = torch.tensor([[1.5, 0.0]])  # distance 1.5, inside a sphere of radius 2
    y = torch.tensor([0])
    ours = CenterLoss(1, 2, radius=2.0)
    ref = pytorch_ood_losses().CenterLoss(1, 2, radius=2.0)
    for loss in (ours, ref):
        loss.centers.params.data.copy_(centers)
    assert ours(ours.distance(z), y).item() == 0.0
    assert ref(ref.centers(z), y).item() == pytest.approx(0.25)  # 2.25 - 2: radius sqrt(2)


def test_initialisation_follows_the_documented_magnitude_rule():
    torch.manual_seed(0)
    expected = torch.randn(3, 3)
    torch.manual_seed(0)
    learnable = CenterLoss(3, 3)
    torch.testing.assert_close(learnable.centers.params.detach(), expected)  # N(0, 1)
    assert learnable.centers.params.requires_grad
    ref = pytorch_ood_losses().CenterLoss(3, 3)
    torch.testing.assert_close(ref.centers.params.detach(), torch.eye(3))  # 0.4.0: identity
    fixed = CenterLoss(3, 3, magnitude=4.0, fixed=True)
    torch.testing.assert_close(fixed.centers.params, torch.eye(3) * 4.0)
    assert not fixed.centers.params.requires_grad
    with pytest.warns(UserWarning, match="magnitude"):
        CenterLoss(3, 3, magnitude=4.0)
    with pytest.warns(UserWarning, match="magnitude"):
        CenterLoss(3, 5, magnitude=4.0, fixed=True)


def test_huge_distances_keep_their_gradient():
    loss = CenterLoss(2, 2)
    distmat = torch.tensor([[4e12, 1.0]], dtype=torch.float64, requires_grad=True)
    loss(distmat, torch.tensor([0])).backward()
    assert distmat.grad.tolist() == [[0.5, 0.0]]  # 0.4.0's clamp at 1e12 gives 0


# ---------------------------------------------------------------------------------------------
# state, scorer, construction


def test_loads_a_pytorch_ood_state_dict():
    ref = pytorch_ood_losses().CenterLoss(4, 6, radius=0.0)
    ours = CenterLoss(4, 6)
    ours.load_state_dict(ref.state_dict(), strict=True)
    z = torch.randn(5, 6)
    torch.testing.assert_close(ours.distance(z), ref.centers(z), rtol=1e-5, atol=1e-4)
    y = torch.tensor([0, 1, 2, 3, -1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ref(ref.centers(z), y)
    torch.testing.assert_close(ours(ours.distance(z), y), expected, rtol=1e-5, atol=1e-5)


def test_scorer_is_the_min_squared_distance_and_holds_a_copy():
    loss = CenterLoss(3, 2)
    with torch.no_grad():
        loss.centers.params.copy_(torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]))
    scorer = loss.scorer()
    assert isinstance(scorer, CenterScorer)
    z = torch.tensor([[1.0, 0.0], [3.0, 3.0], [0.0, 5.0]])
    assert scorer(z).tolist() == [1.0, 10.0, 1.0]
    assert scorer.predict(z).tolist() == [0, 1, 2]
    with torch.no_grad():
        loss.centers.params.add_(3.0)
    assert scorer(z).tolist() == [1.0, 10.0, 1.0]
    made = ood_core.create_scorer("center", n_classes=3, n_dim=2)
    made.load_state_dict(scorer.state_dict())
    assert made(z).tolist() == [1.0, 10.0, 1.0]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: CenterLoss(0, 2), r"CenterLoss: argument 'n_classes'"),
        (lambda: CenterLoss(2, 2, radius=-1.0), r"CenterLoss: argument 'radius'"),
        (lambda: CenterLoss(3, 2)(torch.rand(2, 4), torch.zeros(2, dtype=torch.long)), "distmat"),
        (lambda: CenterLoss(3, 2).distance(torch.rand(2, 4)), r"CenterLoss: argument 'z'"),
        (lambda: CenterScorer(3, 2)(torch.rand(2, 4)), r"CenterScorer: argument 'embedding'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_fit_recomputes_the_centres_as_the_current_class_means_of_a_trained_embedding():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 3
    x = 4 * torch.eye(4)[y] + torch.randn(300, 4, generator=g)
    net = torch.nn.Linear(4, 2)
    loss = CenterLoss(3, 2)
    optimizer = torch.optim.Adam([*net.parameters(), *loss.parameters()], lr=1e-2)
    for _ in range(30):
        value = loss(loss.distance(net(x)), y)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    learned = loss.centers.params.detach().clone()
    with torch.no_grad():
        z = net(x)
    labels = torch.where(torch.arange(300) % 7 == 0, -1, y)  # OOD rows are skipped
    scorer = loss.scorer().fit(zip(z.split(50), labels.split(50)))
    current = torch.stack([z[labels == k].double().mean(0) for k in range(3)])
    torch.testing.assert_close(scorer.centers.double(), current, rtol=1e-6, atol=1e-5)
    assert not torch.allclose(scorer.centers, learned, atol=1e-2)  # learned != current means
    assert torch.equal(loss.centers.params, learned)  # the loss keeps its trained centres
    expected = ((z[:, None] - scorer.centers[None]) ** 2).sum(-1).amin(1)
    torch.testing.assert_close(scorer(z), expected)


# ---------------------------------------------------------------------------------------------
# training and the README


@pytest.mark.parametrize(
    "kwargs",
    [{"n_classes": 4, "n_dim": 8}, {"n_classes": 4, "n_dim": 4, "magnitude": 5.0, "fixed": True}],
    ids=["learnable", "fixed-anchors"],
)
def test_smoke_training(kwargs):
    loss = ood_core.create_loss("center", **kwargs)
    result = smoke_train(
        loss,
        inputs=("distmat", "target"),
        reads="embedding",
        dim=kwargs["n_dim"],
        use_ood=False,
        steps=60,
        feed=lambda out, y: (loss.distance(out["embedding"]), y),
    )
    assert result["AUROC"] > 0.8, result
    assert result["ACC"] > 0.9, result


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (8,)
