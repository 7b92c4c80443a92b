"""CACLoss and CACScorer: the paper's formulas, pytorch-ood 0.4.0 parity and divergences."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from ood_plugin_cac import CACLoss, CACScorer

import ood_core
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses
from ood_core.testing.toy import smoke_train

README = Path(__file__).resolve().parents[1] / "README.md"


def _pair(n_classes: int, **kwargs):
    ours = CACLoss(n_classes, **kwargs).double()
    ref = pytorch_ood_losses().CACLoss(n_classes, **kwargs).double()
    return ours, ref


def _embeddings(seed: int, batch: int, n_classes: int, magnitude: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n_classes, generator=g, dtype=torch.float64) * magnitude


def _value_and_grad(loss, distances, target):
    d = distances.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.4.0 warns when it drops OOD samples
        value = loss(d, target)
    (grad,) = torch.autograd.grad(value, d)
    return value, grad


def _paper_loss(distances, target, alpha):
    """CAC, written out: mean over ID rows of alpha d_y + log(1 + sum_{k != y} e^(d_y - d_k))."""
    rows = []
    for d, y in zip(distances.tolist(), target.tolist()):
        if y < 0:
            continue
        others = sum(math.exp(d[y] - d[k]) for k in range(len(d)) if k != y)
        rows.append(alpha * d[y] + math.log(1 + others))
    return sum(rows) / max(len(rows), 1)


def _paper_score(z, anchors):
    """The paper's rejection score, written out: min_k d_k (1 - softmin(d)_k), Euclidean d."""
    out = []
    for row in z.tolist():
        d = [math.sqrt(sum((a - b) ** 2 for a, b in zip(row, c))) for c in anchors.tolist()]
        norm = sum(math.exp(-v) for v in d)
        out.append(min(v * (1 - math.exp(-v) / norm) for v in d))
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# differential tests: 0.4.0's "other classes" 0..C-2 are right exactly for rows of class C-1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(9, 2), (16, 4), (31, 10)])
@pytest.mark.parametrize("kwargs", [{}, {"magnitude": 5.0, "alpha": 0.1}, {"alpha": 2.0}])
@pytest.mark.parametrize("with_ood", [False, True])
def test_matches_pytorch_ood_on_rows_of_the_last_class(seed, shape, kwargs, with_ood):
    batch, n_classes = shape
    ours, ref = _pair(n_classes, **kwargs)
    torch.testing.assert_close(ours.centers.params, ref.centers.params)
    z = _embeddings(seed, batch, n_classes, kwargs.get("magnitude", 1.0))
    distances = ours.distance(z).detach()
    target = torch.full((batch,), n_classes - 1)
    if with_ood:
        target[1::3] = -1
    v_ours, g_ours = _value_and_grad(ours, distances, target)
    v_ref, g_ref = _value_and_grad(ref, distances, target)
    torch.testing.assert_close(v_ours, v_ref)
    torch.testing.assert_close(g_ours, g_ref)
    assert v_ours.item() == pytest.approx(_paper_loss(distances, target, ours.alpha), rel=1e-9)


# ---------------------------------------------------------------------------------------------
# divergences from 0.4.0


@pytest.mark.parametrize("seed", [0, 1])
def test_tuplet_term_uses_every_class_but_the_true_one(seed):
    n_classes = 4
    ours, ref = _pair(n_classes)
    distances = ours.distance(_embeddings(seed, 12, n_classes)).detach()
    target = torch.arange(12) % (n_classes - 1)  # never the last class
    expected = _paper_loss(distances, target, 1.0)
    v_ours, g_ours = _value_and_grad(ours, distances, target)
    v_ref, g_ref = _value_and_grad(ref, distances, target)
    assert v_ours.item() == pytest.approx(expected, rel=1e-9)
    assert v_ref.item() != pytest.approx(expected, rel=1e-3)  # 0.4.0: includes e^0, drops C-1
    # 0.4.0 never pushes rows away from the last anchor; ours does
    assert (g_ref[:, -1] == 0).all() and (g_ours[:, -1] != 0).all()


def test_large_distance_gaps_keep_their_gradient():
    ours, ref = _pair(3)
    distances = torch.tensor([[80.0, 0.5, 1.0]], dtype=torch.float64)  # far from its anchor
    target = torch.tensor([0])
    v_ours, g_ours = _value_and_grad(ours, distances, target)
    _, g_ref = _value_and_grad(ref, distances, target)
    assert v_ours.item() == pytest.approx(_paper_loss(distances, target, 1.0), rel=1e-12)
    assert (g_ref[0, 1:] == 0).all()  # 0.4.0 clamps d_y - d_k at 50: no push from the others
    assert (g_ours[0, 1:] < -0.3).all() and g_ours[0, 1:].sum().item() == pytest.approx(-1.0)


@pytest.mark.parametrize("magnitude", [1.0, 10.0])
def test_distance_is_euclidean_and_score_is_the_papers(magnitude):
    ours, ref = _pair(4, magnitude=magnitude)
    z = _embeddings(3, 20, 4, magnitude)
    torch.testing.assert_close(ours.distance(z) ** 2, ref.distance(z))
    expected = _paper_score(z, ours.centers.params)
    torch.testing.assert_close(ours.scorer()(z), expected)
    torch.testing.assert_close(CACLoss.score(ours.distance(z)), expected)
    theirs = ref.score(ref.distance(z))  # -max on squared distances
    assert not torch.allclose(theirs, expected)
    # not only a different scale: 0.4.0 ranks the samples differently
    assert not torch.equal(theirs.argsort(), expected.argsort())


def test_scorer_predicts_the_closest_anchor_and_holds_a_copy():
    loss = CACLoss(3, magnitude=4.0)
    scorer = loss.scorer()
    z = torch.tensor([[3.9, 0.1, 0.0], [0.0, 0.2, 4.5], [0.1, 4.0, 0.3]])
    assert scorer.predict(z).tolist() == [0, 2, 1]
    before = scorer(z)
    with torch.no_grad():
        loss.centers.params.mul_(2.0)
    torch.testing.assert_close(scorer(z), before)
    made = ood_core.create_scorer("cac", n_classes=3, magnitude=4.0)
    torch.testing.assert_close(made(z), before)


def test_embedding_on_an_anchor_has_finite_gradient():
    loss = CACLoss(3, magnitude=2.0)
    z = loss.centers.params.detach().clone().requires_grad_(True)
    value = loss(loss.distance(z), torch.arange(3))
    (grad,) = torch.autograd.grad(value, z)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_loads_a_pytorch_ood_state_dict():
    ref = pytorch_ood_losses().CACLoss(5, magnitude=7.0)
    ours = CACLoss(5)
    ours.load_state_dict(ref.state_dict(), strict=True)
    torch.testing.assert_close(ours.centers.params, torch.eye(5) * 7.0)
    z = torch.randn(6, 5)
    torch.testing.assert_close(ours.distance(z) ** 2, ref.distance(z), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: CACLoss(0), r"CACLoss: argument 'n_classes'"),
        (lambda: CACLoss(3)(torch.rand(2, 4), torch.zeros(2, dtype=torch.long)), "'distances'"),
        (lambda: CACLoss(3).distance(torch.rand(2, 4)), r"CACLoss: argument 'x'"),
        (lambda: CACScorer(3)(torch.rand(2, 4)), r"CACScorer: argument 'embedding'"),
        (lambda: CACScorer(3, anchors=torch.eye(2)), r"CACScorer: argument 'anchors'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------------------------------------
# training and the README


def test_smoke_training():
    loss = ood_core.create_loss("cac", n_classes=4, magnitude=5.0)
    result = smoke_train(
        loss,
        inputs=("distances", "target"),
        reads="embedding",
        dim=4,
        use_ood=False,
        steps=60,
        feed=lambda out, y: (loss.distance(out["embedding"]), y),
    )
    assert result["AUROC"] > 0.8, result
    assert result["ACC"] > 0.9, result


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (8,)


@pytest.mark.parametrize("first", ["ood_plugin_cac.scorer", "ood_plugin_cac.loss"])
def test_loss_and_scorer_modules_load_in_either_order_without_a_cycle(first):
    import subprocess
    import sys

    code = (
        "import importlib, sys; importlib.import_module(sys.argv[1]); "
        "assert 'ood_plugin_cac.loss' not in sys.modules or sys.argv[1].endswith('loss'), "
        "'the scorer module imports the loss module'; "
        "from ood_plugin_cac.loss import CACLoss; from ood_plugin_cac.scorer import CACScorer; "
        "assert type(CACLoss(3).scorer()) is CACScorer"
    )
    subprocess.run([sys.executable, "-c", code, first], check=True)
