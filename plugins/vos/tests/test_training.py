"""Training smoke tests on the toy problem, and the README example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import ood_core
from ood_core.testing.toy import smoke_train


@pytest.mark.parametrize("use_ood", [False, True], ids=["no-outliers", "real-outliers"])
def test_vos_smoke_training(use_ood):
    """VOSRegLoss without outliers (use_ood=False, the VOS setting) and with real ones."""
    torch.manual_seed(1)
    loss = ood_core.create_loss("vos", num_classes=4, alpha=0.5)
    result = smoke_train(
        loss, inputs=("logits", "y"), reads="logits", use_ood=use_ood, steps=150, seed=1
    )
    assert result["AUROC"] > 0.8, result
    assert result["ACC"] > 0.9, result


def test_default_logistic_regression_is_oriented():
    """sigma(phi(E)) (the outlier probability) grows with the energy, as in the paper.

    The objective is symmetric in phi's sign: with a randomly oriented phi and the toy's real
    outliers (a shell where the ReLU net's logits are large) training can separate the energies
    the wrong way round (AUROC near 0 in a trial), which the oriented default avoids.
    """
    loss = ood_core.create_loss("vos", num_classes=3)
    p_out = torch.softmax(loss.logistic_regression(torch.linspace(-5, 5, 11)[:, None]), 1)[:, 0]
    assert bool((p_out.diff() > 0).all())


class _HeadScorer(torch.nn.Module):
    """The loss's scorer applied to ``loss.fc`` of the hidden features (the model's head)."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def forward(self, features):
        return self.loss.scorer()(self.loss.fc(features))

    def predict(self, features):
        return self.loss.fc(features).argmax(1)


def test_vos_synthesis_smoke_training():
    """No real outliers (use_ood=False): the virtual ones are all the regulariser sees."""
    torch.manual_seed(0)
    loss = ood_core.create_loss(
        "vos-synthesis",
        num_classes=4,
        num_features=64,
        alpha=0.5,
        sample_number=32,
        sample_from=200,
        select=4,
    )
    result = smoke_train(
        loss,
        inputs=("logits", "features", "y"),
        reads="features",
        use_ood=False,
        steps=150,
        feed=lambda out, y: (loss.fc(out["features"]), out["features"], y),
        scorer=_HeadScorer(loss),
    )
    assert bool(loss.queues_full())
    assert result["AUROC"] > 0.8, result
    assert result["ACC"] > 0.9, result


def test_readme_example_runs():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    assert blocks, "README.md has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(readme), "exec"), namespace)
    assert namespace["scores"].shape == (5,)
    assert torch.isfinite(namespace["scores"]).all()
