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
6. A scorer registered ``needs_fit`` by name is refused: fit it in Python and pass the module,
   or let :func:`fit_scorer` fit it on the model's outputs over input batches (``oodx export
   --fit-data``). A scorer taking ``head=`` gets the checkpoint's linear layer that maps the
   output it reads to the ``logits`` output (:func:`checkpoint_head`); without one it is
   refused with the Python way. Labels come with the batches, else (when the scorer needs
   them) from the model's predictions (argmax of its ``logits``).
7. A scorer registered ``exportable=False`` (gradient or stochastic methods: they take the
   model and its inputs, not one model output) is refused, by name or as a module; the error
   says why and names the exportable scorers the model's outputs can feed.
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


def check_exportable(
    info: Any, outputs: tuple[str, ...] | None, natural: str | None = None
) -> None:
    """Raise :class:`ResolveError` for a scorer registered ``exportable=False`` (rule 7).

    The alternatives named are the exportable scorers that ``outputs`` feed (``None``: any)
    and that need no loss state, except ``natural`` (the checkpoint's loss's own scorer).
    """
    if info.exportable:
        return
    from ood_core.registry import list_scorers

    why = "it needs gradients or several stochastic passes of the model"
    try:
        why = getattr(info.load(), "not_exportable_because", why)
    except OODXError:
        pass
    fed = [
        i.name
        for i in list_scorers()
        if i.exportable
        and (not i.needs_loss_state or i.name == natural)
        and (outputs is None or all(r in outputs for r in _as_tuple(i.reads)))
    ]
    what = f"the model outputs {', '.join(outputs)}" if outputs else "any model"
    raise ResolveError(
        f"scorer {info.name!r} cannot be exported: {why}, so it runs in PyTorch only "
        f"(ood_core.create_scorer({info.name!r}, model=model)); exportable scorers for "
        f"{what}: {', '.join(fed) or 'none installed'}"
    )


def resolve(checkpoint: Any, name: str | nn.Module | None = None, **kwargs: Any) -> Resolved:
    """Pick and build the scorer for ``checkpoint`` (see the module docstring for the rules)."""
    from ood_core.registry import get_info

    outputs = model_outputs(checkpoint)
    if isinstance(name, nn.Module):
        reads = getattr(name, "reads", "logits")
        registered = registration_of(name, kind="scorer")
        label = registered.name if registered is not None else type(name).__name__
        if registered is not None:
            check_exportable(registered, outputs, natural_scorer(checkpoint))
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
    check_exportable(info, outputs, natural_scorer(checkpoint))
    check_reads(info.name, info.reads, outputs)
    if info.needs_fit:
        raise ResolveError(
            f"scorer {info.name!r} must be fitted on training data first: scorer = "
            f"ood_core.create_scorer({info.name!r}, ...).fit(train_outputs), then pass the module "
            "(or fit it on model inputs: ood_core.resolve.fit_scorer(checkpoint, name, batches); "
            "CLI: oodx export CKPT --scorer NAME --fit-data ID.npy)"
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


def trained_outputs(roles: tuple[str, ...]) -> tuple[str, ...]:
    """The model outputs a loss with forward ``roles`` trains (:data:`ROLE_OUTPUT`, in order)."""
    return tuple(dict.fromkeys(ROLE_OUTPUT[r] for r in roles if r in ROLE_OUTPUT))


def check_pairing(
    loss: str | Any, scorer_name: str | None = None, *, registry: Any = None
) -> tuple[str, str | tuple[str, ...]]:
    """``(scorer name, reads)`` a model trained with ``loss`` gets, from registrations alone.

    Before any training: ``scorer_name`` (``None``: the loss's natural scorer) must read
    outputs the loss trains (:func:`trained_outputs`), must not need fitting, and a scorer
    registered ``needs_loss_state`` must be the loss's natural scorer (rules 2-6 of the module
    docstring); else :class:`ResolveError`. ``loss`` is a registered name or a ``LossInfo``;
    ``registry`` defaults to the process-wide one.
    """
    from ood_core.registry import get_registry

    reg = registry if registry is not None else get_registry()
    info = reg.get("loss", loss) if isinstance(loss, str) else loss
    name = scorer_name or info.scorer
    if not name:
        raise ResolveError(
            f"loss {info.name!r} names no natural scorer; name one, e.g. msp, energy or "
            "max-logit (`oodx scorers` lists them)"
        )
    scorer = reg.get("scorer", name)
    check_reads(scorer.name, scorer.reads, trained_outputs(tuple(info.inputs)))
    if scorer.needs_fit:
        raise ResolveError(
            f"scorer {scorer.name!r} must be fitted on training data first: scorer = "
            f"ood_core.create_scorer({scorer.name!r}, ...).fit(train_outputs), then pass the "
            "module"
        )
    if scorer.needs_loss_state and scorer.name != info.scorer:
        owners = [i.name for i in reg.items("loss") if i.scorer == scorer.name]
        raise ResolveError(
            f"scorer {scorer.name!r} needs state learned by its loss "
            f"({' or '.join(map(repr, owners)) or 'its training loss'}), but loss "
            f"{info.name!r} does not learn it; pick a scorer that needs no loss state"
        )
    return scorer.name, scorer.reads


def resolve_scorer(
    checkpoint: Any, name: str | nn.Module | None = None, **kwargs: Any
) -> nn.Module:
    """The scorer module for ``checkpoint``: :func:`resolve` without the bookkeeping."""
    return resolve(checkpoint, name, **kwargs).scorer


def checkpoint_head(checkpoint: Any, output: Mapping[str, Any], reads: str) -> nn.Module | None:
    """The checkpoint's classifier head: its linear layer mapping the ``reads`` output to the
    ``logits`` output, or ``None``.

    A checkpoint holds an exported program, not modules: every weight ``(C, D)`` of the program
    (with its bias ``(C,)``, if any), ``C``/``D`` the widths of ``logits``/``reads``, is tried
    on one batch of the model's ``output``; the first with ``W z + b == logits`` (to 1e-4 of the
    logits' scale) is the head, as an ``nn.Linear``.
    """
    import torch

    z, logits = output.get(reads), output.get("logits")
    if z is None or logits is None or z.dim() != 2 or logits.dim() != 2:
        return None
    state = checkpoint.model.state_dict()
    tol = 1e-4 * max(float(logits.abs().max()), 1.0)
    for key, w in state.items():
        if not key.endswith("weight") or tuple(w.shape) != (logits.shape[1], z.shape[1]):
            continue
        b = state.get(key[: -len("weight")] + "bias")
        b = b if b is not None and tuple(b.shape) == (w.shape[0],) else None
        head = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype)
        with torch.no_grad():
            head.weight.copy_(w)
            if b is not None:
                head.bias.copy_(b)
            if bool(((head(z.to(w.dtype)) - logits.to(w.dtype)).abs() <= tol).all()):
                return head.eval()
    return None


def _model_batches(checkpoint: Any, batches: Any) -> Any:
    """``(model output, labels or None)`` for each batch ``x`` or ``(x, y)`` of model inputs."""
    import torch

    example = checkpoint.example_input
    dtype = example.dtype if example is not None else torch.float32
    model = checkpoint.model.eval()
    for i, batch in enumerate(batches):
        x, y = batch if isinstance(batch, (tuple, list)) and len(batch) == 2 else (batch, None)
        try:
            x = torch.as_tensor(x).to(dtype)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ResolveError(f"fit data batch {i} is not a numeric array: {exc}") from None
        with torch.no_grad():
            out = model(x)
        yield out, (None if y is None else torch.as_tensor(y).long())


def _predicted_labels(name: str, out: Any) -> Any:
    """The model's class decision: argmax over dim 1 of its ``logits`` output."""
    logits = out.get("logits") if isinstance(out, Mapping) else out
    if logits is None:
        raise ResolveError(
            f"scorer {name!r} is fitted with class labels and the model outputs no logits to "
            "predict them: give the labels (fit batches (x, y); CLI --fit-labels Y.npy)"
        )
    return logits.argmax(dim=1)


def _head_kwargs(checkpoint: Any, info: Any, first: Any, kwargs: dict) -> dict:
    """``kwargs`` with ``head=`` the checkpoint's head, for a scorer taking one (rule 6)."""
    import inspect

    if any(k in kwargs for k in ("head", "w", "b")) or not isinstance(info.reads, str):
        return kwargs
    try:
        takes = "head" in inspect.signature(info.load()).parameters
    except (TypeError, ValueError):
        takes = False
    if not takes or not isinstance(first, Mapping):
        return kwargs
    head = checkpoint_head(checkpoint, first, info.reads)
    return kwargs if head is None else {**kwargs, "head": head}


def _create_fitting(info: Any, kwargs: dict) -> nn.Module:
    """``create_scorer``; a scorer needing a head the checkpoint cannot give says how to fit it."""
    from ood_core.registry import create_scorer

    try:
        return create_scorer(info.name, **kwargs)
    except ValueError as exc:
        if "head" in kwargs or "'head'" not in str(exc):
            raise
        raise ResolveError(
            f"scorer {info.name!r} needs the classifier head, and the checkpoint has no linear "
            f"layer mapping its {info.reads!r} output to its 'logits' output (the model must "
            "return both, the head being one nn.Linear). Fit it in Python: export_onnx(ckpt, "
            f"scorer=create_scorer({info.name!r}, head=model.fc).fit(features, labels), ...)"
        ) from None


def fit_scorer(checkpoint: Any, name: str, batches: Any, **kwargs: Any) -> Resolved:
    """Create the registered scorer ``name`` and fit it on ``checkpoint``'s model outputs.

    ``batches`` is an iterable of model inputs ``x`` or ``(x, y)`` (tensors or arrays); the
    model runs on each and the scorer fits, batch by batch, on the output(s) it reads. Labels:
    ``y`` when given, else the model's predictions for a scorer that needs labels (rule 6).
    ``source`` of the result says how many samples and where the labels came from.
    """
    from ood_core.registry import get_info

    info = get_info("scorer", name)
    outputs = model_outputs(checkpoint)
    check_exportable(info, outputs)
    check_reads(info.name, info.reads, outputs)
    if not info.needs_fit:
        raise ResolveError(f"scorer {info.name!r} is not fitted: export it without fit data")
    stream = _model_batches(checkpoint, batches)
    first = next(stream, None)
    if first is None:
        raise ResolveError(f"scorer {info.name!r}: the fit data holds no batches")
    created = _head_kwargs(checkpoint, info, first[0], dict(kwargs))
    scorer = _create_fitting(info, created)
    seen = {"given": 0, "predicted": 0, "samples": 0}

    def labelled() -> Any:
        import itertools

        for out, y in itertools.chain([first], stream):
            if y is None and scorer.fit_needs_labels:
                y = _predicted_labels(info.name, out)
                seen["predicted"] += 1
            seen["given"] += y is not None
            seen["samples"] += len(y) if y is not None else _rows(out, info.reads)
            yield out, y

    scorer.fit(labelled())
    how = (
        "labels: the model's predictions (argmax of its logits)"
        if seen["predicted"]
        else "labels given"
        if seen["given"]
        else "no labels"
    )
    head = ", head from the checkpoint" if "head" in created and "head" not in kwargs else ""
    source = f"fitted on {seen['samples']} samples ({how}{head})"
    return Resolved(scorer, info.name, source, info.reads, dict(kwargs))


def _rows(out: Any, reads: Any) -> int:
    from ood_core.outputs import select_output

    picked = select_output(out, reads)
    return int((picked[0] if isinstance(picked, tuple) else picked).shape[0])


__all__ = [
    "ResolveError",
    "Resolved",
    "check_exportable",
    "check_pairing",
    "check_reads",
    "checkpoint_head",
    "fit_scorer",
    "model_outputs",
    "natural_scorer",
    "resolve",
    "resolve_scorer",
    "trained_outputs",
]
