"""Test cases the conformance kit runs: what to build and how to feed it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

#: Batch compositions the kit feeds: ID and OOD mixed, only ID, only OOD, empty.
MODES = ("mixed", "id", "ood", "empty")


@dataclass(frozen=True)
class InputSpec:
    """What one generated batch looks like; passed to a case's ``make_inputs``."""

    batch: int
    task: str = "classification"
    dtype: torch.dtype = torch.float32
    device: str | torch.device = "cpu"
    mode: str = "mixed"
    num_classes: int = 4
    dim: int = 8
    spatial: tuple[int, int] = (5, 6)
    seed: int = 0

    def replace(self, **changes: Any) -> InputSpec:
        from dataclasses import replace

        return replace(self, **changes)


@dataclass
class LossCase:
    """A loss to check: its registered ``name``, constructor ``kwargs`` and input sizes.

    ``num_classes`` and ``dim`` must agree with ``kwargs`` (for example ``n_classes``/``n_dim``).
    ``make_inputs(spec) -> tuple`` overrides the generated forward arguments; the default builds
    them from the registration's ``inputs`` (see :func:`default_inputs`). ``deterministic=False``
    tells the kit that two forward calls on equal state may differ (random sampling), so the
    compiled and reloaded results are compared for finiteness only. ``skip`` maps a check name to
    the reason it does not apply; the reason is shown in the test report.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 4
    dim: int = 8
    make_inputs: Callable[[InputSpec], tuple[Any, ...]] | None = None
    tasks: tuple[str, ...] | None = None
    deterministic: bool = True
    skip: dict[str, str] = field(default_factory=dict)
    atol: float = 1e-5
    rtol: float = 1e-4
    id: str | None = None

    def __str__(self) -> str:
        return self.id or self.name


@dataclass
class ScorerCase:
    """A scorer to check: created by name, or from a loss (``from_loss``) via ``loss.scorer()``.

    ``fit(scorer, spec)`` is called for scorers that must be fitted before scoring.
    ``make_inputs(spec)`` returns the scorer's forward argument: a tensor ``(B, ...)`` or a tuple
    of tensors of one batch size (the layers of a multi-layer scorer); the default is built from
    the registration's ``reads`` by :func:`scorer_input`.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 4
    dim: int = 8
    from_loss: LossCase | None = None
    fit: Callable[[Any, InputSpec], None] | None = None
    make_inputs: Callable[[InputSpec], Any] | None = None
    tasks: tuple[str, ...] | None = None
    skip: dict[str, str] = field(default_factory=dict)
    atol: float = 1e-5
    rtol: float = 1e-4
    id: str | None = None

    def __str__(self) -> str:
        return self.id or self.name


def make_target(spec: InputSpec, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Integer targets of ``shape``: classes ``0..C-1``, with ``-1`` (OOD) per ``spec.mode``."""
    target = torch.randint(0, spec.num_classes, shape, generator=generator)
    if spec.mode == "ood":
        target = torch.full(shape, -1, dtype=torch.long)
    elif spec.mode == "mixed" and target.numel():
        ood = torch.rand(shape, generator=generator) < 0.35
        flat = ood.reshape(-1)
        flat[0], flat[-1] = False, True  # at least one ID and one OOD entry
        target = torch.where(ood, torch.full_like(target, -1), target)
    return target.to(spec.device)


def make_float(
    spec: InputSpec, shape: tuple[int, ...], generator: torch.Generator, scale: float = 3.0
) -> Tensor:
    """Standard normal values times ``scale`` in ``spec.dtype``, requiring grad."""
    x = torch.randn(shape, generator=generator) * scale
    return x.to(device=spec.device, dtype=spec.dtype).requires_grad_(True)


def default_inputs(spec: InputSpec, names: tuple[str, ...]) -> tuple[Any, ...]:
    """Forward arguments with the roles ``names`` (:data:`ood_core.loss.ROLES`) for ``spec``.

    ``logits`` are ``(B, C)`` or ``(B, C, H, W)``; ``embedding``/``features`` are ``(B, D)`` or
    ``(B, D, H, W)``; ``distances`` are non-negative ``(B, C)``; ``confidence`` is ``(B, 1)`` in
    ``(0, 1)``; ``target`` are class indices ``(B,)`` or ``(B, H, W)`` with ``-1`` for OOD.
    Anything else needs a case's ``make_inputs``.
    """
    generator = torch.Generator().manual_seed(spec.seed)
    batch = 0 if spec.mode == "empty" else spec.batch
    spatial = spec.spatial if spec.task == "segmentation" else ()
    out: list[Any] = []
    for name in names:
        if name == "logits":
            out.append(make_float(spec, (batch, spec.num_classes, *spatial), generator))
        elif name in ("embedding", "features"):
            out.append(make_float(spec, (batch, spec.dim, *spatial), generator, scale=1.0))
        elif name == "target":
            out.append(make_target(spec, (batch, *spatial), generator))
        elif name == "distances":
            d = torch.randn(batch, spec.num_classes, generator=generator) ** 2 * 2.0
            out.append(d.to(device=spec.device, dtype=spec.dtype).requires_grad_(True))
        elif name == "confidence":
            c = 0.05 + 0.9 * torch.rand(batch, 1, generator=generator)
            out.append(c.to(device=spec.device, dtype=spec.dtype).requires_grad_(True))
        else:
            raise ValueError(
                f"the conformance kit cannot generate a forward argument with the role {name!r} "
                f"(roles: logits, embedding, features, distances, confidence, target); give the "
                "case a make_inputs(spec) function"
            )
    return tuple(out)


def scorer_input(spec: InputSpec, reads: Any) -> Tensor:
    """The default forward argument of a scorer that ``reads`` one model output, ``spec.mode``
    ignored (all ID): ``logits`` ``(B, C)``; ``feature_maps`` ``(B, D, H, W)`` for every task
    (``H, W = spec.spatial``); other outputs ``(B, D)``, or ``(B, D, H, W)`` for segmentation.
    """
    if reads == "feature_maps":
        generator = torch.Generator().manual_seed(spec.seed)
        x = make_float(spec, (spec.batch, spec.dim, *spec.spatial), generator, scale=1.0)
    else:
        name = "logits" if reads == "logits" else "embedding"
        (x,) = default_inputs(spec.replace(mode="id"), (name,))
    return x.detach()
