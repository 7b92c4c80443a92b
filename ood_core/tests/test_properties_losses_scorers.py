"""Hypothesis properties of every registered loss and scorer (eager, CPU, value checks on).

Random batch sizes (empty included), float dtypes, tasks, label layouts (mixed, all-ID, all-OOD)
and one optional non-finite value (NaN, +inf, -inf) at a random entry of a random float input.
The property is the rule of :mod:`ood_core.validation`: a finite result (with finite gradients,
for losses), or one ``ValueError`` naming the owner and the corrupted argument; NaN and +inf
are always refused. Scorers also fail closed with the checks off: the corrupted sample scores
NaN, +inf or at least the clean maximum.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ood_core
from ood_core.testing.cases import InputSpec, default_inputs
from ood_core.validation import set_value_checks

C, D = 4, 8
#: constructor keywords of the first-party methods, sized for C classes and D dimensions
LOSS_KWARGS = {
    "background-class": {"n_classes": C - 1},  # C logit columns: C - 1 known + background
    "cac": {"n_classes": C},
    "center": {"n_classes": C, "n_dim": D},
    "confidence": {},
    "cross-entropy": {},
    "deep-sad": {"n_dim": D},
    "deep-svdd": {"n_dim": D},
    "energy": {},
    "entropic-open-set": {},
    "ii": {"n_classes": C, "n_embedding": D},
    "logitnorm": {},
    "mchad": {"n_classes": C, "n_dim": D},
    "objectosphere": {},
    "outlier-exposure": {},
    "scone": {"full_train_loss": 0.5},
    "vos": {"num_classes": C},
    "vos-synthesis": {"num_classes": C, "num_features": D, "sample_number": 2, "sample_from": 8},
}
SCORER_KWARGS = {
    "background-class": {},
    "cac": {"n_classes": C},
    "center": {"n_classes": C, "n_dim": D},
    "confidence": {},
    "deep-svdd": {"n_dim": D},
    "energy": {"temperature": 2.0},
    "entropy": {},
    "ii": {"n_classes": C, "n_embedding": D},
    "max-logit": {},
    "mchad": {"n_classes": C, "n_dim": D},
    "msp": {"temperature": 0.5},
    "objectosphere": {},
    "scone": {},
    "weighted-energy": {"num_classes": C},
}
FIRST_PARTY = ("ood-core", "ood-plugin-")
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
BAD = (None, math.nan, math.inf, -math.inf)
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _kwargs(table: dict, info) -> dict:
    if info.name in table:
        return table[info.name]
    if info.distribution.startswith(FIRST_PARTY):
        pytest.fail(f"add constructor keywords for {info.name!r} to this test's table")
    pytest.skip(f"third-party {info.name!r}: constructor keywords unknown here")


@st.composite
def specs(draw, tasks: tuple[str, ...]) -> InputSpec:
    """An input spec: batch size (0 = empty), dtype, task, label layout, spatial size, seed."""
    batch = draw(st.integers(0, 6))
    return InputSpec(
        batch=max(batch, 1),
        task=draw(st.sampled_from(tasks)),
        dtype=draw(st.sampled_from(DTYPES)),
        mode="empty" if batch == 0 else draw(st.sampled_from(("mixed", "id", "ood"))),
        num_classes=C,
        dim=D,
        spatial=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        seed=draw(st.integers(0, 2**16)),
    )


def _inputs(info, spec: InputSpec, names: tuple[str, ...]) -> list:
    args = list(default_inputs(spec, names))
    if info.name == "background-class":  # targets among the C - 1 known classes
        i = names.index("target")
        args[i] = default_inputs(spec.replace(num_classes=C - 1), ("target",))[0]
    return args


def _corrupt(args: list, value: float | None, pick: int, where: int) -> int | None:
    """Put ``value`` at one entry of one non-empty float input; returns its index (or None)."""
    floats = [i for i, a in enumerate(args) if a.is_floating_point() and a.numel()]
    if value is None or not floats:
        return None
    i = floats[pick % len(floats)]
    x = args[i].detach().clone()
    x.view(-1)[where % x.numel()] = value
    args[i] = x.requires_grad_(True)
    return i


def _names(module, info, i: int, roles: tuple[str, ...]) -> tuple[set[str], set[str]]:
    params = [p.name for p in inspect.signature(module.forward).parameters.values()]
    return {info.name, type(module).__name__}, {params[i], roles[i]}


def _assert_names(exc: ValueError, owners: set[str], args: set[str]) -> None:
    message = str(exc)
    assert any(o in message for o in owners), f"owner not named: {message}"
    assert any(f"'{a}'" in message for a in args), f"argument {args} not named: {message}"


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t.detach().float()).all())


@pytest.mark.parametrize("info", ood_core.list_losses(), ids=lambda i: i.name)
def test_loss_finite_with_gradients_or_value_error(info):
    kwargs = _kwargs(LOSS_KWARGS, info)

    @SETTINGS
    @given(specs(info.tasks), st.sampled_from(BAD), st.integers(0, 7), st.integers(0, 10**6))
    def prop(spec, value, pick, where):
        torch.manual_seed(spec.seed)
        loss = ood_core.create_loss(info.name, **kwargs)
        args = _inputs(info, spec, info.inputs)
        bad = _corrupt(args, value, pick, where)
        try:
            out = loss(*args)
        except ValueError as exc:
            assert bad is not None, f"valid input refused: {exc}"
            _assert_names(exc, *_names(loss, info, bad, info.inputs))
            return
        assert bad is None or value == -math.inf, f"{value} in argument {bad} was accepted"
        assert out.dim() == 0 and _finite(out), f"non-finite loss {out}"
        leaves = [a for a in args if a.is_floating_point()]
        grads = torch.autograd.grad(out, leaves, allow_unused=True)
        assert all(g is None or _finite(g) for g in grads), "non-finite gradient"

    prop()


def _scorer_input(info, spec: InputSpec) -> torch.Tensor:
    name = "logits" if info.reads == "logits" else "embedding"
    if info.name == "cac":  # reads (B, C) embeddings in the anchor space
        spec = spec.replace(dim=C)
    return default_inputs(spec, (name,))[0].detach()


def _loss_scorers() -> list:
    """Scorers of ood-core and of the loss plugins (the post-hoc plugins' scorers are driven,
    fitted, by test_properties_posthoc.py)."""
    loss_distributions = {i.distribution for i in ood_core.list_losses()}
    return [
        i
        for i in ood_core.list_scorers()
        if i.distribution in loss_distributions or not i.distribution.startswith("ood-plugin-")
    ]


@pytest.mark.parametrize("info", _loss_scorers(), ids=lambda i: i.name)
def test_scorer_finite_or_value_error_and_fails_closed(info):
    kwargs = _kwargs(SCORER_KWARGS, info)
    scorer = ood_core.create_scorer(info.name, **kwargs).eval()

    @SETTINGS
    @given(specs(info.tasks), st.sampled_from(BAD), st.integers(0, 10**6))
    def prop(spec, value, where):
        x = _scorer_input(info, spec)
        args = [x]
        bad = _corrupt(args, value, 0, where)
        owners, names = _names(scorer, info, 0, (info.reads,))
        try:
            scores = scorer(args[0])
        except ValueError as exc:
            assert bad is not None, f"valid input refused: {exc}"
            _assert_names(exc, owners, names)
        else:
            assert bad is None or value == -math.inf, f"{value} in the input was accepted"
            assert tuple(scores.shape) == (x.shape[0], *x.shape[2:]) and _finite(scores)
        if bad is None or not x.numel():
            return
        set_value_checks("never")  # as in a compiled or exported scorer: fail closed
        try:
            closed, clean = scorer(args[0]).flatten(), scorer(x).flatten()
        finally:
            set_value_checks("auto")
        sample = (where % x.numel()) // (x.numel() // x.shape[0])  # the corrupted sample
        if x.dim() == 4:  # a pixel: compare every score of that image
            per = clean.numel() // x.shape[0]
            got = closed[sample * per : (sample + 1) * per]
        else:
            got = closed[sample : sample + 1]
        assert not bool((got == -math.inf).any()), f"{value} gave a -inf score"
        if value != -math.inf:
            ok = torch.isnan(got) | (got == math.inf) | (got >= clean.max())
            assert bool(ok.any()), f"{value} scored {got.tolist()}, below {float(clean.max())}"

    prop()
