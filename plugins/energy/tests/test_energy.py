"""EnergyRegularizedLoss: the paper's formula, pytorch-ood 0.4.0 parity, robustness, training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ood_plugin_energy import EnergyRegularizedLoss

import ood_core
from ood_core.builtin.scorers import EnergyScore
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_losses
from ood_core.testing.toy import smoke_train

README = Path(__file__).resolve().parents[1] / "README.md"


def _inputs(seed: int, shape: tuple[int, ...], ood: float = 0.4, scale: float = 4.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    target_shape = (shape[0], *shape[2:])
    y = torch.randint(0, shape[1], target_shape, generator=g)
    y = torch.where(torch.rand(target_shape, generator=g) < ood, torch.full_like(y, -1), y)
    return logits, y


def _value_and_grad(loss, logits, y):
    x = logits.clone().requires_grad_(True)
    value = loss(x, y)
    (grad,) = torch.autograd.grad(value.sum(), x)
    return value, grad


# ---------------------------------------------------------------------------------------------
# differential tests: 0.4.0 follows the paper everywhere


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(16, 5), (3, 10), (2, 4, 3, 5)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"alpha": 0.7, "margin_in": -6.0, "margin_out": -2.0}, {"alpha": 0.0}],
)
def test_matches_pytorch_ood(seed, shape, reduction, kwargs):
    ours = EnergyRegularizedLoss(reduction=reduction, **kwargs)
    ref = pytorch_ood_losses().EnergyRegularizedLoss(reduction=reduction, **kwargs)
    logits, y = _inputs(seed, shape)
    v_ours, g_ours = _value_and_grad(ours, logits, y)
    v_ref, g_ref = _value_and_grad(ref, logits, y)
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ood", [0.0, 1.0])
@pytest.mark.parametrize("shape", [(8, 4), (2, 3, 4, 4)])
def test_matches_pytorch_ood_on_one_sided_batches(ood, shape):
    kwargs = {"margin_in": -6.0, "margin_out": -2.0}
    logits, y = _inputs(5, shape, ood=ood)
    v_ours, g_ours = _value_and_grad(EnergyRegularizedLoss(**kwargs), logits, y)
    v_ref, g_ref = _value_and_grad(pytorch_ood_losses().EnergyRegularizedLoss(**kwargs), logits, y)
    torch.testing.assert_close(v_ours, v_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-10)


def test_mean_is_the_papers_formula_written_out():
    m_in, m_out, alpha = -4.0, -1.0, 0.3
    logits = torch.tensor(
        [[2.0, 1.0, 0.0], [5.0, 5.0, -1.0], [0.1, 0.2, 0.3], [-3.0, -2.0, -4.0], [4.0, 0.0, 1.0]],
        dtype=torch.float64,
    )
    y = torch.tensor([0, 1, -1, -1, 2])
    ce, hin, hout = [], [], []
    for row, label in zip(logits.tolist(), y.tolist()):
        lse = torch.logsumexp(torch.tensor(row, dtype=torch.float64), 0).item()
        e = -lse
        if label >= 0:
            ce.append(lse - row[label])
            hin.append(max(0.0, e - m_in) ** 2)
        else:
            hout.append(max(0.0, m_out - e) ** 2)
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    expected = mean(ce) + alpha * (mean(hin) + mean(hout))
    loss = EnergyRegularizedLoss(alpha=alpha, margin_in=m_in, margin_out=m_out)
    assert float(loss(logits, y)) == pytest.approx(expected, rel=1e-12)
    # the two groups are averaged separately: duplicating the OOD rows changes nothing
    twice = loss(torch.cat([logits, logits[2:4]]), torch.cat([y, y[2:4]]))
    assert float(twice) == pytest.approx(expected, rel=1e-12)


def test_segmentation_averages_over_pixels():
    loss = EnergyRegularizedLoss(reduction="none", margin_in=-3.0, margin_out=-1.0)
    logits, y = _inputs(7, (2, 4, 3, 3))
    per_pixel = loss(logits, y)
    assert per_pixel.shape == (2, 3, 3)
    flat = logits.permute(0, 2, 3, 1).reshape(-1, 4)
    flat_loss = EnergyRegularizedLoss(reduction="none", margin_in=-3.0, margin_out=-1.0)
    torch.testing.assert_close(per_pixel.reshape(-1), flat_loss(flat, y.reshape(-1)))


# ---------------------------------------------------------------------------------------------
# robustness where 0.4.0 is fragile (same values elsewhere)


def test_half_precision_is_computed_in_float32():
    logits = torch.tensor([[-300.0, -300.0], [300.0, 0.0]], dtype=torch.float16)
    y = torch.tensor([0, -1])
    ours = EnergyRegularizedLoss()(logits, y)
    assert ours.dtype == torch.float32 and torch.isfinite(ours)
    expected = EnergyRegularizedLoss()(logits.double(), y)
    assert float(ours) == pytest.approx(float(expected), rel=1e-5)
    ref = pytorch_ood_losses().EnergyRegularizedLoss()(logits, y)
    assert not torch.isfinite(ref)  # 0.4.0 squares ~300^2 > 65504 in fp16


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"alpha": -1.0}, "alpha"),
        ({"margin_in": float("inf")}, "margin_in"),
        ({"margin_out": "a"}, "margin_out"),
        ({"reduction": "avg"}, "reduction"),
    ],
)
def test_bad_constructor_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=f"EnergyRegularizedLoss: argument '{arg}'"):
        EnergyRegularizedLoss(**kwargs)


def test_bad_forward_arguments():
    loss = EnergyRegularizedLoss()
    with pytest.raises(ValueError, match="EnergyRegularizedLoss: argument 'logits'"):
        loss(torch.randn(2, 3, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="EnergyRegularizedLoss: argument 'target'"):
        loss(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, dtype=torch.long))


def test_loads_a_pytorch_ood_state_dict():
    ref = pytorch_ood_losses().EnergyRegularizedLoss(alpha=0.2)
    ours = EnergyRegularizedLoss(alpha=0.2)
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert set(ours.state_dict()) == set(ref.state_dict())


def test_scorer_is_the_builtin_energy():
    scorer = EnergyRegularizedLoss().scorer()
    assert type(scorer) is EnergyScore and scorer.temperature == 1.0
    logits = torch.randn(5, 3)
    torch.testing.assert_close(scorer(logits), -torch.logsumexp(logits, 1))
    info = ood_core.get_info("loss", "energy")
    assert info.scorer == "energy" and info.uses_ood
    assert info.tasks == ("classification", "segmentation")
    assert ood_core.get_info("scorer", "energy").plugin != info.plugin  # not re-registered


def test_package_import_is_light():
    code = "import sys, ood_plugin_energy; sys.exit(3 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


# ---------------------------------------------------------------------------------------------
# training and documentation


def test_smoke_training_separates_outliers():
    result = smoke_train(
        EnergyRegularizedLoss(), inputs=("logits", "target"), reads="logits", steps=150
    )
    assert result["AUROC"] > 0.8, result
    assert result["ACC"] > 0.9, result
    # the regulariser is what separates them: plain cross-entropy scores worse with energy
    baseline = smoke_train(
        ood_core.create_loss("cross-entropy"),
        inputs=("logits", "target"),
        reads="logits",
        scorer=EnergyScore(),
        use_ood=False,  # cross-entropy ignores outliers anyway
        steps=150,
    )
    assert result["AUROC"] > baseline["AUROC"] + 0.05, (result, baseline)


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (16,)
    assert torch.isfinite(namespace["loss"]) and torch.isfinite(namespace["seg"])
