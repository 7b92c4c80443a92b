"""Gram: pytorch-ood 0.4.0 parity on a two-layer CNN, the deterministic split, export, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_gram import Gram
from ood_plugin_gram.scorer import gram_features, held_out

from ood_core.scoring import NotFittedError
from ood_core.testing.posthoc import onnx_scores
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector
from ood_core.testing.shaping import TinyNet, images

README = Path(__file__).resolve().parents[1] / "README.md"


def layers_of(net: TinyNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two ReLU outputs of TinyNet's ``features`` (what 0.4.0's feature_layers give)."""
    with torch.no_grad():
        first = net.features[:2](x)
        return first, net.features[2:](first)


def our_splits(scorer: Gram, layers, y: torch.Tensor, fraction: float) -> list[torch.Tensor]:
    """Per class, the positions (within the class, stream order) the fit of ``scorer`` held out."""
    held = held_out(scorer._features(layers, torch.float64)[y >= 0], fraction)
    y = y[y >= 0]
    return [torch.nonzero(held[y == c])[:, 0] for c in range(int(y.max()) + 1)]


class Counts(float):
    """0.4.0 holds out ``int(validation_fraction * n_c)`` per class: this one gives ours."""

    def __new__(cls, counts):
        out = super().__new__(cls, 0.5)
        out.counts = iter(counts)
        return out

    def __mul__(self, n_c):
        return next(self.counts)


@pytest.mark.parametrize("fraction, poles", [(0.0, None), (0.1, None), (0.2, [1, 3])])
def test_matches_pytorch_ood_fitted_on_the_same_data(monkeypatch, fraction, poles):
    net = TinyNet(num_classes=3).eval()
    x, test = images(150, 0), images(40, 1)
    y = torch.arange(150) % 3
    y[::11] = -1  # OOD rows: dropped by both
    reference = pytorch_ood_detector("gram")
    theirs = reference.Gram(net.head_on_maps, [net.features[:2], net.features[2:]], 3, poles)
    ours = Gram(net.fc, num_classes=3, num_poles_list=poles, validation_fraction=fraction)
    ours.fit([(layers_of(net, x[i : i + 40]), y[i : i + 40]) for i in range(0, 150, 40)])
    held = our_splits(ours, layers_of(net, x), y, fraction)
    assert all(len(h) > 0 for h in held) or fraction == 0  # the split is exercised
    theirs.validation_fraction = Counts(len(h) for h in held)
    splits = iter(held)

    def our_split(n):  # 0.4.0 takes perm[:n_val] as held out: give it our split
        held = next(splits)
        rest = torch.tensor([i for i in range(n) if i not in set(held.tolist())])
        return torch.cat([held, rest.long()])

    monkeypatch.setattr(torch, "randperm", our_split)
    theirs.fit([(x[i : i + 50], y[i : i + 50]) for i in range(0, 150, 50)])
    monkeypatch.undo()
    torch.testing.assert_close(ours.norms.float(), theirs.layer_norm.float(), rtol=1e-5, atol=0)
    expected = theirs.predict(test)
    torch.testing.assert_close(ours(layers_of(net, test)), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(ours.predict(layers_of(net, test)), net(test).argmax(1))


def test_gram_features_match_the_direct_formula_and_do_not_overflow():
    f = torch.rand(3, 4, 5, 5, dtype=torch.float64) - 0.3
    for p in (1, 2, 5):
        m = (f**p).flatten(2)
        g = (m @ m.transpose(1, 2)).sum(2)
        direct = g.sign() * g.abs() ** (1 / p)
        torch.testing.assert_close(gram_features(f, [p]), direct)
    big = gram_features((f * 1e6).float(), [5])  # (1e6)^10 overflows float32 in the direct form
    assert torch.isfinite(big).all()
    torch.testing.assert_close(big.double(), gram_features(f, [5]) * 1e12, rtol=1e-4, atol=0)


def test_the_fitted_state_does_not_depend_on_the_random_seed():
    net = TinyNet(num_classes=3).eval()
    data = layers_of(net, images(90, 2))
    y = torch.arange(90) % 3
    states = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        states.append(Gram(net.fc).fit(data, y).state_dict())
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


def test_the_split_depends_on_each_sample_alone_and_holds_out_about_the_fraction():
    """Shuffled and re-batched data give the same fit (the split a rank makes on its shard is
    the one-process split); the hash holds out about f n (4 binomial standard deviations)."""
    net = TinyNet(num_classes=3).eval()
    data, y = layers_of(net, images(90, 4)), torch.arange(90) % 3
    perm = torch.randperm(90, generator=torch.Generator().manual_seed(0))
    a = Gram(net.fc, validation_fraction=0.3).fit(data, y)
    b = Gram(net.fc, validation_fraction=0.3)
    b.fit([(tuple(t[perm[i : i + 7]] for t in data), y[perm[i : i + 7]]) for i in range(0, 90, 7)])
    for key, value in a.state_dict().items():
        torch.testing.assert_close(value, b.state_dict()[key], rtol=1e-12, atol=0, msg=key)
    assert 0 < held_out(a._features(data, torch.float64), 0.3).sum() < 90
    rows = torch.randn(4000, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for f in (0.1, 0.5):
        assert abs(int(held_out(rows, f).sum()) - 4000 * f) < 4 * (4000 * f * (1 - f)) ** 0.5


def test_export_with_fitted_state_at_two_batch_sizes():
    net = TinyNet(num_classes=3).eval()
    scorer = Gram(net.fc).fit(layers_of(net, images(90, 3)), torch.arange(90) % 3).eval()

    class Flat(torch.nn.Module):  # ONNX inputs are tensors: the layers as two graph inputs
        def __init__(self):
            super().__init__()
            self.scorer, self.net = scorer, net

        def forward(self, x):
            return self.scorer(layers_of_graph(self.net, x))

    def layers_of_graph(n, x):
        first = n.features[:2](x)
        return first, n.features[2:](first)

    probes = [images(1, 4), images(5, 5)]
    got = onnx_scores(Flat().eval(), images(3, 6), probes)
    for g, probe in zip(got, probes):
        torch.testing.assert_close(g, scorer(layers_of(net, probe)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda n: Gram(n.fc, torch.nn.Identity()), "Gram: argument 'feature_layers'"),
        (lambda n: Gram(), "Gram: argument 'head'"),
        (lambda n: Gram(n.fc, num_classes=0), "Gram: argument 'num_classes'"),
        (lambda n: Gram(n.fc, num_poles_list=[]), "Gram: argument 'num_poles_list'"),
        (lambda n: Gram(n.fc, num_poles_list=[0]), "Gram: argument 'num_poles_list'"),
        (lambda n: Gram(n.fc, validation_fraction=1.0), "Gram: argument 'validation_fraction'"),
        (lambda n: Gram(n.fc, max_held_out=0), "Gram: argument 'max_held_out'"),
        (lambda n: Gram(n.fc).fit(torch.rand(9, 16, 2, 2)), "argument 'y' is required"),
        (lambda n: Gram(n.fc, num_classes=4).fit(torch.rand(9, 16), torch.arange(9) % 5), "num"),
        (
            lambda n: Gram(n.fc).fit(torch.rand(9, 16), torch.arange(9) % 6),
            "Gram.fit: argument 'y'",
        ),
        (lambda n: Gram(n.fc).fit(torch.rand(9, 16), torch.arange(9) % 4), r"class\(es\) \[4\]"),
        (lambda n: Gram(n.fc).fit(torch.full((5, 16), float("nan")), torch.arange(5)), "NaN"),
        (
            lambda n: Gram(n.fc).fit(((torch.rand(5, 3, 2), torch.rand(4, 16))), torch.arange(5)),
            "batch",
        ),
        (lambda n: fitted(n)((torch.rand(2, 16), torch.rand(2, 8))), "channels"),
        (lambda n: fitted(n)(torch.rand(2, 16, 2, 2)), "channels"),
        (lambda n: fitted(n)(()), "non-empty tuple"),
    ],
)
def test_bad_arguments_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(TinyNet())


def fitted(net: TinyNet) -> Gram:
    x = (torch.rand(20, 16, 3, 3), torch.rand(20, 16, 2, 2))
    return Gram(net.fc).fit(x, torch.arange(20) % 5)


def test_unfitted_use_raises():
    with pytest.raises(NotFittedError, match="Gram is not fitted"):
        Gram(TinyNet().fc)((torch.rand(2, 8, 2, 2), torch.rand(2, 16, 2, 2)))


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (4,)
