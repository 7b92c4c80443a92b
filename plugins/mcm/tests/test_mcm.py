"""MCM: pytorch-ood 0.4.0 parity, the paper's formula, bad input, README."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from ood_plugin_mcm import MCM

import ood_core
from ood_core.testing.dropin import assert_same_keywords
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"


def _reference():
    return pytorch_ood_detector("mcm").MCM


def _data(seed: int, n: int = 64, c: int = 10, d: int = 32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * 2, torch.randn(c, d, generator=g) * 5


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("temperature", [1.0, 0.01, 100.0])
def test_matches_pytorch_ood(seed, temperature):
    z, text = _data(seed)
    ours = ood_core.create_scorer("MCM", text_embeddings=text, temperature=temperature)
    theirs = _reference()(None, text_embeddings=text, temperature=temperature)
    torch.testing.assert_close(ours(z), theirs.predict_features(z), rtol=1e-5, atol=1e-6)


def test_formula_written_out_and_predict():
    text = torch.tensor([[2.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    z = torch.tensor([[1.0, 1.0], [3.0, 0.0], [-1.0, 2.0]], dtype=torch.float64)
    tau = 0.5
    expected = []
    for row in z:
        cos = [float(row @ t / (row.norm() * t.norm())) for t in text]
        e = [math.exp(c / tau) for c in cos]
        expected.append(-max(e) / sum(e))
    scorer = MCM(text, temperature=tau)
    assert scorer(z).tolist() == pytest.approx(expected, rel=1e-12)
    assert scorer.predict(z).tolist() == [0, 0, 1]  # ties go to the first class
    # the scale of the features and of the text embeddings does not matter
    torch.testing.assert_close(MCM(text * 7, temperature=tau)(z * 0.01), scorer(z))


def test_constructor_takes_pytorch_oods_keywords():
    assert_same_keywords(MCM, _reference(), skip=("encoder",))


@pytest.mark.parametrize(
    "make, arg",
    [
        (lambda: MCM(torch.randn(3)), "text_embeddings"),
        (lambda: MCM(torch.ones(3, 4, dtype=torch.long)), "text_embeddings"),
        (lambda: MCM(torch.tensor([[1.0, 0.0], [0.0, 0.0]])), "text_embeddings"),
        (lambda: MCM(torch.tensor([[1.0, float("nan")]])), "text_embeddings"),
        (lambda: MCM(torch.eye(2), temperature=0.0), "temperature"),
        (lambda: MCM(torch.eye(2))(torch.randn(4, 3)), "features"),
        (lambda: MCM(torch.eye(2)).predict(torch.randn(4, 3)), "features"),
        (lambda: MCM(torch.eye(2))(torch.randn(4, 2, 3, 3)), "features"),
    ],
)
def test_bad_input_names_the_argument(make, arg):
    with pytest.raises(ValueError, match=f"MCM: argument '{arg}'"):
        make()


def test_text_embeddings_are_a_copy():
    text = torch.eye(3)
    scorer = MCM(text)
    text.add_(5.0)
    assert torch.equal(scorer.text_embeddings, torch.eye(3))


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (3,)
