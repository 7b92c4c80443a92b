"""IILoss and IIScorer: the paper's formulas, pytorch-ood 0.4.0 parity and divergences."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from ood_plugin_ii import IILoss, IIScorer

import ood_core
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses
from ood_core.testing.toy import smoke_train, toy_data

README = Path(__file__).resolve().parents[1] / "README.md"


def _balanced(seed: int, per_class: int, n_classes: int, n_dim: int, n_ood: int = 0):
    """Every class ``per_class`` times (shuffled), plus ``n_ood`` OOD rows."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_classes).repeat(per_class)
    y = torch.cat([y, torch.full((n_ood,), -1)])[torch.randperm(len(y) + n_ood, generator=g)]
    x = torch.randn(len(y), n_dim, generator=g) + 3.0 * torch.where(y >= 0, y, 0)[:, None]
    return x, y


def _value_and_grad(loss, x, y):
    x = x.clone().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.4.0 warns when it drops OOD samples
        value = loss(x, y)
    (grad,) = torch.autograd.grad(value, x)
    return value, grad


def _paper_loss(x, y, means, alpha=1.0):
    """II loss, written out with the given class means, over the ID rows."""
    rows = [(xi, yi) for xi, yi in zip(x.tolist(), y.tolist()) if yi >= 0]
    if not rows:
        return 0.0
    spread = sum(sum((a - b) ** 2 for a, b in zip(xi, means[yi])) for xi, yi in rows) / len(rows)
    classes = sorted({yi for _, yi in rows})
    gaps = [
        sum((a - b) ** 2 for a, b in zip(means[j], means[k]))
        for j in classes
        for k in classes
        if j != k
    ]
    return spread - alpha * (min(gaps) if gaps else 0.0)


def _batch_means(x, y, n_classes):
    return {
        k: x[y == k].double().mean(0).tolist() for k in range(n_classes) if bool((y == k).any())
    }


# ---------------------------------------------------------------------------------------------
# differential tests: with balanced batches that hold every class, 0.4.0's running means are
# exact too, and both modes follow the paper


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(3, 2, 2), (4, 3, 5), (2, 6, 3)])
@pytest.mark.parametrize("alpha", [1.0, 0.25])
@pytest.mark.parametrize("n_ood", [0, 5])
def test_matches_pytorch_ood_in_training_and_evaluation(seed, shape, alpha, n_ood):
    per_class, n_classes, n_dim = shape
    ours = IILoss(n_classes, n_dim, alpha=alpha)
    ref = pytorch_ood_losses().IILoss(n_classes, n_dim, alpha=alpha)
    for step in range(3):
        x, y = _balanced(seed * 10 + step, per_class, n_classes, n_dim, n_ood)
        v_ours, g_ours = _value_and_grad(ours, x, y)
        v_ref, g_ref = _value_and_grad(ref, x, y)
        torch.testing.assert_close(v_ours, v_ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-5)
        paper = _paper_loss(x, y, _batch_means(x, y, n_classes), alpha)
        assert v_ours.item() == pytest.approx(paper, rel=1e-4, abs=1e-4)
    torch.testing.assert_close(
        ours.running_centers.centers, ref.running_centers.centers.detach(), rtol=1e-5, atol=1e-5
    )
    # evaluation mode uses the running means (0.4.0 only after dropping its buffer's graph)
    ref_eval = pytorch_ood_losses().IILoss(n_classes, n_dim, alpha=alpha)
    ref_eval.load_state_dict(ref.state_dict())
    ours.eval()
    ref_eval.eval()
    x, y = _balanced(seed + 99, per_class, n_classes, n_dim, n_ood)
    v_ours, g_ours = _value_and_grad(ours, x, y)
    v_ref, g_ref = _value_and_grad(ref_eval, x, y)
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-5)
    means = dict(enumerate(ours.running_centers.centers.double().tolist()))
    assert v_ours.item() == pytest.approx(_paper_loss(x, y, means, alpha), rel=1e-4, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# divergences from 0.4.0


def test_single_class_batch_has_no_separation_term():
    x = torch.randn(6, 3)
    y = torch.full((6,), 2)
    ref, _ = _value_and_grad(pytorch_ood_losses().IILoss(4, 3), x, y)
    assert ref.item() < -1e23  # 0.4.0: -1e24 from the "distance" of a centre to itself
    ours, grad = _value_and_grad(IILoss(4, 3), x, y)
    assert ours.item() == pytest.approx(_paper_loss(x, y, _batch_means(x, y, 4)), rel=1e-5)
    assert torch.isfinite(grad).all()


def test_running_means_are_exact_per_class_means():
    n_dim = 2
    first_x = torch.tensor([[1.0, 1.0], [3.0, 3.0], [5.0, 0.0]])
    first_y = torch.tensor([0, 0, 1])
    second_x = torch.tensor([[7.0, 7.0], [2.0, 4.0], [6.0, 2.0], [-1.0, 1.0]])
    second_y = torch.tensor([0, 2, 2, -1])  # class 2 first seen in the second batch
    ours = IILoss(3, n_dim)
    ref = pytorch_ood_losses().IILoss(3, n_dim)
    for x, y in ((first_x, first_y), (second_x, second_y)):
        _value_and_grad(ours, x, y)
        _value_and_grad(ref, x, y)
    expected = torch.tensor([[11 / 3, 11 / 3], [5.0, 0.0], [4.0, 3.0]])
    torch.testing.assert_close(ours.running_centers.centers, expected)
    assert ours.running_centers.counts.tolist() == [3.0, 1.0, 2.0]
    theirs = ref.running_centers.centers.detach()
    torch.testing.assert_close(theirs[2], expected[2] / 2)  # 0.4.0: mean / batch counter
    torch.testing.assert_close(theirs[0], torch.tensor([4.5, 4.5]))  # mean of batch means


def test_running_means_carry_no_graph():
    x, y = _balanced(0, 3, 3, 4)
    ref = pytorch_ood_losses().IILoss(3, 4)
    ours = IILoss(3, 4)
    for loss in (ref, ours):
        _value_and_grad(loss, x, y)
    assert ref.running_centers.running_centers.grad_fn is not None
    with pytest.raises(RuntimeError):
        copy.deepcopy(ref)
    ref.eval()
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="second time"):
        warnings.simplefilter("ignore")
        ref(x.clone().requires_grad_(True), y).backward()  # into the training step's graph
    assert ours.running_centers.running_centers.grad_fn is None
    twin = copy.deepcopy(ours)
    ours.eval()
    twin.eval()
    v = ours(x.clone().requires_grad_(True), y)
    v.backward()
    torch.testing.assert_close(twin(x, y), v.detach())  # the copy is equal


def test_loads_a_pytorch_ood_state_dict():
    ref = pytorch_ood_losses().IILoss(4, 3)
    for step in range(3):
        x, y = _balanced(step, 2, 3, 3)  # class 3 never seen
        _value_and_grad(ref, x, y)
    ours = IILoss(4, 3)
    ours.load_state_dict(ref.state_dict(), strict=True)
    torch.testing.assert_close(ours.running_centers.centers, ref.running_centers.centers.detach())
    assert ours.running_centers.counts.tolist() == [3.0, 3.0, 3.0, 0.0]
    z = torch.randn(5, 3)
    expected = ref.distance(z).detach()
    torch.testing.assert_close(ours.distance(z), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.scorer()(z), expected.min(1).values, rtol=1e-5, atol=1e-5)
    assert set(ours.state_dict()) == {"running_centers.running_centers", "running_centers.counts"}


# ---------------------------------------------------------------------------------------------
# scorer and construction


def test_scorer_scores_by_the_running_means_and_keeps_them():
    loss = IILoss(3, 4)
    for step in range(2):
        _value_and_grad(loss, *_balanced(step, 2, 3, 4))
    scorer = loss.scorer()
    assert isinstance(scorer, IIScorer)
    means = loss.running_centers.centers.clone()
    z = torch.randn(6, 4)
    expected = [min(((row - mu) ** 2).sum().item() for mu in means) for row in z]
    torch.testing.assert_close(scorer(z), torch.tensor(expected))
    assert scorer.predict(z).tolist() == loss.distance(z).argmin(1).tolist()
    _value_and_grad(loss, *_balanced(5, 2, 3, 4, n_ood=2))  # moves the loss's running means
    assert not torch.equal(loss.running_centers.centers, means)
    torch.testing.assert_close(scorer(z), torch.tensor(expected))
    torch.testing.assert_close(loss.predict(z).sum(1), torch.ones(6))  # 0.4.0's softmin
    made = ood_core.create_scorer("ii", n_classes=3, n_embedding=4)
    made.load_state_dict(scorer.state_dict())
    torch.testing.assert_close(made(z), torch.tensor(expected))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: IILoss(0, 3), r"IILoss: argument 'n_classes'"),
        (lambda: IILoss(3, 2)(torch.randn(2, 3), torch.zeros(2, dtype=torch.long)), "'x'"),
        (lambda: IILoss(3, 2)(torch.randn(2, 2), torch.tensor([0, 3])), "'target'"),
        (lambda: IIScorer(3, 2)(torch.randn(2, 3)), r"IIScorer: argument 'embedding'"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------------------------------------
# class means recomputed after training (the scorer's fit, the loss's fit_centers)


def _auroc(scores_id: torch.Tensor, scores_ood: torch.Tensor) -> float:
    """P(an OOD score > an ID score), ties count half (OOD is the positive class)."""
    diff = scores_ood[:, None] - scores_id[None, :]
    return float((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean())


def _train_drifting(seed: int, steps: int = 200):
    """A small MLP trained with the II loss on three blobs; its embedding grows as it trains."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(600) % 3
    x = 4 * torch.eye(4)[y] + torch.randn(600, 4, generator=g)
    x_ood = torch.randn(300, 4, generator=g) + 4 * torch.eye(4)[3]  # a fourth, unseen blob
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    loss = IILoss(3, 2)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        i = torch.randint(0, len(x), (32,), generator=g)
        value = loss(net(x[i]), y[i])
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    with torch.no_grad():
        return loss, net(x), y, net(x_ood)


@pytest.mark.parametrize("seed", [1, 2])
def test_stale_running_means_rank_ood_as_id_and_fitted_means_do_not(seed):
    loss, z, y, z_ood = _train_drifting(seed)
    stale = loss.scorer()
    fitted = loss.scorer().fit(zip(z.split(64), y.split(64)))  # a stream of (embedding, y)
    current = torch.stack([z[y == k].double().mean(0) for k in range(3)])
    torch.testing.assert_close(fitted.centers.double(), current, rtol=1e-6, atol=1e-5)
    assert (stale.centers - fitted.centers).norm() > 0.25 * fitted.centers.norm()  # drifted
    stale_auroc = _auroc(stale(z), stale(z_ood))
    fitted_auroc = _auroc(fitted(z), fitted(z_ood))
    assert stale_auroc < 0.5 < fitted_auroc - 0.3, (stale_auroc, fitted_auroc)


def test_fit_centers_puts_the_fitted_means_into_the_loss_and_its_state_dict():
    loss, z, y, z_ood = _train_drifting(3, steps=40)
    y = torch.where(torch.arange(len(y)) % 5 == 0, -1, y)  # OOD rows are skipped
    fitted = loss.scorer().fit(z, y)
    assert loss.fit_centers([(z[:100], y[:100]), (z[100:], y[100:])]) is loss
    torch.testing.assert_close(loss.running_centers.centers, fitted.centers)
    assert loss.running_centers.counts.tolist() == [float((y == k).sum()) for k in range(3)]
    rebuilt = IILoss(**loss.get_config())
    rebuilt.load_state_dict(loss.state_dict())
    torch.testing.assert_close(rebuilt.scorer()(z_ood), fitted(z_ood))
    loss.eval()
    torch.testing.assert_close(loss.distance(z_ood).amin(1), fitted(z_ood))


def test_fit_centers_with_a_missing_class_leaves_the_loss_unchanged():
    loss, z, y, _ = _train_drifting(3, steps=5)
    before = copy.deepcopy(loss.state_dict())
    with pytest.raises(ValueError, match=r"IIScorer.fit: argument 'y' has no sample of class"):
        loss.fit_centers(z[y < 2], y[y < 2])
    for key, value in loss.state_dict().items():
        assert torch.equal(value, before[key]), key


# ---------------------------------------------------------------------------------------------
# training and the README


def test_smoke_training():
    data = toy_data()
    steps = 60

    def class_means_of_the_training_data(net, loss, step):
        """As in the paper: after training, the means over the training data."""
        if step == steps - 1:
            with torch.no_grad():
                loss.fit_centers(net(data.x_train)["embedding"], data.y_train)

    loss = ood_core.create_loss("ii", n_classes=4, n_embedding=8)
    result = smoke_train(
        loss,
        inputs=("embedding", "target"),
        reads="embedding",
        use_ood=False,
        steps=steps,
        after_step=class_means_of_the_training_data,
    )
    assert result["AUROC"] > 0.8, result
    assert result["ACC"] > 0.9, result


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (8,)
