"""Contract checks of the ``Loss`` and ``Scorer`` base classes (part of the conformance kit).

- :func:`check_loss_roles`: the loss is an :class:`ood_core.Loss`, its ``roles`` name
  ``forward``'s parameters in order, and the registration's ``inputs`` are those roles;
- :func:`check_loss_config`: ``type(l)(**l.get_config())`` rebuilds the loss (JSON keywords),
  loads its ``state_dict`` and computes the same value;
- :func:`check_scorer_fit`: a scorer registered ``needs_fit`` raises before ``fit``, fitting on
  a stream of batches equals fitting on their concatenation, and the fitted state round trips
  through ``state_dict``; so does a scorer that ``refits`` (it scores before fit too); any
  other scorer's ``fit`` (if any) returns it unchanged.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.registry import create_loss, create_scorer, get_info
from ood_core.testing.cases import InputSpec, LossCase, ScorerCase, default_inputs


def _loss(case: LossCase, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_loss(case.name, **case.kwargs)


def _inputs(case: LossCase, seed: int) -> tuple[Any, ...]:
    spec = InputSpec(batch=6, num_classes=case.num_classes, dim=case.dim, seed=seed)
    if case.make_inputs is not None:
        return tuple(case.make_inputs(spec))
    return default_inputs(spec, get_info("loss", case.name).inputs)


def check_loss_roles(case: LossCase) -> None:
    """The loss is an ``ood_core.Loss`` whose roles match forward and the registered ``inputs``."""
    from ood_core.loss import Loss

    info = get_info("loss", case.name)
    cls = info.load()
    assert isinstance(cls, type) and issubclass(cls, Loss), (
        f"{case}: {info.target} must derive from ood_core.Loss (declaring roles = {{forward "
        "parameter: role}}), got " + (repr(cls.__mro__[1:]) if isinstance(cls, type) else repr(cls))
    )
    params = [p.name for p in inspect.signature(cls.forward).parameters.values()][1:]
    names = list(cls.roles)
    assert params[: len(names)] == names, (
        f"{case}: {cls.__qualname__}.roles name {names} but forward takes {params}"
    )
    assert tuple(cls.roles.values()) == tuple(info.inputs), (
        f"{case}: registered inputs {tuple(info.inputs)} disagree with the roles of forward "
        f"{dict(cls.roles)}; register inputs={tuple(cls.roles.values())}"
    )


def check_loss_config(case: LossCase) -> None:
    """``type(l)(**l.get_config())`` rebuilds the loss, loads its state and gives the same value."""
    loss = _loss(case)
    args = _inputs(case, seed=3)
    loss.train()
    loss(*args)  # one step, so running state (queues, means) differs from a fresh loss
    config = loss.get_config()
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{case}: get_config() is not JSON: {config!r} ({exc})") from None
    rebuilt = type(loss)(**json.loads(json.dumps(config)))
    rebuilt.load_state_dict(loss.state_dict())
    for key, value in loss.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), f"{case}: state {key!r} differs"
    if not case.deterministic:
        return
    loss.eval()
    rebuilt.eval()
    args = _inputs(case, seed=4)
    torch.manual_seed(5)
    a = loss(*args)
    torch.manual_seed(5)
    b = rebuilt(*args)
    assert torch.allclose(a, b, atol=case.atol, rtol=case.rtol, equal_nan=True), (
        f"{case}: the loss rebuilt from get_config() {config} computes {b}, the original {a}"
    )


def _fit_data(case: ScorerCase, reads: Any, batches: int = 3) -> list[tuple[Tensor, Tensor]]:
    width = case.num_classes if reads == "logits" else case.dim
    g = torch.Generator().manual_seed(11)
    out = []
    for size in (5, 1, 9)[:batches]:
        x = torch.randn(size, width, generator=g) * 2 + 0.5
        y = torch.arange(size) % case.num_classes
        out.append((x, y))
    return out


def _assert_same_state(a: nn.Module, b: nn.Module, what: str) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys(), f"{what}: state keys differ: {sorted(sa)} vs {sorted(sb)}"
    for key in sa:
        va, vb = sa[key], sb[key]
        same = (
            torch.allclose(va.double(), vb.double(), rtol=1e-6, atol=1e-9)
            if (va.is_floating_point())
            else torch.equal(va, vb)
        )
        assert same, f"{what}: state {key!r} differs"


def check_scorer_fit(case: ScorerCase) -> None:
    """Fit protocol: error before fit, stream == concatenation, state round trip."""
    from ood_core.scoring import NotFittedError

    info = get_info("scorer", case.name)
    if case.from_loss is None and getattr(info.load(), "refits", False):
        _check_stream_and_round_trip(case, info)
        return
    if case.from_loss is not None or not info.needs_fit:
        scorer = create_scorer(case.name, **case.kwargs) if case.from_loss is None else None
        cls = info.load()
        assert not getattr(cls, "needs_fit", False), (
            f"{case}: the class sets needs_fit but the registration says needs_fit=False"
        )
        if scorer is not None and callable(getattr(scorer, "fit", None)):
            before = {k: v.clone() for k, v in scorer.state_dict().items()}
            x, y = _fit_data(case, info.reads, 1)[0]
            assert scorer.fit(x, y) is scorer, f"{case}: fit() must return the scorer"
            for key, value in scorer.state_dict().items():
                assert torch.equal(value, before[key]), f"{case}: fit() changed {key!r}"
        return
    data = _fit_data(case, info.reads)
    fresh = create_scorer(case.name, **case.kwargs)
    assert getattr(fresh, "needs_fit", False), f"{case}: registered needs_fit, class does not"
    try:
        fresh(data[0][0])
    except NotFittedError:
        pass
    else:
        raise AssertionError(f"{case}: scoring before fit() must raise NotFittedError")
    _check_stream_and_round_trip(case, info, data)


def _check_stream_and_round_trip(case: ScorerCase, info: Any, data: Any = None) -> None:
    """Fit on batches == fit on their concatenation; the fitted state round trips."""
    data = _fit_data(case, info.reads) if data is None else data
    streamed = create_scorer(case.name, **case.kwargs)
    assert streamed.fit(iter(data)) is streamed, f"{case}: fit() must return the scorer"
    whole = create_scorer(case.name, **case.kwargs).fit(
        torch.cat([x for x, _ in data]), torch.cat([y for _, y in data])
    )
    _assert_same_state(streamed, whole, f"{case} (fit on batches vs on their concatenation)")
    loaded = create_scorer(case.name, **case.kwargs)
    loaded.load_state_dict(streamed.state_dict())
    _assert_same_state(streamed, loaded, f"{case} (state_dict round trip)")
    probe = data[-1][0]
    assert torch.allclose(streamed.eval()(probe), loaded.eval()(probe), equal_nan=True), (
        f"{case}: the scorer loaded from the fitted state_dict scores differently"
    )


__all__ = ["check_loss_config", "check_loss_roles", "check_scorer_fit"]
