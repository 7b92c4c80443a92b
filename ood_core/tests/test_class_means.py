"""ClassMeanScorer: nearest-centre scoring whose centres ``fit`` recomputes as class means; and
the nearest-centre scorers failing closed where value checks are off."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ood_core.nearest_center import ClassMeanScorer, NearestCenterScorer
from ood_core.validation import set_value_checks


def _data(seed: int, n: int = 60, k: int = 4, d: int = 3, ood: bool = True):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g) * 5 + 100  # an offset: sums must not lose the small part
    y = torch.arange(n) % k
    if ood:
        y = torch.where(torch.rand(n, generator=g) < 0.3, torch.full_like(y, -1), y)
        y[:k] = torch.arange(k)  # every class at least once
    return z, y


def _numpy_means(z: torch.Tensor, y: torch.Tensor, k: int) -> np.ndarray:
    zn, yn = z.double().numpy(), y.numpy()
    return np.stack([zn[yn == c].mean(axis=0) for c in range(k)])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("label_dtype", [torch.int64, torch.int32, torch.uint8])
def test_fitted_centres_are_the_per_class_means_of_numpy(seed, label_dtype):
    z, y = _data(seed, ood=label_dtype != torch.uint8)
    scorer = ClassMeanScorer(4, 3).fit(z, y.to(label_dtype))
    np.testing.assert_allclose(scorer.centers.double().numpy(), _numpy_means(z, y, 4), rtol=1e-7)
    assert scorer.fit_counts.tolist() == [float((y == c).sum()) for c in range(4)]
    assert scorer.centers.dtype == torch.float32  # the buffer keeps its dtype (export)


@pytest.mark.parametrize("sizes", [(60,), (1, 59), (7, 13, 1, 39), (3,) * 20])
def test_fit_on_a_stream_equals_fit_on_the_concatenation(sizes):
    z, y = _data(7)
    whole = ClassMeanScorer(4, 3).fit(z, y)
    batches = zip(z.split(list(sizes)), y.split(list(sizes)))  # a one-pass iterator
    streamed = ClassMeanScorer(4, 3).fit(batches)
    torch.testing.assert_close(streamed.centers, whole.centers, rtol=1e-7, atol=0)
    assert streamed.state_dict().keys() == {"centers"}  # nothing but the centres is state


def test_ood_rows_are_skipped_and_a_batch_of_only_ood_is_fine():
    z, y = _data(1)
    with_ood = ClassMeanScorer(4, 3).fit([(z, y), (torch.full((5, 3), 1e6), torch.full((5,), -1))])
    torch.testing.assert_close(with_ood.centers, ClassMeanScorer(4, 3).fit(z, y).centers)


def test_fit_replaces_given_centres_and_scores_before_fit_too():
    scorer = ClassMeanScorer(2, 2, torch.tensor([[0.0, 0.0], [10.0, 0.0]]))
    z = torch.tensor([[1.0, 1.0], [3.0, 1.0], [10.0, 4.0]])
    assert scorer(z).tolist() == [2.0, 10.0, 16.0]  # the given centres: no NotFittedError
    assert scorer.fit(z, torch.tensor([0, 0, 1])) is scorer
    assert scorer.centers.tolist() == [[2.0, 1.0], [10.0, 4.0]]
    assert scorer(z).tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "x, y, match",
    [
        (torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), r"no sample of class\(es\) \[3\]"),
        (
            torch.zeros(4, 3),
            torch.tensor([0, 1, 2, 4]),
            r"argument 'y' must be class labels 0\.\.3",
        ),
        (torch.zeros(4, 2), torch.tensor([0, 1, 2, 3]), r"argument 'x' must be embeddings of"),
        (torch.zeros(4, 3), None, "argument 'y' is required"),
        (torch.full((4, 3), math.nan), torch.tensor([0, 1, 2, 3]), "NaN or infinite"),
        (torch.zeros(4, 3), torch.tensor([0.0, 1, 2, 3]), "argument 'y'"),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "no sample"),
    ],
)
def test_bad_fit_data_raises_and_leaves_the_centres_unchanged(x, y, match):
    scorer = ClassMeanScorer(4, 3, torch.ones(4, 3))
    with pytest.raises(ValueError, match=match):
        scorer.fit(x, y)
    assert torch.equal(scorer.centers, torch.ones(4, 3))


@pytest.mark.parametrize("cls", [NearestCenterScorer, ClassMeanScorer])
def test_non_finite_embeddings_score_plus_inf_when_value_checks_are_off(cls):
    scorer = cls(2, 2, torch.tensor([[0.0, 0.0], [3.0, 0.0]]))
    z = torch.tensor([[math.nan, 0.0], [math.inf, 0.0], [-math.inf, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="argument 'embedding'"):
        scorer(z)  # where checks run, non-finite input is refused
    set_value_checks("never")  # as in a compiled or exported scorer
    try:
        scores = scorer(z)
    finally:
        set_value_checks("auto")
    assert scores.tolist() == [math.inf, math.inf, math.inf, 1.0]


def test_fail_closed_scorer_still_exports():
    from torch.export import Dim, export

    scorer = ClassMeanScorer(3, 2, torch.randn(3, 2)).eval()
    program = export(scorer, (torch.randn(2, 2),), dynamic_shapes=({0: Dim("batch", min=1)},))
    z = torch.tensor([[math.nan, 0.0], [0.5, 0.5], [1.0, -1.0]])
    scores = program.module()(z)
    assert scores[0].item() == math.inf
    torch.testing.assert_close(scores[1:], scorer(z[1:]))
