"""OpenMax: pytorch-ood 0.4.0 parity on the same fit data, the torch Weibull fit, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ood_plugin_openmax import OpenMax
from ood_plugin_openmax.weibull import fit_weibull, weibull_cdf
from scipy.stats import weibull_min

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.dropin import assert_same_keywords
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"


def _reference():
    return pytorch_ood_detector("openmax").OpenMax


def _data(seed: int, n: int = 400, c: int = 6):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, c, (n,), generator=g)
    x = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    x[torch.arange(n), y] += 4
    return x, y


@pytest.mark.parametrize(
    "seed, kwargs",
    [(0, {}), (1, {"tailsize": 20, "alpha": 3, "euclid_weight": 0.5}), (2, {"euclid_weight": 0.0})],
)
def test_matches_pytorch_ood_on_correctly_classified_samples(seed, kwargs):
    x, y = _data(seed)
    ours = ood_core.create_scorer("OpenMax", **kwargs).fit(x, y)
    right = x.argmax(1) == y  # the paper fits on these; 0.4.0 on every labelled sample
    theirs = _reference()(None, **kwargs).fit_logits(x[right], y[right])
    probe = _data(seed + 7, n=200)[0] * 1.5
    # 0.4.0's scipy Nelder-Mead fit is within ~1e-6 of the likelihood maximum oodx solves for
    torch.testing.assert_close(ours(probe), theirs.predict_logits(probe), rtol=1e-5, atol=1e-5)
    # with 0.4.0's Weibull parameters loaded, the two score formulas agree to rounding
    model = theirs._openmax
    with torch.no_grad():
        for k, weibull in model.distributions.items():
            ours.shape[k], ours.scale[k] = float(weibull.c), float(weibull.scale)
            ours.shift[k] = float(weibull.min_val) - 10000
    torch.testing.assert_close(ours(probe), theirs.predict_logits(probe), rtol=1e-10, atol=1e-10)


def test_misclassified_samples_are_not_fitted():
    x, y = _data(2)
    right = x.argmax(1) == y
    assert not right.all()
    a, b = OpenMax().fit(x, y), OpenMax().fit(x[right], y[right])
    for name in OpenMax.fit_state:
        assert torch.equal(getattr(a, name), getattr(b, name))
    # 0.4.0 fits every labelled sample: its means move with the misclassified ones
    theirs = _reference()(None).fit_logits(x, y)._openmax
    assert not np.allclose(theirs.centers[0], a.means[0].numpy())


def test_without_labels_each_sample_counts_for_its_prediction():
    x, _ = _data(3)
    assert torch.equal(OpenMax().fit(x).means, OpenMax().fit(x, x.argmax(1)).means)


@pytest.mark.parametrize("true_shape, true_scale", [(2.5, 3.0), (0.8, 1.0), (40.0, 10000.0)])
def test_weibull_fit_is_the_likelihood_maximum(true_shape, true_scale):
    sample = weibull_min.rvs(true_shape, scale=true_scale, size=30, random_state=4)
    shape, scale = fit_weibull(torch.tensor(sample)[None])
    ref_shape, _, ref_scale = weibull_min.fit(sample, floc=0)
    assert shape.item() == pytest.approx(ref_shape, rel=1e-4)
    assert scale.item() == pytest.approx(ref_scale, rel=1e-4)
    ours_ll = weibull_min.logpdf(sample, shape.item(), scale=scale.item()).sum()
    assert ours_ll >= weibull_min.logpdf(sample, ref_shape, scale=ref_scale).sum() - 1e-9
    points = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64) * true_scale
    expected = weibull_min.cdf(points.numpy(), shape.item(), scale=scale.item())
    assert weibull_cdf(points, shape, scale).numpy() == pytest.approx(expected, rel=1e-10)


def test_a_class_without_a_model_counts_as_far_away():
    x, y = _data(4, c=4)
    keep = y != 3
    scorer = OpenMax(alpha=2).fit(x[keep], y[keep])
    assert scorer.present.tolist() == [True, True, True, False]
    probe = torch.tensor([[0.0, 0.0, 0.0, 9.0]], dtype=torch.float64)  # predicts class 3
    # w = 1 for class 3: its whole activation moves to the unknown class
    unknown, rest = 9.0, torch.tensor([0.0, 0.0, 0.0, 0.0])
    expected = torch.sigmoid(torch.tensor(unknown) - torch.logsumexp(rest, 0)).item()
    w1 = weibull_cdf(
        scorer._distances(probe)[0, :3] - scorer.shift[:3], scorer.shape[:3], scorer.scale[:3]
    )
    assert w1.max() > 0.99  # far from every fitted class too
    assert scorer(probe).item() == pytest.approx(expected, rel=1e-3)


def test_constructor_takes_pytorch_oods_keywords():
    assert_same_keywords(OpenMax, _reference())


@pytest.mark.parametrize(
    "make, err, match",
    [
        (lambda: OpenMax()(torch.randn(2, 3)), NotFittedError, "OpenMax is not fitted"),
        (
            lambda: OpenMax().fit(*_data(0, c=3))(torch.randn(2, 4)),
            ValueError,
            "OpenMax: argument 'logits' must be 3 classes",
        ),
        (
            lambda: OpenMax().fit(torch.eye(3), torch.tensor([1, 2, 0])),
            ValueError,
            "no fit sample is correctly classified",
        ),
        (
            lambda: OpenMax().fit(torch.tensor([[0.0, float("nan")]]), torch.tensor([1])),
            ValueError,
            "OpenMax.fit: argument 'x'.*NaN",
        ),
        (lambda: OpenMax(tailsize=0), ValueError, "OpenMax: argument 'tailsize'"),
        (lambda: OpenMax(alpha=1.5), ValueError, "OpenMax: argument 'alpha'"),
        (lambda: OpenMax(euclid_weight=2.0), ValueError, "OpenMax: argument 'euclid_weight'"),
    ],
)
def test_errors_name_the_argument(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (3,)


def test_fit_takes_each_samples_distance_to_its_own_class_only(monkeypatch):
    """Fit never builds the (N, C, C) tensor of every sample's distance to every class mean
    (8 GB for 1000 samples of 1000 classes, 40 GB in the ImageNet benchmark): each sample's
    distance to its own class mean is O(N D)."""
    g = torch.Generator().manual_seed(0)
    classes, n = 1000, 2000
    y = torch.arange(n) % classes
    logits = torch.randn(n, classes, generator=g) + 8.0 * torch.nn.functional.one_hot(y, classes)

    def all_classes(self, x):
        raise AssertionError(f"fit computed all-class distances for {tuple(x.shape)}")

    monkeypatch.setattr(OpenMax, "_distances", all_classes)
    scorer = OpenMax(tailsize=2).fit(logits, y)
    assert bool(scorer.present.all())
    monkeypatch.undo()
    assert torch.isfinite(scorer(logits[:4])).all()  # (the fitted values vs 0.4.0: above)
