"""Differential tests against pytorch-ood 0.4.0 where its code agrees with the paper."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from ood_plugin_vos import VirtualOutlierSynthesizingRegLoss, VOSRegLoss


def _modules(num_classes: int, seed: int, features: int | None = None):
    torch.manual_seed(seed)
    phi = torch.nn.Linear(1, 2)
    weights = torch.nn.Linear(num_classes, 1)
    torch.nn.init.uniform_(weights.weight, 0.1, 1.0)  # positive: where 0.4.0 agrees with the paper
    fc = torch.nn.Linear(features, num_classes) if features else None
    return phi, weights, fc


def _targets(shape: tuple[int, ...], num_classes: int, g: torch.Generator, ood: bool = True):
    y = torch.randint(0, num_classes, shape, generator=g)
    if ood:
        y = torch.where(torch.rand(shape, generator=g) < 0.3, -1, y)
        y.view(-1)[0], y.view(-1)[-1] = 0, -1
    return y


def _grads(value, leaves):
    return torch.autograd.grad(value.sum(), leaves, allow_unused=True)


def _assert_grads_close(ours, theirs):
    for a, b in zip(ours, theirs):
        if a is None or b is None:
            assert (a is None or not a.abs().any()) and (b is None or not b.abs().any())
        else:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(16, 5), (2, 5, 3, 4)], ids=["classification", "segmentation"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_vos_reg_loss_matches_0_4_0(ref, seed, shape, reduction):
    phi, weights, _ = _modules(shape[1], seed)
    theirs = ref.VOSRegLoss(phi, weights, alpha=0.7, reduction=reduction)
    ours = VOSRegLoss(copy.deepcopy(phi), copy.deepcopy(weights), alpha=0.7, reduction=reduction)
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * 4).requires_grad_()
    y = _targets((shape[0], *shape[2:]), shape[1], g)

    a, b = ours(x, y), theirs(x, y)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    _assert_grads_close(_grads(a, [x, *ours.parameters()]), _grads(b, [x, *theirs.parameters()]))


def test_vos_energy_matches_0_4_0_training_energy(ref):
    phi, weights, _ = _modules(6, 0)
    theirs = ref.VOSRegLoss(phi, weights)
    ours = VOSRegLoss(phi, weights)
    x = torch.randn(32, 6) * 10
    torch.testing.assert_close(ours.energy(x), theirs._energy(x))


def _feed_both(ours, theirs, batches):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logits, feats, y in batches:
            ours(logits, feats, y)
            theirs(logits, feats, y)
            # ours is a ring buffer: its oldest-first view is 0.4.0's queue
            torch.testing.assert_close(ours.ordered_queues(), theirs.data_dict, atol=0, rtol=0)
            assert ours.number_dict == theirs.number_dict


def _batches(n: int, batch: int, c: int, d: int, seed: int, ood: bool = True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        y = _targets((batch,), c, g, ood=ood)
        # uneven classes: class c-1 is rare
        y = torch.where((y == c - 1) & (torch.rand(batch, generator=g) < 0.6), 0, y)
        out.append((torch.randn(batch, c, generator=g), torch.randn(batch, d, generator=g), y))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_queues_match_0_4_0_through_fill_and_fifo(ref, seed):
    """Fill in batch order (dropping samples of full classes), then FIFO once all are full."""
    c, d = 3, 4
    phi, weights, fc = _modules(c, seed, d)
    kw = dict(sample_number=5, sample_from=20, select=2)
    theirs = ref.VirtualOutlierSynthesizingRegLoss(phi, weights, fc, **kw)
    ours = VirtualOutlierSynthesizingRegLoss(*map(copy.deepcopy, (phi, weights, fc)), **kw)
    batches = _batches(20, 9, c, d, seed)
    _feed_both(ours, theirs, batches[:10])
    assert bool(ours.queues_full())  # the rest runs in FIFO mode
    _feed_both(ours, theirs, batches[10:])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_synthesis_matches_0_4_0_while_filling(ref, reduction):
    """Until the queues were full the loss is the cross-entropy on ID samples (no regulariser)."""
    c, d = 4, 6
    phi, weights, fc = _modules(c, 3, d)
    kw = dict(sample_number=50, sample_from=10, reduction=reduction)
    theirs = ref.VirtualOutlierSynthesizingRegLoss(phi, weights, fc, **kw)
    ours = VirtualOutlierSynthesizingRegLoss(*map(copy.deepcopy, (phi, weights, fc)), **kw)
    for logits, feats, y in _batches(3, 9, c, d, 3):
        logits.requires_grad_()
        a = ours(logits, feats, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            b = theirs(logits, feats, y)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(_grads(a, [logits])[0], _grads(b, [logits])[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_synthesis_regulariser_matches_0_4_0_on_the_same_outliers(ref, seed, reduction):
    """With full queues and the same virtual outliers, values and gradients agree."""
    c, d, select = 3, 5, 2
    phi, weights, fc = _modules(c, seed, d)
    kw = dict(sample_number=2, sample_from=10, select=select, alpha=0.5, reduction=reduction)
    theirs = ref.VirtualOutlierSynthesizingRegLoss(phi, weights, fc, **kw)
    ours = VirtualOutlierSynthesizingRegLoss(*map(copy.deepcopy, (phi, weights, fc)), **kw)
    _feed_both(ours, theirs, _batches(4, 8, c, d, seed, ood=False))
    assert bool(ours.queues_full())
    virtual = torch.randn(c * select, d, generator=torch.Generator().manual_seed(seed)) * 3
    theirs._sample_virtual_outliers = lambda: virtual.clone()
    ours.sample_virtual_outliers = lambda: virtual.clone()
    # 0.4.0 drops outliers from the batch (data-dependent shape): with "none" compare ID-only
    ((logits, feats, y),) = _batches(1, 10, c, d, seed + 10, ood=reduction != "none")
    logits.requires_grad_()
    a = ours(logits, feats, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = theirs(logits, feats, y)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    _assert_grads_close(
        _grads(a, [logits, *ours.parameters()]), _grads(b, [logits, *theirs.parameters()])
    )
    torch.testing.assert_close(ours.ordered_queues(), theirs.data_dict, atol=0, rtol=0)


def test_gaussians_and_selection_match_0_4_0(ref):
    """Class means, pooled covariance + 1e-4 I, and the least-likely samples under it."""
    c, d, n, select = 3, 4, 64, 5
    ours = VirtualOutlierSynthesizingRegLoss(
        num_classes=c, num_features=d, sample_number=6, select=select, sample_from=n
    )
    g = torch.Generator().manual_seed(0)
    ours.data_dict.copy_(torch.randn(c, 6, d, generator=g) + torch.arange(c)[:, None, None])
    means, chol = ours.class_gaussians()
    q = ours.data_dict
    mu = q.mean(1)
    centred = torch.cat([q[k] - q[k].mean(0) for k in range(c)])
    cov = centred.T @ centred / len(centred) + 1e-4 * torch.eye(d)
    torch.testing.assert_close(means, mu)
    torch.testing.assert_close(chol @ chol.T, cov)

    noise = torch.randn(c, n, d, generator=g)
    picked = VirtualOutlierSynthesizingRegLoss.select_outliers(means, chol, noise, select)
    samples = means[:, None] + noise @ chol.T
    expected = []
    for k in range(c):
        dist = torch.distributions.MultivariateNormal(mu[k], covariance_matrix=cov)
        expected.append(samples[k][torch.topk(-dist.log_prob(samples[k]), select).indices])
    torch.testing.assert_close(picked, torch.cat(expected), atol=1e-5, rtol=1e-4)


def test_sampled_outliers_are_in_the_low_density_tail():
    c, d = 2, 3
    ours = VirtualOutlierSynthesizingRegLoss(
        num_classes=c, num_features=d, sample_number=50, select=4, sample_from=2000
    )
    torch.manual_seed(0)
    ours.data_dict.copy_(torch.randn(c, 50, d) + 5 * torch.arange(c)[:, None, None])
    means, chol = ours.class_gaussians()
    v = ours.sample_virtual_outliers().reshape(c, 4, d)
    # Mahalanobis radius^2 is chi2(3): the 4 largest of 2000 draws lie far beyond its median 2.37
    z = torch.linalg.solve_triangular(chol, (v - means[:, None]).reshape(-1, d).T, upper=False)
    assert bool(((z**2).sum(0) > 12).all())


def test_loads_0_4_0_vos_state_dict(ref):
    phi, weights, _ = _modules(5, 4)
    theirs = ref.VOSRegLoss(phi, weights)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p))
    ours = VOSRegLoss(num_classes=5)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x, y = torch.randn(12, 5) * 3, torch.tensor([0, 1, 2, 3, 4, -1] * 2)
    torch.testing.assert_close(ours(x, y), theirs(x, y))


def test_loads_0_4_0_synthesis_state_dict(ref):
    phi, weights, fc = _modules(3, 5, 4)
    theirs = ref.VirtualOutlierSynthesizingRegLoss(phi, weights, fc, sample_number=4, sample_from=8)
    state = theirs.state_dict()
    assert {"fc.weight", "weights_energy.weight", "logistic_regression.weight"} <= set(state)
    ours = VirtualOutlierSynthesizingRegLoss(
        num_classes=3, num_features=4, sample_number=4, sample_from=8
    )
    ours.data_dict.fill_(1.0)
    ours.queue_counts.fill_(4)
    ours.load_state_dict(state, strict=True)
    for key, value in state.items():
        torch.testing.assert_close(ours.state_dict()[key], value)
    # 0.4.0 kept no queues: they load empty
    assert not ours.data_dict.abs().any() and ours.number_dict == {0: 0, 1: 0, 2: 0}
    logits, feats, y = _batches(1, 6, 3, 4, 0, ood=False)[0]
    torch.testing.assert_close(ours(logits, feats, y), theirs(logits, feats, y))


@pytest.mark.parametrize("name", ["VOSRegLoss", "VirtualOutlierSynthesizingRegLoss"])
def test_drop_in_signatures(ref, name):
    """forward is identical; __init__ takes 0.4.0's parameters in order with its defaults.

    Ours also lets the modules default to None and adds keyword-only shape arguments
    (``num_classes``/``num_features``) so ``create_loss`` and checkpoints can build it.
    """
    import inspect

    import ood_plugin_vos

    from ood_core.testing.dropin import assert_same_signature

    ours, theirs = getattr(ood_plugin_vos, name), getattr(ref, name)
    assert_same_signature(ours, theirs, methods=("forward",))
    mine = list(inspect.signature(ours.__init__).parameters.values())[1:]  # without self
    reference = list(inspect.signature(theirs.__init__).parameters.values())[1:]
    for a, b in zip(mine, reference):
        assert (a.name, a.kind) == (b.name, b.kind)
        if b.default is not inspect.Parameter.empty:
            assert a.default == b.default, a.name
        else:
            assert a.default is None, f"{a.name}: a required module, optional here"
    assert all(p.kind is p.KEYWORD_ONLY for p in mine[len(reference) :])


@pytest.mark.parametrize("shape", [(32, 5), (2, 5, 3, 4)])
@pytest.mark.parametrize("as_module", [False, True])
def test_weighted_ebo_alias_matches_pytorch_ood(webo, shape, as_module):
    """``create_scorer("WeightedEBO", weights=...)`` takes 0.4.0's tensor or its Linear(C, 1)."""
    import ood_core

    _, weights, _ = _modules(5, seed=3)
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(4)) * 5
    ours = ood_core.create_scorer("WeightedEBO", weights=weights if as_module else weights.weight)
    with torch.no_grad():
        expected = webo(None, weights.weight).predict_logits(logits)
    torch.testing.assert_close(ours(logits), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        weights.weight.mul_(2)  # the scorer holds a copy
    torch.testing.assert_close(ours(logits), expected, rtol=1e-5, atol=1e-5)
