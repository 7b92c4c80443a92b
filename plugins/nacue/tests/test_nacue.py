"""NAC-UE against pytorch-ood 0.4.0 on the same model, layers and inputs; closed form; errors."""

from pathlib import Path

import pytest
import torch
from torch import nn

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).parents[1] / "README.md"


def _conv_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 8, 3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 5),
    ).eval()  # fmt: skip


def _inputs(n: int, seed: int, scale: float = 1.0, side: int = 8) -> torch.Tensor:
    return scale * torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"m_bins": 10, "alpha": 5.0, "o_star": 90},
        {"m_bins": [7, 20], "alpha": [1.0, 50.0], "o_star": [150, 40]},
    ],
)
def test_matches_pytorch_ood_040(kwargs):
    model = _conv_model()
    layers = [model[3], model[8]]  # a (B, 8, 4, 4) map (spatial mean) and a (B, 16) layer
    fit = _inputs(200, 1)
    batches = [fit[:64], fit[64:150], fit[150:]]
    ours = ood_core.create_scorer("NACUE", model=model, layers=layers, **kwargs).fit(batches)
    ref = pytorch_ood_detector("nac").NACUE(model, layers=layers, **kwargs).fit(batches)
    for i, stats in enumerate(ref._stats):
        assert torch.equal(getattr(ours, f"counts_{i}"), stats.counts.double())
    x = torch.cat([_inputs(30, 2), _inputs(30, 3, scale=4.0)])
    got, want = ours(x), ref.predict(x)
    assert len(set(got.tolist())) > 10  # the coverage is not saturated: the comparison bites
    print(f"NACUE vs 0.4.0 {kwargs}: max |diff| {float((got - want).abs().max()):.2e}")
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_closed_form_at_the_logits_layer():
    """Hooked at the logits z: dKL/dz = softmax(z) - 1/C, so s = sigmoid(alpha z (p - 1/C)).

    With ``m_bins=2`` the bin is whether s is above the middle edge ``0.5 - 2**-25``. Logits
    scaled by 40 saturate the softmax (p < 1e-12), where the exact gradient is kept.
    """
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4))
    g = torch.Generator().manual_seed(4)
    fit, x = torch.randn(80, 6, generator=g), 40 * torch.randn(9, 6, generator=g)
    scorer = ood_core.create_scorer("nacue", model=model, layers=[model[2]], m_bins=2, o_star=7)
    scorer.fit(fit)

    def upper(inputs):
        z = model(inputs).detach()
        s = torch.sigmoid(100.0 * z * (z.softmax(1) - 0.25))
        return (s > 0.5 - 2**-25).long()

    counts = torch.stack([(upper(fit) == b).sum(0) for b in (0, 1)], 1).double()
    assert torch.equal(scorer.counts_0, counts)
    expected = -(counts.gather(1, upper(x).t()).t() / 7).clamp(max=1).mean(1)
    torch.testing.assert_close(scorer(x), expected.float(), rtol=0, atol=1e-6)


def test_batch_independent_and_model_left_as_it_was():
    model = _conv_model().train()
    model[0].eval()
    model[7].weight.requires_grad_(False)
    grad = torch.ones_like(model[9].weight)
    model[9].weight.grad = grad
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    scorer = ood_core.create_scorer("nacue", model=model, layers=[model[4], model[8]], o_star=5)
    scorer.fit([_inputs(40, 5), _inputs(40, 6)])
    x = _inputs(11, 7)
    scores = scorer(x)
    torch.testing.assert_close(scorer(x[3:7]), scores[3:7], rtol=0, atol=1e-7)
    assert [m.training for m in model.modules()] == modes
    assert not model[7].weight.requires_grad and model[9].weight.grad is grad
    assert all(p.grad is None for n, p in model.named_parameters() if n != "9.weight")
    for k, v in model.state_dict().items():  # BatchNorm running stats included
        assert torch.equal(v, weights[k]), k
    assert not any(m._forward_hooks for m in model.modules()) and not x.requires_grad


def _model_and(**kwargs):
    model = _conv_model()
    return {"model": model, "layers": [model[8]], **kwargs}


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"model": None}, "model"),
        ({"layers": []}, "layers"),
        ({"layers": [nn.Linear(2, 2)]}, "layers"),  # not part of the model
        ({"m_bins": 1}, "m_bins"),
        ({"m_bins": [10, 10]}, "m_bins"),  # two values for one layer
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": float("inf")}, "alpha"),
        ({"o_star": 0}, "o_star"),
        ({"feature_reduce": "mean"}, "feature_reduce"),
    ],
)
def test_bad_keywords(kwargs, arg):
    with pytest.raises(ValueError, match=f"NACUE.*'{arg}'"):
        ood_core.create_scorer("nacue", **_model_and(**kwargs))


def test_duplicate_layer():
    model = _conv_model()
    with pytest.raises(ValueError, match="'layers'.*distinct"):
        ood_core.create_scorer("nacue", model=model, layers=[model[8], model[8]])


def test_unfitted_nan_fit_data_and_wrong_width():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Tanh(), nn.LazyLinear(3))
    model(_inputs(1, 0))
    scorer = ood_core.create_scorer("nacue", model=model, layers=[model[2]])
    with pytest.raises(NotFittedError):
        scorer(_inputs(2, 0))
    bad = _inputs(4, 0)
    bad[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NACUE.fit.*'x'.*NaN"):
        scorer.fit(bad)
    model[3] = nn.Linear(2 * 36, 3)
    scorer.fit(_inputs(16, 1))
    model[3] = nn.Linear(2 * 64, 3)  # larger inputs: the flattened layer has more neurons
    with pytest.raises(ValueError, match="NACUE.*'x'.*72 neurons in layer 0"):
        scorer(_inputs(2, 2, side=10))


@pytest.mark.parametrize("which", ["unused", "not-run"])
def test_layers_that_cannot_be_covered(which):
    model = _conv_model()
    extra = nn.Linear(16, 2)
    model[7].extra = extra  # a submodule the forward never runs
    layer = extra if which == "not-run" else model[7]
    if which == "unused":
        model[7].register_forward_hook(lambda m, i, o: o.detach())  # cuts the graph
    scorer = ood_core.create_scorer("nacue", model=model, layers=[layer])
    with pytest.raises(ValueError, match="NACUE.*'layers'"):
        scorer.fit(_inputs(4, 0))


def test_readme_example_runs():
    assert run_readme_examples(README)["scores"].shape == (4,)
