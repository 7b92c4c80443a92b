"""Which scorer a saved model gets: the one place that decides (export, demo, listing call it).

Rules, in order:

1. ``name`` may be a scorer module (already built or fitted): it is used as given.
2. No ``name``: the natural scorer of the checkpoint's loss (the manifest records it; else the
   loss's registration). A checkpoint without a loss has none: the caller must name one.
3. The scorer's ``reads`` must be outputs the model produces (:func:`model_outputs`); else
   :class:`ResolveError` names what the model outputs.
4. A scorer registered ``needs_loss_state`` comes from the checkpoint's loss: the loss is
   rebuilt with its saved state and its ``scorer(**kwargs)`` is called. That loss's natural
   scorer must be this one; otherwise the error names the losses that provide it.
5. The natural scorer of a checkpoint with a loss, without ``kwargs``, is ``loss.scorer()``
   (it may carry the loss's settings); anything else is ``create_scorer(name, **kwargs)``.
6. A scorer registered ``needs_fit`` by name is refused: fit it in Python and pass the module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ood_core.errors import OODXError
from ood_core.loss import ROLE_OUTPUT, registration_of


class ResolveError(OODXError, ValueError):
    """The checkpoint cannot get the requested scorer (the message says why and what to do)."""


@dataclass(frozen=True)
class Resolved:
    """A scorer picked for a checkpoint: the module, its registered name, how it was obtained
    (``source``, in words) and what it reads."""

    scorer: nn.Module
    name: str
    source: str
    reads: str | tuple[str, ...]
    #: the keywords the scorer was created with (empty for a given module or a loss's default)
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def _as_tuple(reads: str | tuple[str, ...]) -> tuple[str, ...]:
    return (reads,) if isinstance(reads, str) else tuple(reads)


def model_outputs(checkpoint: Any) -> tuple[str, ...] | None:
    """Names of the outputs the checkpoint's model produces, or ``None`` when unknown.

    A dict output gives its keys. A single tensor is what the loss trained on: the model output
    behind the first role of the loss's ``inputs`` (``distances`` are computed from the
    ``embedding``); without a loss it is taken to be ``logits`` (a classifier).
    """
    described = (checkpoint.metadata.get("model") or {}).get("output")
    if isinstance(described, Mapping) and described.get("kind") == "dict":
        return tuple(described.get("keys") or ())
    if isinstance(described, Mapping) and described.get("kind") not in (None, "tensor"):
        return None
    roles = _loss_roles(checkpoint)
    for role in roles:
        if role in ROLE_OUTPUT:
            return (ROLE_OUTPUT[role],)
    return ("logits",) if not checkpoint.loss_name else None


def _loss_roles(checkpoint: Any) -> tuple[str, ...]:
    if not checkpoint.loss_name:
        return ()
    from ood_core.registry import get_info

    try:
        return tuple(get_info("loss", checkpoint.loss_name).inputs)
    except OODXError:
        return ()


def natural_scorer(checkpoint: Any) -> str | None:
    """The registered name of the checkpoint's loss's natural scorer, or ``None``."""
    name = (checkpoint.loss_info or {}).get("scorer")
    if name or not checkpoint.loss_name:
        return name or None
    from ood_core.registry import get_info

    try:
        return get_info("loss", checkpoint.loss_name).scorer or None
    except OODXError:
        return None


def check_reads(scorer_name: str, reads: str | tuple[str, ...], outputs: Any) -> None:
    """Raise :class:`ResolveError` unless ``outputs`` (names, or ``None``: unknown) feed ``reads``."""
    if outputs is None or reads == "inputs":
        return
    missing = [r for r in _as_tuple(reads) if r not in outputs]
    if missing:
        raise ResolveError(
            f"scorer {scorer_name!r} reads {', '.join(_as_tuple(reads))} but the model outputs "
            f"{', '.join(outputs) or 'nothing named'}; pick a scorer that reads "
            f"{' or '.join(outputs)}, or save a model that returns a dict with "
            f"{', '.join(missing)} (see ood_core.tap)"
        )


def resolve(checkpoint: Any, name: str | nn.Module | None = None, **kwargs: Any) -> Resolved:
    """Pick and build the scorer for ``checkpoint`` (see the module docstring for the rules)."""
    from ood_core.registry import get_info

    outputs = model_outputs(checkpoint)
    if isinstance(name, nn.Module):
        reads = getattr(name, "reads", "logits")
        registered = registration_of(name, kind="scorer")
        label = registered.name if registered is not None else type(name).__name__
        check_reads(label, reads, outputs)
        return Resolved(name, label, "given module", reads)
    if name is None:
        name = natural_scorer(checkpoint)
        if name is None:
            raise ResolveError(
                "the checkpoint names no natural scorer (it was saved without a loss); name "
                "one, e.g. msp, energy or max-logit (`oodx scorers` lists them)"
            )
    if not isinstance(name, str):
        raise TypeError(
            f"resolve_scorer: argument 'name' must be a str or a scorer module, got {name!r}"
        )
    info = get_info("scorer", name)
    check_reads(info.name, info.reads, outputs)
    if info.needs_fit:
        raise ResolveError(
            f"scorer {info.name!r} must be fitted on training data first: scorer = "
            f"ood_core.create_scorer({info.name!r}, ...).fit(train_outputs), then pass the module"
        )
    natural = natural_scorer(checkpoint)
    if info.needs_loss_state or (natural == info.name and checkpoint.loss_name and not kwargs):
        return _from_loss(checkpoint, info, natural, kwargs)
    from ood_core.registry import create_scorer

    scorer = create_scorer(info.name, **kwargs)
    return Resolved(scorer, info.name, "created by name", info.reads, dict(kwargs))


def _from_loss(checkpoint: Any, info: Any, natural: str | None, kwargs: dict) -> Resolved:
    """The scorer from the checkpoint's rebuilt loss (``loss.scorer(**kwargs)``)."""
    if natural != info.name or not checkpoint.loss_name:
        from ood_core.registry import list_losses

        owners = [i.name for i in list_losses() if i.scorer == info.name]
        have = f"its loss is {checkpoint.loss_name!r}" if checkpoint.loss_name else "it has no loss"
        raise ResolveError(
            f"scorer {info.name!r} needs state learned by its loss "
            f"({' or '.join(map(repr, owners)) or 'its training loss'}), but the checkpoint has "
            f"no such state ({have}). Save the model with ood_core.save(path, model, "
            "loss=criterion, example_input=x), or pick a scorer that needs no loss state"
        )
    loss = checkpoint.build_loss()
    try:
        scorer = loss.scorer(**kwargs)
    except TypeError as exc:
        raise ResolveError(
            f"{type(loss).__name__}.scorer() does not take {kwargs}: {exc}"
        ) from None
    reads = getattr(scorer, "reads", info.reads)
    source = f"from the trained loss {checkpoint.loss_name!r}"
    return Resolved(scorer, info.name, source, reads, dict(kwargs))


def resolve_scorer(
    checkpoint: Any, name: str | nn.Module | None = None, **kwargs: Any
) -> nn.Module:
    """The scorer module for ``checkpoint``: :func:`resolve` without the bookkeeping."""
    return resolve(checkpoint, name, **kwargs).scorer


__all__ = [
    "ResolveError",
    "Resolved",
    "check_reads",
    "model_outputs",
    "natural_scorer",
    "resolve",
    "resolve_scorer",
]
