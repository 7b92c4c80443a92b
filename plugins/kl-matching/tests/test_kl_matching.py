"""KL matching: pytorch-ood 0.4.0 parity on the same fit data, the paper's formula, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ood_plugin_kl_matching import KLMatching

import ood_core
from ood_core.scoring import NotFittedError
from ood_core.testing.dropin import assert_same_keywords
from ood_core.testing.readme import run_readme_examples
from ood_core.testing.reference import pytorch_ood_detector

README = Path(__file__).resolve().parents[1] / "README.md"


def _reference():
    return pytorch_ood_detector("klmatching").KLMatching


def _data(seed: int, n: int = 300, c: int = 8, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, generator=g) * 3).to(dtype)
    y = torch.randint(-1, c, (n,), generator=g)
    return x, y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("labels", [True, False])
def test_matches_pytorch_ood(seed, dtype, tol, labels):
    x, y = _data(seed, dtype=dtype)
    probe = _data(seed + 10, n=50, dtype=dtype)[0] * 1.5
    y = y if labels else None
    ours = ood_core.create_scorer("KLMatching").to(dtype).fit(x, y)  # buffers in dtype
    theirs = _reference()(None).fit_logits(x, y)
    assert sorted(int(k) for k in theirs.dists) == ours.classes.tolist()
    torch.testing.assert_close(
        ours(probe).to(dtype), theirs.predict_logits(probe), rtol=tol, atol=tol
    )


def test_formula_written_out_and_grouping_by_prediction():
    x = torch.tensor([[2.0, 0.0, 0.0], [3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [5.0, 5.0, 9.0]])
    p = x.double().softmax(1)
    d = {0: p[:2].mean(0), 1: p[2], 2: p[3]}
    # labels only remove OOD rows; wrong labels change nothing (grouping is by prediction)
    scorer = KLMatching().fit(x, torch.tensor([2, 2, 0, 1]))
    probe = torch.tensor([[0.5, 0.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    q = probe.softmax(1)
    expected = [min(float((qi * (qi / dk).log()).sum()) for dk in d.values()) for qi in q]
    assert scorer(probe).tolist() == pytest.approx(expected, rel=1e-6)
    dropped = KLMatching().fit(x, torch.tensor([0, 0, -1, -1]))
    assert dropped.classes.tolist() == [0] and dropped.log_dists.shape == (1, 3)


def test_typical_posterior_scores_zero_and_others_higher():
    x = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
    scorer = KLMatching().fit(x)
    scores = scorer(torch.tensor([[4.0, 0.0], [0.0, 0.0]]))
    assert scores[0].abs() < 1e-6 and scores[1] > 0.5


def test_streaming_equals_one_tensor():
    x, y = _data(3)
    whole = KLMatching().fit(x, y)
    streamed = KLMatching().fit(zip(x.split(7), y.split(7)))
    torch.testing.assert_close(streamed.log_dists, whole.log_dists)


def test_constructor_takes_pytorch_oods_keywords():
    assert_same_keywords(KLMatching, _reference())


@pytest.mark.parametrize(
    "make, err, match",
    [
        (lambda: KLMatching()(torch.randn(2, 3)), NotFittedError, "KLMatching is not fitted"),
        (
            lambda: KLMatching().fit(torch.randn(4, 3))(torch.randn(2, 4)),
            ValueError,
            "KLMatching: argument 'logits' must be 3 classes",
        ),
        (
            lambda: KLMatching().fit(torch.tensor([[0.0, float("nan")]])),
            ValueError,
            "KLMatching.fit: argument 'x'.*NaN",
        ),
        (
            lambda: KLMatching().fit(torch.randn(3, 2), torch.full((3,), -1)),
            ValueError,
            "KLMatching.fit: argument 'y' marks every sample OOD",
        ),
        (
            lambda: KLMatching().fit(torch.randn(3, 2, 4, 4)),
            ValueError,
            r"KLMatching.fit: argument 'x' must be logits \(N, C\)",
        ),
    ],
)
def test_errors_name_the_argument(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_readme_example_runs():
    namespace = run_readme_examples(README)
    assert namespace["scores"].shape == (3,)
