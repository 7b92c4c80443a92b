"""MCHADLoss and MCHADScorer: the paper's formulas, pytorch-ood 0.4.0 parity, divergences, training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ood_plugin_mchad import MCHADLoss, MCHADScorer

import ood_core
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses
from ood_core.testing.toy import smoke_train

README = Path(__file__).resolve().parents[1] / "README.md"


def _inputs(seed: int, batch: int, n_classes: int, n_dim: int, ood: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, n_dim, generator=g, dtype=torch.float64) * 1.5
    y = torch.randint(0, n_classes, (batch,), generator=g)
    y = torch.where(torch.rand(batch, generator=g) < ood, torch.full_like(y, -1), y)
    return z, y


def _pair(seed: int, n_classes: int, n_dim: int, **kwargs):
    """Our loss and 0.4.0's with the same (float64) centres."""
    torch.manual_seed(seed)
    ours = MCHADLoss(n_classes, n_dim, **kwargs).double()
    ref = pytorch_ood_losses().MCHADLoss(n_classes=n_classes, n_dim=n_dim, **kwargs).double()
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def _grads(loss, z, y, use_distance: bool):
    z = z.clone().requires_grad_(True)
    if use_distance:
        distmat = loss.distance(z)
        leaves = [z, loss.centers.params]
    else:
        distmat = (torch.cdist(z, loss.centers.params.detach()) ** 2).requires_grad_(True)
        leaves = [distmat]
    value = loss(distmat, y)
    return value, torch.autograd.grad(value, leaves)


# ---------------------------------------------------------------------------------------------
# differential tests: where 0.4.0 agrees with the paper (centre term at r in {0, 1}, where
# r == r^2; the likelihood term; the outlier term when r = m = 0, where both vanish)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(16, 3, 2), (7, 10, 16), (33, 5, 5)])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"radius": 1.0, "weight_oe": 0.0},
        {"weight_center": 0.3, "weight_nll": 2.0, "margin": 0.0},
        {"radius": 1.0, "margin": 2.0, "weight_oe": 0.0, "weight_center": 5.0},
    ],
)
@pytest.mark.parametrize("use_distance", [False, True])
def test_matches_pytorch_ood_where_it_follows_the_paper(seed, shape, kwargs, use_distance):
    batch, n_classes, n_dim = shape
    ours, ref = _pair(seed, n_classes, n_dim, **kwargs)
    z, y = _inputs(seed, batch, n_classes, n_dim)
    v_ours, g_ours = _grads(ours, z, y, use_distance)
    v_ref, g_ref = _grads(ref, z, y, use_distance)
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-9, atol=1e-9)
    for a, b in zip(g_ours, g_ref):
        # 0.4.0's expanded distance formula costs a few digits in float64
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("mode", ["id", "ood"])
def test_matches_pytorch_ood_on_one_sided_batches(mode):
    ours, ref = _pair(3, 4, 6, radius=1.0, weight_oe=0.0)
    z, y = _inputs(3, 12, 4, 6, ood=0.0 if mode == "id" else 1.0)
    d = ours.distance(z).detach()
    torch.testing.assert_close(ours(d, y), ref(d, y), rtol=1e-9, atol=1e-9)


def test_terms_match_pytorch_ood_components():
    ours, ref = _pair(4, 5, 3, radius=1.0)
    z, y = _inputs(4, 20, 5, 3)
    d = ours.distance(z).detach()
    known = y >= 0
    terms = ours.terms(d, y)
    torch.testing.assert_close(
        terms["center"], ref.center_loss(d[known], y[known]), rtol=1e-9, atol=1e-9
    )
    torch.testing.assert_close(
        terms["nll"], ref.nll_loss(-d[known], y[known]), rtol=1e-9, atol=1e-9
    )


# ---------------------------------------------------------------------------------------------
# divergences from 0.4.0, each checked against the paper's formula written out here


def _paper_outlier_term(d: torch.Tensor, y: torch.Tensor, r: float, m: float) -> float:
    total = 0.0
    for i in range(d.shape[0]):
        if y[i] < 0:
            for k in range(d.shape[1]):
                total += max(0.0, (r + m) ** 2 - float(d[i, k]))
    return total


def _paper_center_term(d: torch.Tensor, y: torch.Tensor, r: float) -> float:
    ids = [i for i in range(d.shape[0]) if y[i] >= 0]
    return sum(max(0.0, float(d[i, y[i]]) - r * r) for i in ids) / len(ids) / d.shape[1]


def test_outlier_term_is_the_papers_not_squared_twice():
    r, m = 0.5, 1.0
    ours, ref = _pair(0, 3, 2, radius=r, margin=m)
    d = torch.tensor([[0.1, 1.9, 3.0], [2.0, 0.5, 0.04]], dtype=torch.float64)
    y = torch.tensor([-1, -1])
    expected = _paper_outlier_term(d, y, r, m)  # (1.5)^2 = 2.25 bound
    assert expected == pytest.approx(2.15 + 0.35 + 0.25 + 1.75 + 2.21)
    assert float(ours.terms(d, y)["oe"]) == pytest.approx(expected)
    # 0.4.0: relu(m^2 - d^2) -> a different value
    assert float(ref.regu_loss(d, y)) == pytest.approx((1 - 0.01) + (1 - 0.25) + (1 - 0.0016))
    assert float(ref.regu_loss(d, y)) != pytest.approx(expected)


def test_outlier_term_uses_the_radius_even_with_the_default_margin():
    ours, ref = _pair(0, 3, 2, radius=1.0)  # margin defaults to 0
    d = torch.tensor([[0.2, 0.5, 4.0]], dtype=torch.float64)
    y = torch.tensor([-1])
    assert (
        float(ours(d, y))
        == pytest.approx(_paper_outlier_term(d, y, 1.0, 0.0))
        == pytest.approx(1.3)
    )
    assert float(ref(d, y)) == 0.0  # 0.4.0's outlier term vanishes with margin 0


def test_center_term_compares_with_the_squared_radius():
    r = 2.0
    ours, ref = _pair(0, 3, 2, radius=r, weight_nll=0.0, weight_oe=0.0)
    d = torch.tensor([[3.0, 9.0, 9.0], [9.0, 5.0, 9.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, -1])
    expected = _paper_center_term(d, y, r)  # (0 + 1) / 2 / 3
    assert expected == pytest.approx(1 / 6)
    assert float(ours(d, y)) == pytest.approx(expected)
    assert float(ref(d, y)) == pytest.approx((1.0 + 3.0) / 2 / 3)  # 0.4.0: relu(d_y - r)


def test_distance_is_exact_near_a_centre():
    torch.manual_seed(0)
    ours = MCHADLoss(2, 4)
    ref = pytorch_ood_losses().MCHADLoss(n_classes=2, n_dim=4)
    with torch.no_grad():
        ours.centers.params.copy_(
            torch.tensor([[300.0, -200.0, 100.0, 50.0], [0.0, 0.0, 0.0, 1.0]])
        )
    ref.load_state_dict(ours.state_dict())
    z = ours.centers.params.detach()[:1] + torch.tensor([[1e-2, 0.0, 0.0, 0.0]])
    exact = 1e-4
    with torch.no_grad():
        assert float(ours.distance(z)[0, 0]) == pytest.approx(exact, rel=1e-2)
        # the expanded form cancels catastrophically (here to 0: every digit is lost)
        assert abs(float(ref.distance(z)[0, 0]) - exact) > exact / 2


# ---------------------------------------------------------------------------------------------
# state, construction, scorer


def test_loads_a_pytorch_ood_state_dict():
    ref = pytorch_ood_losses().MCHADLoss(n_classes=4, n_dim=8, margin=0.7)
    torch.manual_seed(123)
    ours = MCHADLoss(4, 8)
    ours.load_state_dict(ref.state_dict(), strict=True)
    torch.testing.assert_close(ours.centers.params.detach(), ref.centers.params.detach())
    assert float(ours.margin) == pytest.approx(0.7)
    assert set(ours.state_dict()) == set(ref.state_dict())


def test_initialisation_follows_pytorch_ood():
    assert torch.equal(MCHADLoss(3, 3).centers.params.detach(), torch.eye(3))
    assert MCHADLoss(3, 5).centers.params.shape == (3, 5)
    assert MCHADLoss(3, 5).centers.params.requires_grad


def test_gradients_reach_the_centres_and_the_embedding():
    loss = MCHADLoss(3, 2, radius=0.5, margin=1.0)
    z = torch.randn(8, 2, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, -1, -1, 1, -1])
    loss(loss.distance(z), y).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert loss.centers.params.grad is not None and loss.centers.params.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"n_classes": 0, "n_dim": 2}, "n_classes"),
        ({"n_classes": 2, "n_dim": 2.0}, "n_dim"),
        ({"n_classes": 2, "n_dim": 2, "radius": -1.0}, "radius"),
        ({"n_classes": 2, "n_dim": 2, "margin": float("nan")}, "margin"),
        ({"n_classes": 2, "n_dim": 2, "weight_oe": -0.1}, "weight_oe"),
    ],
)
def test_bad_constructor_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=f"MCHADLoss: argument '{arg}'"):
        MCHADLoss(**kwargs)


def test_bad_forward_arguments_name_what_is_wrong():
    loss = MCHADLoss(3, 2)
    with pytest.raises(ValueError, match=r"argument 'distmat' must be of shape \(B, 3\)"):
        loss(torch.rand(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"argument 'y' must be a tensor of rank 1"):
        loss(torch.rand(4, 3), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"argument 'z' must be of shape \(B, 2\)"):
        loss.distance(torch.rand(4, 3))


def test_scorer_is_min_squared_distance_and_predicts_argmin():
    centers = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, -2.0]])
    scorer = MCHADScorer(3, 2, centers)
    z = torch.tensor([[0.5, 0.0], [2.0, 1.0], [0.0, -1.5], [10.0, 10.0]])
    expected = torch.tensor([0.25, 2.0, 0.25, 149.0])
    torch.testing.assert_close(scorer(z), expected)
    assert scorer.predict(z).tolist() == [0, 1, 2, 1]
    assert scorer.reads == "embedding"


def test_loss_scorer_copies_the_centres():
    loss = MCHADLoss(3, 2)
    scorer = loss.scorer()
    assert isinstance(scorer, MCHADScorer)
    torch.testing.assert_close(scorer.centers, loss.centers.params.detach())
    assert scorer.centers.data_ptr() != loss.centers.params.data_ptr()
    assert not scorer.centers.requires_grad


def test_create_scorer_with_shape_keywords_then_load_state():
    scorer = ood_core.create_scorer("mchad", n_classes=3, n_dim=2)
    assert scorer.centers.shape == (3, 2)
    trained = MCHADLoss(3, 2).scorer()
    scorer.load_state_dict(trained.state_dict())
    torch.testing.assert_close(scorer.centers, trained.centers)
    with pytest.raises(ValueError, match="MCHADScorer: argument 'n_dim'"):
        MCHADScorer(3, 0)


def test_registration():
    info = ood_core.get_info("loss", "mchad")
    assert info.target == "ood_plugin_mchad.loss:MCHADLoss"
    assert info.scorer == "mchad" and info.uses_ood and info.inputs == ("distances", "target")
    scorer = ood_core.get_info("scorer", "mchad")
    assert scorer.reads == "embedding" and scorer.needs_loss_state and not scorer.needs_fit


def test_package_import_is_light():
    code = "import sys, ood_plugin_mchad; sys.exit(3 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


# ---------------------------------------------------------------------------------------------
# training and documentation


def test_smoke_training_separates_outliers():
    loss = MCHADLoss(4, 8, radius=1.0, margin=2.0, weight_center=1.0, weight_oe=0.01)
    result = smoke_train(
        loss,
        inputs=("distmat", "target"),
        reads="embedding",
        feed=lambda out, y: (loss.distance(out["embedding"]), y),
        steps=150,
    )
    assert result["AUROC"] > 0.8, result
    assert result["ACC"] > 0.9, result


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (16,)
    assert namespace["classes"].dtype == torch.int64
    assert torch.isfinite(namespace["loss"])
