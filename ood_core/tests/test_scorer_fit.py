"""The scorer fit protocol: batches or one tensor, float64 statistics, fitted state in buffers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn
from torch.export import Dim

from ood_core.scoring import NotFittedError, Scorer
from ood_core.testing.cases import ScorerCase
from ood_core.testing.contract import _assert_same_state, _fit_data


class ClassMeans(Scorer):
    """Squared distance to the closest class mean of the fitted features (a minimal post-hoc scorer)."""

    reads = "features"
    needs_fit = True
    fit_needs_labels = True
    fit_state = ("means",)
    means: Tensor

    def __init__(self, num_classes: int, *, head: nn.Module | None = None) -> None:
        super().__init__(head=head)
        self.num_classes = num_classes
        self.register_buffer("means", torch.zeros(num_classes, 0))

    def _fit_begin(self) -> None:
        self._sums: Tensor | None = None
        self._counts = torch.zeros(self.num_classes, dtype=torch.float64)

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        assert x.dtype == torch.float64
        onehot = torch.nn.functional.one_hot(y, self.num_classes).to(x.dtype)
        sums = onehot.T @ x
        self._sums = sums if self._sums is None else self._sums + sums
        self._counts = self._counts + onehot.sum(0)

    def _fit_end(self) -> None:
        self.means = (self._sums / self._counts.clamp_min(1)[:, None]).to(self.means.dtype)

    def forward(self, features: Tensor) -> Tensor:
        self._check_fitted()
        d = ((features[:, None, :] - self.means[None].to(features.dtype)) ** 2).sum(-1)
        return d.min(dim=1).values


CASE = ScorerCase("class-means", num_classes=3, dim=4)


def _data() -> list[tuple[Tensor, Tensor]]:
    return _fit_data(CASE, "features")


def test_stream_equals_concatenation_and_fit_returns_self():
    data = _data()
    streamed = ClassMeans(3)
    assert streamed.fit(iter(data)) is streamed
    whole = ClassMeans(3).fit(torch.cat([x for x, _ in data]), torch.cat([y for _, y in data]))
    _assert_same_state(streamed, whole, "stream vs concatenation")
    x, y = torch.cat([x for x, _ in data]), torch.cat([y for _, y in data])
    expected = torch.stack([x[y == k].double().mean(0) for k in range(3)]).float()
    assert torch.allclose(streamed.means, expected)


def test_forward_before_fit_raises_one_clear_error():
    with pytest.raises(NotFittedError, match="ClassMeans is not fitted: call scorer.fit"):
        ClassMeans(3)(torch.randn(2, 4))


def test_state_round_trips_into_a_fresh_scorer_and_moves_with_to():
    fitted = ClassMeans(3).fit(iter(_data()))
    fresh = ClassMeans(3)  # means (3, 0): loading takes the saved shape
    fresh.load_state_dict(fitted.state_dict())
    probe = torch.randn(5, 4)
    assert torch.equal(fresh(probe), fitted(probe))
    double = copy.deepcopy(fitted).to(torch.float64)
    assert double.means.dtype == torch.float64 and bool(double.fitted)
    unfitted = ClassMeans(3)
    unfitted.load_state_dict(ClassMeans(3).state_dict())
    with pytest.raises(NotFittedError):
        unfitted(probe)


def test_memory_does_not_grow_with_the_number_of_samples():
    small = ClassMeans(3).fit(torch.randn(6, 4), torch.arange(6) % 3)
    batches = [(torch.randn(100, 4), torch.arange(100) % 3) for _ in range(20)]
    large = ClassMeans(3).fit(batches)
    assert {k: v.shape for k, v in small.state_dict().items()} == {
        k: v.shape for k, v in large.state_dict().items()
    }


@pytest.mark.parametrize(
    "x, y, match",
    [
        (torch.tensor([[0.0, float("nan"), 0, 0]]), torch.tensor([0]), r"'x' \(batch 0\).*NaN"),
        (torch.tensor([[0.0, float("inf"), 0, 0]]), torch.tensor([0]), "'x'.*infinite"),
        (torch.randn(2, 4), None, "'y' is required"),
        (torch.randn(2, 4), torch.tensor([0.0, 1.0]), "'y'.*integer"),
        (torch.randn(2, 4), torch.tensor([0, 1, 2]), r"'y'.*shape \(2,\)"),
        (torch.randn(4), torch.tensor([0]), "'x'.*float tensor"),
        (torch.randn(0, 4), torch.zeros(0, dtype=torch.long), "no samples"),
        (
            [(torch.randn(2, 4), torch.tensor([0, 1])), (torch.randn(2, 5), torch.tensor([0, 1]))],
            None,
            r"batch 1.*shape \(2, 5\)",
        ),
        ([(torch.randn(2, 4), torch.tensor([0, 1]))], torch.tensor([0, 1]), "'y' must be None"),
        ([(1, 2, 3)], None, "batch 0 of argument 'x'"),
        ("data.csv", None, "argument 'x' must be a tensor"),
    ],
)
def test_bad_fit_data_is_a_value_error_naming_the_argument(x, y, match):
    scorer = ClassMeans(3).fit(iter(_data()))
    with pytest.raises(ValueError, match=match):
        scorer.fit(x, y)
    with pytest.raises(NotFittedError):  # a failed fit leaves the scorer unfitted (fail closed)
        scorer(torch.randn(2, 4))


def test_fit_accepts_dicts_of_model_outputs():
    x, y = torch.randn(6, 4), torch.arange(6) % 3
    a = ClassMeans(3).fit([({"logits": torch.randn(6, 3), "features": x}, y)])
    b = ClassMeans(3).fit(x, y)
    assert torch.equal(a.means, b.means)
    with pytest.raises(ValueError, match="reads features but the model outputs logits"):
        ClassMeans(3).fit({"logits": x}, y)


def test_head_is_a_frozen_copy():
    head = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5))
    scorer = ClassMeans(3, head=head).train()
    assert scorer.head is not head and not scorer.head.training
    assert all(not p.requires_grad for p in scorer.head.parameters())
    with torch.no_grad():
        head[0].weight.add_(1.0)
    assert not torch.equal(scorer.head[0].weight, head[0].weight)
    assert "head.0.weight" in scorer.state_dict()
    with pytest.raises(TypeError, match="argument 'head' must be an nn.Module"):
        ClassMeans(3, head=torch.randn(4, 3))


def test_fitted_scorer_exports_without_the_fit_check_in_the_graph():
    scorer = ClassMeans(3).fit(iter(_data())).eval()
    x = torch.randn(4, 4)
    program = torch.export.export(scorer, (x,), dynamic_shapes=({0: Dim("b", min=1, max=64)},))
    assert program.module()(torch.randn(7, 4)).shape == (7,)
    assert torch.allclose(program.module()(x), scorer(x))
    with pytest.raises(NotFittedError):  # an unfitted scorer does not export
        torch.export.export(ClassMeans(3), (x,))


def test_scorer_without_fit_returns_itself():
    from ood_core.builtin.scorers import MaxSoftmax

    scorer = MaxSoftmax()
    assert scorer.fit(torch.randn(3, 4)) is scorer and "fitted" not in scorer.state_dict()


class LastBatchMeans(ClassMeans):
    """Broken: keeps only the last batch (fit on a stream differs from fit on the whole)."""

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        self._fit_begin()
        super()._fit_update(x, y)


class UncheckedMeans(ClassMeans):
    """Broken: scores before fit without complaint."""

    def forward(self, features: Tensor) -> Tensor:
        return features.sum(1)


@pytest.fixture()
def fit_registry():
    import types

    from ood_core import hookimpl, registry

    def scorers(register):
        for name, cls in (
            ("class-means", ClassMeans),
            ("last-batch-means", LastBatchMeans),
            ("unchecked-means", UncheckedMeans),
        ):
            register(
                name=name,
                target=f"{__name__}:{cls.__name__}",
                summary="s",
                reads="features",
                needs_fit=True,
                tasks=("classification",),
            )

    plugin = types.SimpleNamespace(OODX_PLUGIN_API=1, oodx_register_scorers=hookimpl(scorers))
    old = registry.set_registry(registry.Registry.from_plugins({"fit-fixtures": plugin}))
    yield
    registry.set_registry(old)


def test_kit_fit_check_passes_a_correct_scorer_and_catches_broken_ones(fit_registry):
    from ood_core.testing.contract import check_scorer_fit

    check_scorer_fit(ScorerCase("class-means", kwargs={"num_classes": 3}, num_classes=3, dim=4))
    for name in ("last-batch-means", "unchecked-means"):
        with pytest.raises(AssertionError):
            check_scorer_fit(ScorerCase(name, kwargs={"num_classes": 3}, num_classes=3, dim=4))
