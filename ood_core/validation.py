"""Input checks shared by losses and scorers, with errors that name the owner and the argument.

Shape, rank and dtype checks are free and always run. Value checks (NaN, target range) need the
values on the host: they run in eager mode on CPU tensors, are skipped while ``torch.compile`` or
``torch.export`` trace, and on accelerators run only when enabled (they would force a
host-device synchronisation). Control them with ``OODX_VALUE_CHECKS=auto|always|never`` or
:func:`set_value_checks`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor

_MODES = ("auto", "always", "never")
_mode: str | None = None


def set_value_checks(mode: str) -> None:
    """Set when value checks run: ``auto`` (eager CPU only), ``always`` or ``never``."""
    global _mode
    if mode not in _MODES:
        raise ValueError(f"set_value_checks: argument 'mode' must be one of {_MODES}, got {mode!r}")
    _mode = mode


def _tracing() -> bool:
    compiler = getattr(torch, "compiler", None)
    if compiler is not None:
        if compiler.is_compiling():
            return True
        is_exporting = getattr(compiler, "is_exporting", None)
        if is_exporting is not None and is_exporting():
            return True
    return bool(torch.jit.is_tracing() or torch.jit.is_scripting())


def value_checks_enabled(x: Tensor) -> bool:
    """Whether value checks should run on ``x`` now (see the module docstring)."""
    mode = _mode or os.environ.get("OODX_VALUE_CHECKS", "auto")
    if mode == "never" or _tracing():
        return False
    device = x.device.type
    if device == "meta" or _is_fake(x):
        return False
    return mode == "always" or device == "cpu"


def host_reads_allowed(x: Tensor) -> bool:
    """Whether reading values of ``x`` on the host costs no unwanted synchronisation now.

    The same condition as the value checks: eager mode on the CPU by default (or wherever the
    checks are switched on). Losses use it for shortcuts that branch on tensor values; the
    mask-based path, which compiles and never syncs, runs everywhere else.
    """
    return value_checks_enabled(x)


def _is_fake(x: Tensor) -> bool:
    # plain tensors answer without the import (the common eager case)
    if type(x) is Tensor or type(x) is torch.nn.Parameter:
        return False
    from torch._subclasses.fake_tensor import is_fake

    return bool(is_fake(x))


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"


def fail(owner: str, arg: str, expected: str, got: object) -> ValueError:
    """A ``ValueError`` saying ``owner: argument 'arg' must be <expected>, got <got>``."""
    got_text = got if isinstance(got, str) else _describe(got)
    return ValueError(f"{owner}: argument {arg!r} must be {expected}, got {got_text}")


def check_tensor(owner: str, arg: str, x: object) -> Tensor:
    """``x`` must be a tensor."""
    if not isinstance(x, Tensor):
        raise fail(owner, arg, "a torch.Tensor", x)
    return x


def check_float(owner: str, arg: str, x: object, ranks: Sequence[int] | None = None) -> Tensor:
    """``x`` must be a floating tensor of one of ``ranks``, without NaN (when value checks run)."""
    x = check_tensor(owner, arg, x)
    if not x.is_floating_point():
        raise fail(owner, arg, "a floating-point tensor", x)
    if ranks is not None and x.dim() not in ranks:
        raise fail(owner, arg, f"a tensor of rank {' or '.join(map(str, ranks))}", x)
    # amax propagates NaN and is much cheaper than materialising isnan(x); NaN != NaN
    if value_checks_enabled(x) and x.numel() and _is_nan(x.detach().amax().item()):
        raise fail(
            owner, arg, "free of NaN", f"{int(torch.isnan(x).sum())} NaN value(s) in {_describe(x)}"
        )
    return x


def _is_nan(value: float) -> bool:
    return value != value


def check_target(
    owner: str,
    target: object,
    *,
    shape: Sequence[int],
    num_classes: int | None = None,
    arg: str = "target",
) -> Tensor:
    """``target`` must be an integer tensor of ``shape`` with values ``< num_classes``.

    Negative values are OOD and always allowed.
    """
    target = check_tensor(owner, arg, target)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise fail(owner, arg, "an integer tensor of class indices (negative = OOD)", target)
    if tuple(target.shape) != tuple(shape):
        raise fail(owner, arg, f"of shape {tuple(shape)} to match the other inputs", target)
    if num_classes is not None and value_checks_enabled(target) and target.numel():
        high = int(target.max())
        if high >= num_classes:
            raise fail(
                owner,
                arg,
                f"a class index below {num_classes} (or negative for OOD)",
                f"the value {high} in {_describe(target)}",
            )
    return target


def check_batch(owner: str, **tensors: Tensor) -> int:
    """All ``tensors`` must share the batch (first) dimension; returns it."""
    sizes = {name: t.shape[0] for name, t in tensors.items() if t.dim() > 0}
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        first = next(iter(sizes))
        raise fail(
            owner,
            ", ".join(sizes),
            "tensors with the same batch size",
            f"batch sizes {detail} (taking {first!r} as reference)",
        )
    return next(iter(sizes.values()), 0)


def check_classification(
    owner: str,
    logits: object,
    target: object,
    *,
    arg: str = "logits",
    ranks: Sequence[int] = (2, 4),
    target_arg: str = "target",
) -> tuple[Tensor, Tensor]:
    """Check ``(B, C)`` or ``(B, C, H, W)`` scores against targets ``(B,)`` or ``(B, H, W)``.

    ``arg`` and ``target_arg`` are the names the caller's forward gives the two arguments.
    """
    logits = check_float(owner, arg, logits, ranks)
    shape = (logits.shape[0], *logits.shape[2:])
    target = check_tensor(owner, target_arg, target)
    if target.dim() >= 1 and logits.dim() >= 1 and target.shape[0] != logits.shape[0]:
        raise fail(
            owner,
            target_arg,
            f"a batch of {logits.shape[0]} to match {arg!r} {tuple(logits.shape)}",
            target,
        )
    target = check_target(owner, target, shape=shape, num_classes=logits.shape[1], arg=target_arg)
    return logits, target
