"""Input checks shared by losses and scorers, with errors that name the owner and the argument.

Shape, rank and dtype checks are free and always run. Value checks (non-finite values, target
range) need the values on the host: they run in eager mode on CPU tensors, are skipped while
``torch.compile`` or ``torch.export`` trace, and on accelerators run only when enabled (they would
force a host-device synchronisation). Control them with ``OODX_VALUE_CHECKS=auto|always|never``
(read once, when this module is first imported) or :func:`set_value_checks`.

The rule for non-finite inputs (one for every loss and scorer):

- Where value checks run, NaN and ``+inf`` in any floating input raise ``ValueError`` naming the
  argument; so does ``-inf``, except in logits that enter a softmax (``masks=True``), where
  ``-inf`` masks a class: allowed as long as every sample keeps a finite logit (and, for a loss,
  the logit of each ID sample's target class is finite). With such masks the result is finite
  and computed stably. The check is one reduction (a sum, finite unless a value is non-finite;
  only a non-finite sum pays for the exact count). A loss whose result every input value enters
  (no ignored entries) may read its result instead and diagnose the inputs only when it is not
  finite: the same rule, without a pass over the inputs.
- Where checks do not run (compiled, exported, on an accelerator) nothing is read on the host;
  a scorer then fails closed: a non-finite input gives a NaN or ``+inf`` score (see
  :func:`fail_closed`), never a small, in-distribution one.
- Integer targets of any width are accepted (converted to int64 once, in :func:`check_target`);
  a tensor of rank >= 2 needs at least one entry in dim 1 (classes or features).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from torch import Tensor

_MODES = ("auto", "always", "never")
#: the current mode; the environment is read once (per forward call it would cost a microsecond)
_mode: str = os.environ.get("OODX_VALUE_CHECKS", "auto")


def set_value_checks(mode: str) -> None:
    """Set when value checks run: ``auto`` (eager CPU only), ``always`` or ``never``."""
    global _mode
    if mode not in _MODES:
        raise ValueError(f"set_value_checks: argument 'mode' must be one of {_MODES}, got {mode!r}")
    _mode = mode


def _never() -> bool:
    return False


_compiler = getattr(torch, "compiler", None)
_is_compiling = getattr(_compiler, "is_compiling", _never)
_is_exporting = getattr(_compiler, "is_exporting", _never)


def _tracing() -> bool:
    jit = torch.jit
    return bool(_is_compiling() or _is_exporting() or jit.is_tracing() or jit.is_scripting())


def value_checks_enabled(x: Tensor) -> bool:
    """Whether value checks should run on ``x`` now (see the module docstring)."""
    mode = _mode
    if mode == "never" or _tracing() or _is_fake(x):
        return False
    return not x.is_meta if mode == "always" else x.is_cpu


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


def check_float(
    owner: str,
    arg: str,
    x: object,
    ranks: Sequence[int] | None = None,
    *,
    masks: bool = False,
) -> Tensor:
    """``x`` must be a floating tensor of one of ``ranks``, finite where value checks run.

    ``masks=True`` (logits entering a softmax) allows ``-inf`` as a class mask, as long as every
    slice along dim 1 keeps a finite value. See the module docstring for the rule.
    """
    x = check_float_shape(owner, arg, x, ranks)
    check_finite(owner, arg, x, masks=masks)
    return x


def check_float_shape(owner: str, arg: str, x: object, ranks: Sequence[int] | None) -> Tensor:
    """The free part of :func:`check_float`: a floating tensor of one of ``ranks``, dim 1 > 0.

    For callers that check the values later with :func:`check_finite`.
    """
    x = check_tensor(owner, arg, x)
    if not x.is_floating_point():
        raise fail(owner, arg, "a floating-point tensor", x)
    if ranks is not None and x.dim() not in ranks:
        raise fail(owner, arg, f"a tensor of rank {' or '.join(map(str, ranks))}", x)
    if x.dim() >= 2 and x.shape[1] == 0:
        raise fail(owner, arg, "a tensor with at least one entry in dim 1 (classes or features)", x)
    return x


def check_finite(owner: str, arg: str, x: Tensor, *, masks: bool = False) -> bool:
    """Raise unless ``x`` is finite (``-inf`` allowed as a class mask with ``masks``).

    Runs only where value checks run; returns whether ``x`` holds ``-inf`` (masked classes).
    """
    if not (value_checks_enabled(x) and x.numel()):
        return False
    y = x.detach()
    # one cheap reduction: a sum of finite values is finite unless it overflows (fp16 sums in
    # fp32); only a non-finite sum pays for the exact counts below
    if math.isfinite(y.sum(dtype=torch.float32 if y.dtype == torch.float16 else None).item()):
        return False
    nan = int(torch.isnan(y).sum())
    if nan:
        raise fail(owner, arg, "free of NaN", f"{nan} NaN value(s) in {_describe(x)}")
    pos, neg = int((y == math.inf).sum()), int((y == -math.inf).sum())
    if pos or (neg and not masks):
        expected = "finite (-inf only to mask a class)" if masks else "finite"
        raise fail(owner, arg, expected, f"{pos} +inf and {neg} -inf value(s) in {_describe(x)}")
    if neg and y.dim() >= 2 and bool((y.amax(dim=1) == -math.inf).any()):
        raise fail(
            owner,
            arg,
            "finite for at least one class of every sample (-inf masks a class, not all)",
            f"a sample with only -inf values in {_describe(x)}",
        )
    return neg > 0


def check_target(
    owner: str,
    target: object,
    *,
    shape: Sequence[int],
    num_classes: int | None = None,
    arg: str = "target",
) -> Tensor:
    """``target`` must be an integer tensor of ``shape`` with values ``< num_classes``.

    Negative values are OOD and always allowed. Any integer dtype is accepted; the result is
    int64 (the dtype torch's indexing and cross-entropy need), converted once here.
    """
    target = check_tensor(owner, arg, target)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise fail(owner, arg, "an integer tensor of class indices (negative = OOD)", target)
    if target.dtype != torch.long:
        target = target.long()
    if target.shape != tuple(shape):
        raise fail(owner, arg, f"of shape {tuple(shape)} to match the other inputs", target)
    if num_classes is not None:
        _check_max(owner, arg, target, num_classes)
    return target


def _check_max(owner: str, arg: str, target: Tensor, num_classes: int) -> None:
    if value_checks_enabled(target) and target.numel():
        _check_below(owner, arg, target, int(target.max()), num_classes)


def check_target_bounds(
    owner: str, target: Tensor, num_classes: int, *, arg: str = "target"
) -> tuple[int, int] | None:
    """``(min, max)`` of an int64 ``target``, read on the host where value checks run, else None.

    One reduction; raises unless the maximum is below ``num_classes``. For losses that take
    shortcuts from the bounds: ``max < 0`` means no ID entry, ``min >= -1`` that every OOD
    entry is ``-1``.
    """
    if not (value_checks_enabled(target) and target.numel()):
        return None
    low, high = torch.aminmax(target)
    bounds = int(low), int(high)
    _check_below(owner, arg, target, bounds[1], num_classes)
    return bounds


def _check_below(owner: str, arg: str, target: Tensor, high: int, num_classes: int) -> None:
    if high >= num_classes:
        raise fail(
            owner,
            arg,
            f"a class index below {num_classes} (or negative for OOD)",
            f"the value {high} in {_describe(target)}",
        )


def fail_closed(scores: Tensor) -> Tensor:
    """Outlier ``scores`` with NaN and ``-inf`` replaced by ``+inf``, the most OOD score.

    Where value checks do not run (compiled, exported), a non-finite input can make a score NaN
    or ``-inf`` (``-max`` of a ``+inf`` logit); a scorer ends with this so such an input is
    never scored as in-distribution. Pure tensor code: it exports to ONNX.
    """
    bad = torch.isnan(scores) | (scores == -math.inf)
    return torch.where(bad, torch.full_like(scores, math.inf), scores)


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
    masks: bool = False,
) -> tuple[Tensor, Tensor]:
    """Check ``(B, C)`` or ``(B, C, H, W)`` scores against targets ``(B,)`` or ``(B, H, W)``.

    ``arg`` and ``target_arg`` are the names the caller's forward gives the two arguments.
    ``masks=True`` allows ``-inf`` logits as class masks (see :func:`check_float`), except at the
    target class of an ID entry. Returns the scores and the targets as int64.
    """
    checked = check_classification_bounds(
        owner, logits, target, arg=arg, ranks=ranks, target_arg=target_arg, masks=masks
    )
    return checked[0], checked[1]


def check_classification_bounds(
    owner: str,
    logits: object,
    target: object,
    *,
    arg: str = "logits",
    ranks: Sequence[int] = (2, 4),
    target_arg: str = "target",
    masks: bool = False,
) -> tuple[Tensor, Tensor, tuple[int, int] | None]:
    """:func:`check_classification`, also returning :func:`check_target_bounds` of the target."""
    logits, target = _check_pair(owner, logits, target, arg, ranks, target_arg)
    bounds = check_target_bounds(owner, target, logits.shape[1], arg=target_arg)
    _check_logit_values(owner, arg, logits, target, masks)
    return logits, target, bounds


def _check_pair(
    owner: str, logits: object, target: object, arg: str, ranks: Sequence[int], target_arg: str
) -> tuple[Tensor, Tensor]:
    """The free checks of :func:`check_classification`: types, ranks, shapes, int64 targets."""
    logits = check_float_shape(owner, arg, logits, ranks)
    target = check_tensor(owner, target_arg, target)
    if target.dim() >= 1 and logits.dim() >= 1 and target.shape[0] != logits.shape[0]:
        raise fail(
            owner,
            target_arg,
            f"a batch of {logits.shape[0]} to match {arg!r} {tuple(logits.shape)}",
            target,
        )
    shape = (logits.shape[0], *logits.shape[2:])
    return logits, check_target(owner, target, shape=shape, arg=target_arg)


def _check_logit_values(owner: str, arg: str, logits: Tensor, target: Tensor, masks: bool) -> None:
    if check_finite(owner, arg, logits, masks=masks) and target.numel():
        check_target_logits(owner, arg, logits, target)


def check_target_logits(owner: str, arg: str, logits: Tensor, target: Tensor) -> None:
    """Raise if the logit of an ID entry's target class is ``-inf`` (a masked class).

    Call only where value checks run and ``logits`` hold ``-inf`` (it reads values on the host).
    """
    index = torch.where(target >= 0, target, torch.zeros_like(target)).long().unsqueeze(1)
    at_target = logits.detach().gather(1, index).squeeze(1)
    if bool(((at_target == -math.inf) & (target >= 0)).any()):
        raise fail(
            owner,
            arg,
            "finite at the target class of every ID entry (a masked class cannot be the target)",
            f"-inf at the target class in {_describe(logits)}",
        )


def check_positive_int(owner: str, arg: str, value: object) -> int:
    """``value`` must be a positive ``int`` (not a bool); returns it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise fail(owner, arg, "a positive integer", repr(value))
    return value


def check_embedding(owner: str, arg: str, value: object, n_features: int) -> Tensor:
    """``value`` must be a floating ``(B, n_features)`` tensor without NaN (see ``check_float``)."""
    x = check_float(owner, arg, value, ranks=(2,))
    if x.shape[1] != n_features:
        raise fail(owner, arg, f"a tensor of shape (B, {n_features})", x)
    return x
