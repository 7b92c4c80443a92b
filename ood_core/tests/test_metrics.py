"""Tests of ood_core.metrics: sklearn agreement, hand-worked cases, validation, streaming."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from ood_core.metrics import OODMetrics, threshold_for_id_rate

REPO_ROOT = Path(__file__).resolve().parents[2]
CURVE_KEYS = ("AUROC", "AUPR-IN", "AUPR-OUT")
RATES = (0.5, 0.8, 0.9, 0.95, 0.99, 1.0)


def reference(scores: np.ndarray, labels: np.ndarray, rates=(0.95,)) -> dict[str, float]:
    """The metrics by sklearn (FPR@TPR: first ROC point with tpr >= rate, no interpolation)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    is_ood = np.asarray(labels).ravel() < 0
    fpr, tpr, _ = roc_curve(is_ood, s, drop_intermediate=False)
    out = {
        "AUROC": roc_auc_score(is_ood, s),
        "AUPR-IN": average_precision_score(~is_ood, -s),
        "AUPR-OUT": average_precision_score(is_ood, s),
    }
    for rate in rates:
        out[f"FPR{round(100 * rate)}TPR"] = float(fpr[np.argmax(tpr >= rate)])
    return out


def make_case(
    seed: int, n: int, ood_frac: float = 0.3, levels: int | None = None, shift: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Random scores/labels with both classes; ``levels`` rounds the scores to few values."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < ood_frac, -1, rng.integers(0, 10, n)).astype(np.int64)
    labels[0], labels[1] = -1, 3
    scores = rng.standard_normal(n) + shift * (labels < 0)
    if levels is not None:
        scores = np.round(scores * levels / 4.0)  # ~levels distinct values, heavily tied
    return scores, labels


def assert_close(got: dict[str, float], want: dict[str, float], tol: float = 1e-9) -> None:
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=tol, rel=0), key


def compute(scores, labels, predictions=None, **kwargs) -> dict[str, float]:
    metrics = OODMetrics(**kwargs)
    metrics.update(scores, labels, predictions)
    return metrics.compute()


def state_nbytes(metrics: OODMetrics) -> int:
    """Bytes held by the numpy arrays in a metrics object's state (lists included)."""
    total = 0
    for value in vars(metrics).values():
        items = value if isinstance(value, list) else [value]
        total += sum(a.nbytes for a in items if isinstance(a, np.ndarray))
    return total


# --------------------------------------------------------------------------- sklearn agreement


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [2, 3, 17, 1000, 50_000])
@pytest.mark.parametrize("ood_frac", [0.05, 0.5, 0.9])
def test_matches_sklearn_on_random_scores(seed, n, ood_frac):
    scores, labels = make_case(seed, n, ood_frac)
    assert_close(compute(scores, labels, fpr_at=RATES), reference(scores, labels, RATES))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("n", [10, 500, 20_000])
@pytest.mark.parametrize("levels", [1, 3, 10])
def test_matches_sklearn_on_heavily_tied_scores(seed, n, levels):
    scores, labels = make_case(seed, n, levels=levels)
    assert np.unique(scores).size < 40
    assert_close(compute(scores, labels, fpr_at=RATES), reference(scores, labels, RATES))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_floating_dtypes_agree_with_sklearn(dtype):
    scores, labels = make_case(5, 3000)
    scores = scores.astype(dtype)
    assert_close(compute(scores, labels), reference(scores, labels))


# --------------------------------------------------------------------------- hand-worked cases


def test_perfect_separation():
    got = compute(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), np.array([0, 1, 2, -1, -1]))
    assert got == {"AUROC": 1.0, "AUPR-IN": 1.0, "AUPR-OUT": 1.0, "FPR95TPR": 0.0}


def test_reversed_separation():
    got = compute(np.array([0.8, 0.9, 0.1, 0.2]), np.array([0, 1, -1, -1]))
    assert got["AUROC"] == 0.0
    assert got["FPR95TPR"] == 1.0
    assert got["AUPR-OUT"] == pytest.approx(0.5 * 1 / 3 + 0.5 * 2 / 4)  # precision 1/3 then 2/4


def test_all_equal_scores():
    got = compute(np.full(10, 0.7), np.array([0] * 6 + [-1] * 4))
    assert got["AUROC"] == 0.5
    assert got["FPR95TPR"] == 1.0
    assert got["AUPR-OUT"] == pytest.approx(0.4)  # one threshold: precision = P / n
    assert got["AUPR-IN"] == pytest.approx(0.6)


def test_small_tied_case_by_hand():
    # ID scores {0.1, 0.5}, OOD {0.5, 0.9}: pairs 1 + 1 + 1 + 1/2 of 4.
    got = compute(np.array([0.1, 0.5, 0.5, 0.9]), np.array([0, 1, -1, -1]), fpr_at=[0.5, 0.95])
    assert got["AUROC"] == pytest.approx(0.875)
    # OOD positive: threshold 0.9 -> recall 1/2, precision 1; 0.5 -> recall 1, precision 2/3.
    assert got["AUPR-OUT"] == pytest.approx(5 / 6)
    assert got["AUPR-IN"] == pytest.approx(5 / 6)  # mirror image
    assert got["FPR50TPR"] == 0.0  # threshold 0.9 already flags half the OOD
    assert got["FPR95TPR"] == 0.5  # threshold 0.5 also flags the ID sample at 0.5


def test_fpr_is_not_interpolated():
    # 20 OOD: TPR reaches 0.95 exactly at the 19th OOD score; the ID samples above it count.
    ood = np.arange(20, dtype=np.float64) + 10.0
    ood[0] = 0.5  # the lowest OOD score sits below all ID scores
    id_scores = np.array([0.0, 1.0, 2.0, 25.5, 40.0])
    scores = np.concatenate([ood, id_scores])
    labels = np.array([-1] * 20 + [0] * 5)
    got = compute(scores, labels, fpr_at=[0.95, 1.0])
    assert got["FPR95TPR"] == pytest.approx(2 / 5)  # threshold 11.0: ID 25.5 and 40.0 above
    assert got["FPR100TPR"] == pytest.approx(4 / 5)  # threshold 0.5: all but ID 0.0


@pytest.mark.parametrize("mode, levels", [("exact", None), ("exact", 10), ("binned", 10)])
def test_infinite_scores_rank_as_extremes(mode, levels):
    scores, labels = make_case(7, 400, levels=levels)
    scores[:5] = np.inf  # labels[0] is OOD, others mixed: +inf ties form one group
    scores[5:12] = -np.inf
    scores[20] = np.inf
    finite = scores[np.isfinite(scores)]
    stand_in = np.where(scores == np.inf, finite.max() + 1, scores)
    stand_in = np.where(stand_in == -np.inf, finite.min() - 1, stand_in)
    want = reference(stand_in, labels, RATES)
    assert_close(compute(scores, labels, fpr_at=RATES, mode=mode), want)


def test_only_infinite_scores():
    got = compute(np.array([np.inf, np.inf, -np.inf]), np.array([-1, 0, 0]))
    assert got["AUROC"] == pytest.approx(0.75)
    assert got["FPR95TPR"] == 0.5


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("mode", ["exact", "binned"])
@pytest.mark.parametrize(
    "labels, counts",
    [([0, 1, 2], "3 ID and 0 OOD"), ([-1, -1, -2], "0 ID and 3 OOD")],
    ids=["only-id", "only-ood"],
)
def test_single_class_raises(mode, labels, counts):
    metrics = OODMetrics(mode=mode)
    metrics.update(np.array([0.1, 0.2, 0.3]), np.array(labels))
    with pytest.raises(ValueError, match=f"needs both in-distribution .* got {counts}"):
        metrics.compute()


@pytest.mark.parametrize("mode", ["exact", "binned"])
def test_no_samples_raises(mode):
    with pytest.raises(ValueError, match="got 0 ID and 0 OOD"):
        OODMetrics(mode=mode).compute()


def test_nan_scores_rejected():
    with pytest.raises(ValueError, match=r"argument 'scores' must be free of NaN, got 2 NaN"):
        OODMetrics().update(np.array([0.1, np.nan, np.nan]), np.array([0, -1, 0]))


@pytest.mark.parametrize(
    "scores, labels, predictions, arg, expected",
    [
        (np.zeros(3), np.zeros(4, int), None, "labels", r"shape of 'scores' \(3,\)"),
        (np.zeros((2, 3)), np.zeros(6, int), None, "labels", r"shape of 'scores' \(2, 3\)"),
        (np.zeros(3), np.zeros(3, int), np.zeros(2, int), "predictions", "shape of 'labels'"),
        (np.arange(3), np.zeros(3, int), None, "scores", "floating-point"),
        (np.zeros(3), np.zeros(3), None, "labels", "integer labels"),
        (np.zeros(3), np.zeros(3, bool), None, "labels", "integer labels"),
        (np.zeros(3), np.zeros(3, int), np.zeros(3), "predictions", "integer class indices"),
    ],
    ids=["length", "rank", "pred-shape", "int-scores", "float-labels", "bool-labels", "float-pred"],
)
def test_bad_input_names_the_argument(scores, labels, predictions, arg, expected):
    with pytest.raises(ValueError, match=f"OODMetrics.update: argument '{arg}' must be") as err:
        OODMetrics().update(scores, labels, predictions)
    assert err.match(expected)
    assert err.match("got an array of shape")


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"fpr_at": 0.0}, "fpr_at"),
        ({"fpr_at": 1.5}, "fpr_at"),
        ({"fpr_at": []}, "fpr_at"),
        ({"fpr_at": [0.95, 0.951]}, "fpr_at"),  # both FPR95TPR
        ({"mode": "fast"}, "mode"),
        ({"bins": 1000}, "bins"),
        ({"bins": 2**8}, "bins"),
        ({"void_label": 1.5}, "void_label"),
        ({"offset": float("nan")}, "offset"),
        ({"offset": "1"}, "offset"),
    ],
)
def test_bad_configuration(kwargs, arg):
    with pytest.raises(ValueError, match=f"OODMetrics: argument '{arg}' must be"):
        OODMetrics(**kwargs)


def test_predictions_in_every_update_or_none():
    metrics = OODMetrics()
    metrics.update(np.array([0.1, 0.9]), np.array([0, -1]), np.array([0, 0]))
    with pytest.raises(ValueError, match="'predictions' must be given in every update or in none"):
        metrics.update(np.array([0.1, 0.9]), np.array([0, -1]))


# --------------------------------------------------------------------------- keys, ACC, inputs


def test_multiple_rates_give_one_key_each():
    scores, labels = make_case(3, 2000)
    got = compute(scores, labels, fpr_at=[0.8, 0.95, 0.99])
    assert list(got) == ["AUROC", "AUPR-IN", "AUPR-OUT", "FPR80TPR", "FPR95TPR", "FPR99TPR"]
    assert got["FPR80TPR"] <= got["FPR95TPR"] <= got["FPR99TPR"]
    assert_close(got, reference(scores, labels, [0.8, 0.95, 0.99]))


def test_acc_over_id_samples_only():
    labels = np.array([0, 1, 2, 2, -1, -1, -3])
    predictions = np.array([0, 1, 0, 2, 5, 5, 5])  # 3 of 4 ID right; OOD predictions ignored
    got = compute(np.linspace(0, 1, 7), labels, predictions)
    assert got["ACC"] == 0.75
    assert "ACC" not in compute(np.linspace(0, 1, 7), labels)


@pytest.mark.parametrize("void_label", [255, -100])
@pytest.mark.parametrize("mode", ["exact", "binned"])
def test_segmentation_with_void_label(void_label, mode):
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 5, (3, 16, 24))
    labels[rng.random(labels.shape) < 0.2] = -1
    labels[rng.random(labels.shape) < 0.1] = void_label
    scores = np.round(rng.standard_normal(labels.shape) + (labels == -1), 2).astype(np.float32)
    scores[labels == void_label] = 100.0  # would ruin the metrics if counted
    predictions = rng.integers(0, 5, labels.shape)
    got = compute(scores, labels, predictions, void_label=void_label, mode=mode)
    keep = labels != void_label
    assert_close(got, reference(scores[keep], labels[keep]))
    known = keep & (labels >= 0)
    assert got["ACC"] == pytest.approx(np.mean(predictions[known] == labels[known]))


def test_streaming_equals_one_update():
    scores, labels = make_case(4, 10_000, levels=10)
    predictions = np.where(np.arange(scores.size) % 3 == 0, 1, labels)
    whole = compute(scores, labels, predictions, fpr_at=RATES)
    metrics = OODMetrics(fpr_at=RATES)
    for chunk in np.array_split(np.arange(scores.size), 7):
        metrics.update(scores[chunk], labels[chunk], predictions[chunk])
    assert metrics.compute() == whole


def test_update_after_compute_and_reset():
    scores, labels = make_case(8, 3000)
    metrics = OODMetrics()
    metrics.update(scores[:1000], labels[:1000])
    assert_close(metrics.compute(), reference(scores[:1000], labels[:1000]))
    metrics.update(scores[1000:], labels[1000:])
    assert_close(metrics.compute(), reference(scores, labels))
    metrics.reset()
    with pytest.raises(ValueError, match="needs both"):
        metrics.compute()
    metrics.update(scores[:500], labels[:500])
    assert_close(metrics.compute(), reference(scores[:500], labels[:500]))


def test_caller_buffer_is_copied():
    scores, labels = make_case(9, 100)
    metrics = OODMetrics()
    metrics.update(scores, labels)
    want = metrics.compute()
    scores[:] = 0.0
    assert metrics.compute() == want


def test_torch_tensors_accepted():
    torch = pytest.importorskip("torch")
    scores, labels = make_case(6, 2000)
    predictions = np.where(np.arange(2000) % 4 == 0, 0, labels)
    want = compute(scores.astype(np.float32), labels, predictions)
    t_scores = torch.tensor(scores, dtype=torch.float32, requires_grad=True)
    got = compute(t_scores * 1.0, torch.from_numpy(labels), torch.from_numpy(predictions))
    assert got == want
    bf16 = compute(torch.tensor(scores, dtype=torch.bfloat16), torch.from_numpy(labels))
    assert bf16["AUROC"] == pytest.approx(want["AUROC"], abs=0.02)
    with pytest.raises(ValueError, match="argument 'labels' must be integer"):
        OODMetrics().update(t_scores, torch.zeros(2000))


def test_import_does_not_import_torch():
    code = "import sys, ood_core.metrics; assert 'torch' not in sys.modules, 'torch imported'"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- binned mode


@pytest.mark.parametrize(
    "loc, scale",
    [(0.0, 1.0), (1e6, 1e-3), (-50.0, 100.0), (1e-9, 1e-9)],
    ids=["standard", "offset-narrow", "wide", "tiny"],
)
def test_binned_close_to_exact(loc, scale):
    rng = np.random.default_rng(0)
    n = 200_000
    labels = np.where(rng.random(n) < 0.3, -1, 0)
    scores = loc + scale * (rng.standard_normal(n) + (labels < 0))
    exact = compute(scores, labels, fpr_at=[0.8, 0.95])
    # a known offset is given up front (bins are relative to |s - offset|)
    binned = OODMetrics(fpr_at=[0.8, 0.95], mode="binned", offset=loc)
    for chunk in np.array_split(np.arange(n), 4):
        binned.update(scores[chunk], labels[chunk])
    assert_close(binned.compute(), exact, tol=1e-3)


def test_binned_one_million_samples():
    rng = np.random.default_rng(1)
    n = 1_000_000
    labels = np.where(rng.random(n) < 0.3, -1, 0)
    scores = rng.standard_normal(n) + 1.5 * (labels < 0)
    exact = compute(scores, labels)
    binned = compute(scores, labels, mode="binned")
    assert abs(binned["AUROC"] - exact["AUROC"]) < 1e-4
    assert_close(binned, exact, tol=1e-3)


@pytest.mark.parametrize("levels", [1, 10])
def test_binned_equals_exact_when_values_are_few(levels):
    scores, labels = make_case(2, 20_000, levels=levels)
    assert_close(
        compute(scores, labels, mode="binned", fpr_at=RATES), reference(scores, labels, RATES)
    )


def test_binned_memory_does_not_grow():
    rng = np.random.default_rng(3)
    metrics = OODMetrics(mode="binned", bins=2**14)
    exact = OODMetrics()
    sizes, exact_sizes = [], []
    for _ in range(10):
        labels = np.where(rng.random(50_000) < 0.5, -1, 0)
        scores = rng.standard_normal(50_000) * rng.uniform(0.1, 10)
        metrics.update(scores, labels)
        exact.update(scores, labels)
        sizes.append(state_nbytes(metrics))
        exact_sizes.append(state_nbytes(exact))
    assert sizes == [2**14 * 2 * 8] * 10
    assert exact_sizes[-1] == 10 * 50_000 * 8  # exact mode: 8 bytes a sample
    metrics.compute()
    assert state_nbytes(metrics) == sizes[0]


def pairs_sharing_a_bin(scores: np.ndarray, labels: np.ndarray, bits: int) -> float:
    """Fraction of (OOD, ID) pairs in one bin of the documented map but not exactly tied."""
    from ood_core.metrics import _orderable_bins

    is_ood = labels < 0
    bins = _orderable_bins(scores.astype(np.float64), bits)
    per_bin = [np.bincount(bins[m], minlength=2**bits) for m in (is_ood, ~is_ood)]
    _, tie, counts = np.unique(scores, return_inverse=True, return_counts=True)
    per_value = [np.bincount(tie[m], minlength=counts.size) for m in (is_ood, ~is_ood)]
    shared = float(np.dot(*per_bin)) - float(np.dot(*per_value))
    return shared / (is_ood.sum() * (~is_ood).sum())


def adversarial_orders(scores: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """Batch orders that fooled a data-dependent binning: extremes first, sorted, reversed."""
    far = np.argsort(-np.abs(scores - np.median(scores)), kind="stable")
    return [np.argsort(scores), np.argsort(-scores), far, np.argsort(labels, kind="stable")]


@pytest.mark.parametrize(
    "loc, scale", [(0.0, 1.0), (1e6, 1e-3), (-3.0, 1e-4), (5e-30, 1e-31)], ids=str
)
def test_binned_error_bound_holds_whatever_the_order(loc, scale):
    rng = np.random.default_rng(5)
    n = 20_000
    labels = np.where(rng.random(n) < 0.4, -1, 0)
    scores = loc + scale * (rng.standard_normal(n) + (labels < 0))
    scores[:100], labels[:100] = 1e6 + rng.random(100), -1  # the far OOD batch of issue 11
    exact = compute(scores, labels)
    bound = 0.5 * pairs_sharing_a_bin(scores, labels, bits=12) + 1e-12
    results = []
    for order in adversarial_orders(scores, labels):
        binned = OODMetrics(mode="binned", bins=2**12)
        for chunk in np.array_split(order, 50):
            binned.update(scores[chunk], labels[chunk])
        results.append(binned.compute())
        assert abs(results[-1]["AUROC"] - exact["AUROC"]) <= bound
    assert all(r == results[0] for r in results)  # the order does not matter at all


def test_binned_resolution_is_relative_without_offset():
    rng = np.random.default_rng(2)
    labels = np.where(rng.random(50_000) < 0.5, -1, 0)
    scores = 1e3 + rng.standard_normal(50_000) + (labels < 0)
    exact = compute(scores, labels)["AUROC"]
    bounds = []
    for offset in (0.0, 1e3):
        binned = compute(scores, labels, mode="binned", offset=offset)["AUROC"]
        bounds.append(0.5 * pairs_sharing_a_bin(scores - offset, labels, bits=20) + 1e-12)
        assert abs(binned - exact) <= bounds[-1]
    assert bounds[1] < 1e-4 < bounds[0] / 10  # bins ~1e-3 wide around +-1, not ~0.5 at 1000


def test_binned_issue_example_scores_far_apart_first():
    rng = np.random.default_rng(0)
    first = 1e6 + rng.random(100)
    labels = np.where(rng.random(2000) < 0.5, -1, 0)
    later = np.arange(2000) * 1e-3 + 0.3 * (labels < 0)
    exact, binned = OODMetrics(), OODMetrics(mode="binned")
    for metrics in (exact, binned):
        metrics.update(first, -np.ones(100, dtype=np.int64))
        metrics.update(later, labels)
    assert binned.compute()["AUROC"] == pytest.approx(exact.compute()["AUROC"], abs=1e-4)


@pytest.mark.parametrize("bits", [10, 20, 26])
def test_binned_pairs_in_one_bin_are_relatively_close(bits):
    from ood_core.metrics import _orderable_bins

    rng = np.random.default_rng(bits)
    a = rng.choice([-1.0, 1.0], 100_000) * 10.0 ** rng.uniform(-37, 38, 100_000)
    b = a * (1.0 + rng.uniform(-2.0, 2.0, a.size) * 2.0 ** -(bits - 9))  # around a bin width
    same = _orderable_bins(a, bits) == _orderable_bins(b, bits)
    assert 0 < same.sum() < a.size
    limit = 2.0 ** -(bits - 10) * np.maximum(np.abs(a), np.abs(b))
    assert np.all(np.abs(a - b)[same] < limit[same])


def test_exact_compute_memory_is_bounded():
    import tracemalloc

    rng = np.random.default_rng(7)
    n = 1_000_000
    labels = np.where(rng.random(n) < 0.5, -1, 0)
    scores = np.round(rng.standard_normal(n), 3)
    for parts, extra in ((1, 0), (8, 8)):
        tracemalloc.start()  # before update: the stored scores are traced, and so is their release
        try:
            metrics = OODMetrics()
            for i in range(parts):
                metrics.update(scores[i::parts], labels[i::parts])
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            metrics.compute()
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        larger_class = max(np.count_nonzero(labels < 0), np.count_nonzero(labels >= 0))
        # documented: merging the batches of a class once (8 B a sample), plus a few MB
        assert peak <= extra * larger_class + 4 * 2**20, (parts, peak / n)


# --------------------------------------------------------------------------- hypothesis

_finite = st.floats(-1e300, 1e300, allow_nan=False, allow_subnormal=True)
_scores = st.one_of(
    st.lists(_finite, min_size=2, max_size=60),
    st.lists(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 1e-300, 2.0]), min_size=2, max_size=60),
    st.lists(st.sampled_from([-np.inf, -1.0, 0.0, -0.0, 3.0, np.inf]), min_size=2, max_size=60),
)


@st.composite
def scored_batches(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Scores (ties, duplicates, infinities), labels of both kinds in any layout, batch cuts."""
    scores = np.asarray(draw(_scores), dtype=np.float64)
    n = scores.size
    labels = np.asarray(draw(st.lists(st.integers(-3, 4), min_size=n, max_size=n)), np.int64)
    i, j = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
    labels[i], labels[j] = -1, 0
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=5)))
    return scores, labels, cuts


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # sklearn, 1e300
@settings(max_examples=150, deadline=None)
@given(scored_batches())
def test_hypothesis_exact_matches_sklearn(case):
    scores, labels, cuts = case
    metrics = OODMetrics(fpr_at=RATES)
    for part in np.split(np.arange(scores.size), cuts):
        metrics.update(scores[part], labels[part])
    finite = np.clip(scores, -1e308, 1e308)  # sklearn cannot take inf; ranks are the same
    assert_close(metrics.compute(), reference(finite, labels, RATES), tol=1e-9)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # sklearn, 1e300
@settings(max_examples=100, deadline=None)
@given(scored_batches(), st.sampled_from([10, 16, 20]))
def test_hypothesis_binned_within_the_stated_bound(case, bits):
    scores, labels, cuts = case
    metrics = OODMetrics(mode="binned", bins=2**bits)
    for part in np.split(np.arange(scores.size), cuts):
        metrics.update(scores[part], labels[part])
    finite = np.clip(scores, -1e308, 1e308)
    got, want = metrics.compute()["AUROC"], roc_auc_score(labels < 0, finite)
    # +-inf and |s| > 3.4e38 share bins too: counted by the helper through the same map
    assert abs(got - want) <= 0.5 * pairs_sharing_a_bin(scores, labels, bits) + 1e-12


@settings(max_examples=60, deadline=None)
@given(scored_batches(), st.integers(0, 59), st.sampled_from(["exact", "binned"]))
def test_hypothesis_nan_is_refused_and_state_kept(case, where, mode):
    scores, labels, _ = case
    metrics = OODMetrics(mode=mode)
    metrics.update(scores, labels)
    before = metrics.compute()
    bad = scores.copy()
    bad[where % bad.size] = np.nan
    with pytest.raises(ValueError, match="argument 'scores' must be free of NaN"):
        metrics.update(bad, labels)
    assert metrics.compute() == before


# --------------------------------------------------------------------------- threshold


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n", [1, 7, 100, 10_001])
@pytest.mark.parametrize("keep", [0.07, 0.5, 0.9, 0.95, 1.0])
def test_threshold_for_id_rate_definition(seed, n, keep):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.standard_normal(n), 1 if seed else 6)  # seed 1: ties
    t = threshold_for_id_rate(scores, keep)
    assert t in scores
    assert np.mean(scores <= t) >= keep  # at least `keep` of the ID scores are kept ...
    assert np.mean(scores < t) < keep  # ... and no smaller threshold keeps enough


def test_threshold_for_id_rate_by_hand():
    scores = np.arange(1, 101, dtype=np.float64)  # 1 .. 100
    assert threshold_for_id_rate(scores) == 95.0
    assert threshold_for_id_rate(scores, keep=0.07) == 7.0  # 0.07 * 100 = 7.000000000000001
    assert threshold_for_id_rate(scores, keep=1.0) == 100.0
    assert threshold_for_id_rate(scores, keep=0.001) == 1.0
    assert threshold_for_id_rate(scores[::-1].copy(), keep=0.5) == 50.0
    assert threshold_for_id_rate(np.array([0.0, 1.0, np.inf]), keep=1.0) == np.inf
    assert threshold_for_id_rate(scores, 0.5) == np.quantile(scores, 0.5, method="inverted_cdf")


def test_threshold_for_id_rate_accepts_tensors():
    torch = pytest.importorskip("torch")
    assert threshold_for_id_rate(torch.arange(1.0, 21.0), 0.95) == 19.0


@pytest.mark.parametrize(
    "scores, keep, arg",
    [
        (np.array([0.1, np.nan]), 0.95, "id_scores"),
        (np.zeros(0), 0.95, "id_scores"),
        (np.arange(4), 0.95, "id_scores"),
        (np.zeros(4), 0.0, "keep"),
        (np.zeros(4), 1.01, "keep"),
    ],
)
def test_threshold_for_id_rate_rejects_bad_input(scores, keep, arg):
    with pytest.raises(ValueError, match=f"threshold_for_id_rate: argument '{arg}' must be"):
        threshold_for_id_rate(scores, keep)
