"""NearestCenterScorer: the shared nearest-centre outlier score of centre-based methods."""

from __future__ import annotations

import copy

import pytest
import torch

from ood_core.nearest_center import NearestCenterScorer, check_positive_int


def test_scores_are_the_min_squared_distance_and_predict_the_closest_centre():
    centers = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    scorer = NearestCenterScorer(3, 2, centers)
    z = torch.tensor([[1.0, 0.0], [3.0, 3.0], [0.0, 5.0]])
    assert scorer(z).tolist() == [1.0, 10.0, 1.0]
    assert scorer.predict(z).tolist() == [0, 1, 2]
    assert scorer.predict(z).dtype == torch.int64
    assert scorer.distances(z).shape == (3, 3)
    assert scorer(z[:0]).shape == (0,)


def test_holds_a_detached_copy_of_the_centres():
    centers = torch.randn(4, 3, requires_grad=True)
    scorer = NearestCenterScorer(4, 3, centers)
    assert not scorer.centers.requires_grad
    z = torch.randn(5, 3)
    before = scorer(z)
    with torch.no_grad():
        centers.add_(1.0)
    torch.testing.assert_close(scorer(z), before)
    assert "centers" in scorer.state_dict()
    torch.testing.assert_close(copy.deepcopy(scorer)(z), before)


def test_default_centres_are_zero_and_load_from_a_state_dict():
    scorer = NearestCenterScorer(2, 3)
    assert scorer.centers.tolist() == [[0.0] * 3] * 2
    other = NearestCenterScorer(2, 3, torch.ones(2, 3))
    scorer.load_state_dict(other.state_dict())
    torch.testing.assert_close(scorer.centers, torch.ones(2, 3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_half_precision_is_computed_in_fp32(dtype):
    scorer = NearestCenterScorer(1, 2, torch.zeros(1, 2))
    z = torch.tensor([[300.0, 0.0]], dtype=dtype)  # 300^2 overflows fp16
    scores = scorer(z)
    assert scores.dtype == torch.promote_types(dtype, torch.float32)
    assert scores.item() == 90000.0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: NearestCenterScorer(0, 2), "argument 'n_centers'"),
        (lambda: NearestCenterScorer(2, True), "argument 'n_features'"),
        (lambda: NearestCenterScorer(2, 2, torch.zeros(3, 2)), r"argument 'centers' .*\(2, 2\)"),
        (lambda: NearestCenterScorer(2, 2)(torch.zeros(4, 3)), "argument 'embedding'"),
        (lambda: NearestCenterScorer(2, 2)(torch.zeros(4, 2, 1)), "argument 'embedding'"),
        (lambda: check_positive_int("Owner", "n", 1.5), r"Owner: argument 'n' must be a positive"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_owner(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_exports_with_a_dynamic_batch():
    from torch.export import Dim, export

    scorer = NearestCenterScorer(3, 2, torch.randn(3, 2)).eval()
    program = export(scorer, (torch.randn(2, 2),), dynamic_shapes=({0: Dim("batch", min=1)},))
    z = torch.randn(7, 2)
    torch.testing.assert_close(program.module()(z), scorer(z))
