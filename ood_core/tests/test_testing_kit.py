"""The conformance kit catches what it promises to catch: each broken loss fails its check."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from ood_core import hookimpl, registry
from ood_core.loss import Loss
from ood_core.testing import LossCase, ScorerCase, run_checks
from ood_core.testing import checks as kit
from ood_core.validation import check_classification


class GoodLoss(Loss):
    """Masked cross-entropy (a correct reference for the broken variants below)."""

    roles = {"logits": "logits", "target": "target"}

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def check(self, logits, target):
        return check_classification(type(self).__name__, logits, target)

    def forward(self, logits, target):
        logits, target = self.check(logits, target)
        from ood_core.functional import cross_entropy

        return cross_entropy(logits, target, self.reduction)

    def scorer(self):
        from ood_core.builtin.scorers import MaxSoftmax

        return MaxSoftmax()


class BoolIndexLoss(GoodLoss):
    """Selects ID rows with a boolean index (data-dependent shape)."""

    def forward(self, logits, target):
        self.check(logits, target)
        known = target >= 0
        return (
            nn.functional.cross_entropy(logits[known].float(), target[known]) * 0 + logits.sum() * 0
        )


class NanOnEmptyLoss(GoodLoss):
    """Plain mean over ID samples: NaN when there are none."""

    def forward(self, logits, target):
        self.check(logits, target)
        t = torch.where(target >= 0, target, -100)
        return nn.functional.cross_entropy(logits.float(), t, ignore_index=-100)


class UncheckedLoss(GoodLoss):
    """Does not validate its input."""

    def forward(self, logits, target):
        return (logits.float() ** 2).mean()


class VolatileStateLoss(GoodLoss):
    """Keeps a running statistic in a non-persistent buffer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("seen", torch.zeros(()), persistent=False)

    def forward(self, logits, target):
        self.check(logits, target)
        self.seen += 1
        return (logits.float() ** 2).mean() * self.seen


class HalfCrashLoss(GoodLoss):
    """Multiplies by an fp32 parameter with a matmul (fails for other dtypes)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(4, 4))

    def forward(self, logits, target):
        self.check(logits, target)
        return (logits @ self.w).mean()


class DetachedLoss(GoodLoss):
    """Returns a constant on empty batches (graph lost)."""

    def forward(self, logits, target):
        self.check(logits, target)
        if logits.shape[0] == 0:
            return torch.tensor(0.0)
        return (logits.float() ** 2).mean()


class ViewScorerLoss(GoodLoss):
    """Its scorer shares (not copies) the loss's parameter."""

    def __init__(self):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(4))

    def scorer(self):
        return ShiftScorer(self.shift)


class ShiftScorer(nn.Module):
    """Scores with a shared parameter."""

    def __init__(self, shift):
        super().__init__()
        self.shift = shift

    def forward(self, logits):
        return -(logits + self.shift).amax(1)


class OverflowScorer(nn.Module):
    """Unstable energy: log(sum(exp(x))) without max subtraction."""

    def forward(self, logits):
        return -torch.log(torch.exp(logits.float()).sum(1))


class UnstableInfLoss(GoodLoss):
    """Checks nothing and subtracts the row maximum: +inf logits give NaN, not a ValueError."""

    def forward(self, logits, target):
        x = logits.float()
        return (x - x.amax(1, keepdim=True)).mean()


class LongOnlyLoss(GoodLoss):
    """Hands the targets to torch's cross-entropy unconverted (fails for int8/16/32)."""

    def forward(self, logits, target):
        self.check(logits, target)
        return nn.functional.cross_entropy(logits.float(), target.clamp_min(0))


class OpenMaxLogitScorer(nn.Module):
    """Rejects non-finite input in eager mode but scores +inf logits -inf without the checks."""

    def forward(self, logits):
        from ood_core.validation import check_float

        return -check_float("OpenMaxLogitScorer", "logits", logits).float().amax(1)


class UncheckedTemperatureScorer(nn.Module):
    """Accepts any temperature (0 divides by zero)."""

    def __init__(self, temperature=1.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, logits):
        from ood_core.validation import check_float

        x = check_float("UncheckedTemperatureScorer", "logits", logits) / self.temperature
        return -torch.softmax(x, 1).amax(1)


class ItemScorer(nn.Module):
    """Normalises by a Python float taken from the data (cannot export or compile)."""

    def forward(self, logits):
        return -logits.amax(1) / float(logits.abs().max().item() + 1.0)


class PixelMapScorer(nn.Module):
    """Reads feature maps but scores each pixel (classification wants one score per sample)."""

    def forward(self, feature_maps):
        return -feature_maps.float().mean(1)


class TwoLayerScorer(nn.Module):
    """Reads a tuple of two layers' feature maps: a correct multi-layer scorer."""

    def forward(self, feature_maps):
        first, last = feature_maps
        return first.float().mean(dim=(1, 2, 3)) - last.float().amax(dim=(1, 2, 3))


def two_layers(spec):
    g = torch.Generator().manual_seed(spec.seed)
    shapes = ((spec.batch, 3, *spec.spatial), (spec.batch, spec.dim, 2, 2))
    return tuple(torch.randn(s, generator=g).to(spec.dtype) for s in shapes)


BROKEN = {
    "BoolIndexLoss": "check_loss_no_sync",
    "NanOnEmptyLoss": "check_loss_batches",
    "UncheckedLoss": "check_loss_bad_input",
    "VolatileStateLoss": "check_loss_state_dict",
    "HalfCrashLoss": "check_loss_dtypes",
    "DetachedLoss": "check_loss_batches",
    "ViewScorerLoss": "check_loss_scorer",
    "UnstableInfLoss": "check_loss_non_finite",
    "LongOnlyLoss": "check_loss_integer_targets",
}
#: more (loss, check) pairs for losses already in BROKEN
ALSO_BROKEN = [("UncheckedLoss", "check_loss_zero_classes")]
BROKEN_SCORERS = {
    "OverflowScorer": "check_scorer_extremes",
    "ItemScorer": "check_scorer_no_sync",
    "OpenMaxLogitScorer": "check_scorer_non_finite",
    "UncheckedTemperatureScorer": "check_scorer_temperature",
    "PixelMapScorer": "check_scorer_forward",
}
FEATURE_MAP_SCORERS = ("PixelMapScorer", "TwoLayerScorer")


@pytest.fixture(scope="module")
def kit_registry():
    module = types.ModuleType("oodx_kit_fixtures")
    for cls in (GoodLoss, TwoLayerScorer, *(globals()[n] for n in (*BROKEN, *BROKEN_SCORERS))):
        setattr(module, cls.__name__, cls)
    sys.modules[module.__name__] = module

    def losses(register):
        for name in ("GoodLoss", *BROKEN):
            register(
                name=name.lower(),
                target=f"oodx_kit_fixtures:{name}",
                summary="kit fixture",
                paper="",
                tasks=("classification",),
                uses_ood=True,
                scorer="msp",
                inputs=("logits", "target"),
            )

    def scorers(register):
        for name in (*BROKEN_SCORERS, "TwoLayerScorer"):
            register(
                name=name.lower(),
                target=f"oodx_kit_fixtures:{name}",
                summary="kit fixture",
                reads="feature_maps" if name in FEATURE_MAP_SCORERS else "logits",
                needs_fit=False,
                tasks=("classification",),
            )

    plugin = types.SimpleNamespace(
        OODX_PLUGIN_API=1,
        oodx_register_losses=hookimpl(losses),
        oodx_register_scorers=hookimpl(scorers),
    )
    old = registry.set_registry(registry.Registry.from_plugins({"kit-fixtures": plugin}))
    yield
    registry.set_registry(old)
    del sys.modules[module.__name__]


@pytest.mark.parametrize(
    "check",
    [c for c in kit.LOSS_CHECKS if c is not kit.check_loss_lazy_import],
    ids=lambda c: c.__name__,
)
def test_reference_loss_passes(kit_registry, check):
    check(LossCase("goodloss"))


@pytest.mark.parametrize("name, check", sorted(BROKEN.items()) + ALSO_BROKEN)
def test_broken_loss_fails_its_check(kit_registry, name, check):
    with pytest.raises(AssertionError):
        getattr(kit, check)(LossCase(name.lower()))


@pytest.mark.parametrize("name, check", sorted(BROKEN_SCORERS.items()))
def test_broken_scorer_fails_its_check(kit_registry, name, check):
    with pytest.raises(AssertionError):
        getattr(kit, check)(ScorerCase(name.lower()))


def test_feature_maps_are_4d_with_one_score_per_sample(kit_registry):
    spec = kit.InputSpec(batch=3, dim=5)
    assert kit._scorer_input("feature_maps", spec).shape == (3, 5, 5, 6)
    assert kit._scorer_input("features", spec).shape == (3, 5)
    with pytest.raises(AssertionError, match=r"scores shape \(6, 5, 6\), expected \(6,\)"):
        kit.check_scorer_forward(ScorerCase("pixelmapscorer"))


@pytest.mark.parametrize(
    "check", [kit.check_scorer_forward, kit.check_scorer_non_finite, kit.check_scorer_export]
)
def test_make_inputs_feeds_a_tuple_of_layers(kit_registry, check):
    case = ScorerCase("twolayerscorer", make_inputs=two_layers)
    if check is kit.check_scorer_non_finite:
        with pytest.raises(AssertionError, match="accepted silently"):  # NaN reached layer 1
            check(case)
    else:
        check(case)
    with pytest.raises((TypeError, ValueError)):  # without make_inputs: one tensor, not a tuple
        kit.check_scorer_forward(ScorerCase("twolayerscorer"))


def test_item_scorer_also_fails_export(kit_registry):
    with pytest.raises(AssertionError, match="torch.export failed|do not depend|exported scores"):
        kit.check_scorer_export(ScorerCase("itemscorer"))


def test_run_checks_reports_and_honours_skip(kit_registry):
    report = run_checks(
        [LossCase("uncheckedloss", skip={"check_loss_bad_input": "not validated on purpose"})]
    )
    assert report["loss:uncheckedloss:bad_input"].startswith("skipped: ")
    assert report["loss:uncheckedloss:forward"] == "passed"
    assert report["loss:uncheckedloss:lazy_import"].startswith(
        "failed: "
    )  # no importable plugin module


def test_pytest_plugin_generates_tests(pytester):
    pytester.makepyfile(
        """
        from ood_core.testing import LossCase, ScorerCase
        OODX_CASES = [LossCase("cross-entropy"), ScorerCase("energy")]

        def test_oodx(oodx_case, oodx_check):
            oodx_check(oodx_case)
        """
    )
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=len(kit.LOSS_CHECKS) + len(kit.SCORER_CHECKS))
