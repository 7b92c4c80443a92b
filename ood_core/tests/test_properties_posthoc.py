"""Hypothesis properties of every registered post-hoc scorer of a first-party plugin, fitted.

The scorers of the loss plugins and ood-core are driven by test_properties_losses_scorers.py;
this file covers the scorers that are fitted on ID data, take a classifier head or read feature
maps. Each is built from a table of keywords sized for C classes and D features, fitted on
class-structured data (features near class centres, a head whose argmax is the class, logits
peaked at the class), then fed random batches (empty included), float dtypes, tasks and one
optional non-finite value. The property is the rule of :mod:`ood_core.validation`: finite scores
of the right shape, or one ``ValueError`` naming the scorer and its argument; NaN and +inf are
refused; with the checks off the corrupted sample scores NaN, +inf or at least the clean maximum.

Scorers that read ``inputs`` (gradient and stochastic methods) score through a model and are
covered by their own plugins' tests.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ood_core
from ood_core.testing.cases import InputSpec, make_float
from ood_core.validation import set_value_checks

C, D, N_FIT = 4, 8, 96
HEAD = object()  # placeholder: the table entry takes the shared classifier head
#: constructor keywords (``HEAD`` = the classifier head), sized for C classes and D features
KWARGS: dict[str, dict] = {
    "ash": {"head": HEAD},
    "dice": {"head": HEAD, "p": 0.5},
    "fdbd": {"head": HEAD},
    "gen": {},
    "gmm": {},
    "kl-matching": {},
    "knn": {"k": 3},
    "lts": {"head": HEAD},
    "mahalanobis": {},
    "mcm": {"text_embeddings": None},  # filled with the class centres
    "multi-mahalanobis": {},
    "nci": {"head": HEAD},
    "nnguide": {"head": HEAD, "k": 3},
    "openmax": {"tailsize": 5},
    "pnml": {"head": HEAD},
    "rankfeat": {"head": HEAD},
    "react": {"head": HEAD},
    "rmd": {},
    "scale": {"head": HEAD},
    "she": {"head": HEAD},
    "temperature-scaling": {},
    "vim": {"head": HEAD, "d": 4},
    "vra": {"head": HEAD},
}
#: scorers that read several layers at once: their plugins' tests feed them
SEVERAL_LAYERS = ("gram",)
DTYPES = (torch.float32, torch.float64, torch.bfloat16)
BAD = (None, math.nan, math.inf, -math.inf)
SETTINGS = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _posthoc() -> list:
    loss_scorers = {i.scorer for i in ood_core.list_losses()}
    return [
        i
        for i in ood_core.list_scorers()
        if i.distribution.startswith("ood-plugin-")
        and i.reads != "inputs"
        and i.name not in loss_scorers
        and i.name not in SEVERAL_LAYERS
        and i.name != "weighted-energy"
    ]


def _problem() -> tuple[torch.Tensor, torch.Tensor, torch.nn.Linear]:
    g = torch.Generator().manual_seed(0)
    centres = 4.0 * torch.eye(C, D)  # class c is strong in feature c
    y = torch.arange(N_FIT) % C
    z = centres[y] + 0.5 * torch.rand(N_FIT, D, generator=g)  # non-negative, as after a ReLU
    head = torch.nn.Linear(D, C)
    with torch.no_grad():
        head.weight.copy_(centres + 0.1 * torch.rand(C, D, generator=g))
        head.bias.zero_()
    assert bool((head(z).argmax(1) == y).all())  # every fit sample is classified correctly
    return z, y, head


def _build(info) -> torch.nn.Module:
    z, y, head = _problem()
    kwargs = {k: (head if v is HEAD else v) for k, v in KWARGS[info.name].items()}
    if "text_embeddings" in kwargs:
        kwargs["text_embeddings"] = head.weight.detach().clone()
    scorer = ood_core.create_scorer(info.name, **kwargs).eval()
    if info.needs_fit:
        scorer.fit(_as_read(info, z, head), y)
    return scorer


def _as_read(info, z: torch.Tensor, head: torch.nn.Linear) -> torch.Tensor:
    if info.reads == "logits":
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():  # peaked at the class, with some mistakes (a finite best T)
            return 0.25 * head(z) + 2.0 * torch.randn(z.shape[0], C, generator=g)
    if info.reads == "feature_maps":
        return z[:, :, None, None].expand(-1, -1, 2, 2).contiguous()
    return z


def _input(info, spec: InputSpec) -> torch.Tensor:
    g = torch.Generator().manual_seed(spec.seed)
    batch = 0 if spec.mode == "empty" else spec.batch
    width = C if info.reads == "logits" else D
    spatial = spec.spatial if spec.task == "segmentation" else ()
    if info.reads == "feature_maps":
        spatial = (2, 2)  # as fitted (VRA's quantiles are per unit and position)
    x = make_float(spec, (batch, width, *spatial), g, scale=1.0).detach()
    return x.abs() if info.reads != "logits" else x


def _score_shape(info, x: torch.Tensor) -> tuple[int, ...]:
    per_pixel = x.dim() == 4 and info.reads != "feature_maps"
    return (x.shape[0], *x.shape[2:]) if per_pixel else (x.shape[0],)


@st.composite
def specs(draw, tasks: tuple[str, ...]) -> InputSpec:
    batch = draw(st.integers(0, 5))
    return InputSpec(
        batch=max(batch, 1),
        task=draw(st.sampled_from(tasks)),
        dtype=draw(st.sampled_from(DTYPES)),
        mode="empty" if batch == 0 else "mixed",
        num_classes=C,
        dim=D,
        spatial=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        seed=draw(st.integers(0, 2**16)),
    )


def test_every_posthoc_scorer_has_keywords_here():
    missing = [i.name for i in _posthoc() if i.name not in KWARGS]
    assert not missing, f"add constructor keywords for {missing} to KWARGS"
    assert len(_posthoc()) >= 10  # the post-hoc plugins are installed


@pytest.mark.parametrize("info", _posthoc(), ids=lambda i: i.name)
def test_fitted_scorer_finite_or_value_error_and_fails_closed(info):
    scorer = _build(info)

    @SETTINGS
    @given(specs(info.tasks), st.sampled_from(BAD), st.integers(0, 10**6))
    def prop(spec, value, where):
        x = _input(info, spec).to(spec.dtype)
        bad = x.clone()
        if value is not None and x.numel():
            bad.view(-1)[where % x.numel()] = value
        corrupted = value is not None and x.numel() > 0
        try:
            scores = scorer(bad)
        except ValueError as exc:
            message = str(exc)
            assert corrupted, f"valid input refused: {message}"
            assert info.name in message or type(scorer).__name__ in message, message
            return
        assert not corrupted or value == -math.inf, f"{value} in the input was accepted"
        assert tuple(scores.shape) == _score_shape(info, x)
        assert bool(torch.isfinite(scores.float()).all()), f"non-finite scores {scores}"
        if not corrupted:
            return
        set_value_checks("never")  # as in an exported graph: fail closed
        try:
            closed, clean = scorer(bad).flatten().float(), scorer(x).flatten().float()
        finally:
            set_value_checks("auto")
        assert not bool((closed == -math.inf).any()), f"{value} gave a -inf score"
        if value != -math.inf:
            per = clean.numel() // x.shape[0]
            sample = (where % x.numel()) // (x.numel() // x.shape[0])
            got = closed[sample * per : (sample + 1) * per]
            ok = torch.isnan(got) | (got == math.inf) | (got >= clean.max())
            assert bool(ok.any()), f"{value} scored {got.tolist()}, below {float(clean.max())}"

    prop()
