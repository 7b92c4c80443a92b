"""Models with several named outputs: pick what a scorer reads, tap named modules of a classifier.

A model may return one tensor or a dict of named outputs from :data:`OUTPUTS`. A scorer takes
the output(s) its ``reads`` names (:func:`select_output`). :func:`tap` gives a plain classifier
(backbone, ``avgpool``, ``fc``, torchvision style) named outputs without editing its class.
"""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ood_core.registry import MODEL_OUTPUTS

#: names a model's outputs may have
OUTPUTS = MODEL_OUTPUTS
#: outputs that are vectors per sample: a tapped (B, C, 1, 1) becomes (B, C)
_VECTOR_OUTPUTS = ("embedding", "features")

_capture: contextvars.ContextVar[tuple[str, dict[str, Tensor]] | None] = contextvars.ContextVar(
    "ood_core_tap_capture", default=None
)
_tokens = itertools.count()


def select_output(
    output: Tensor | Mapping[str, Tensor], reads: str | tuple[str, ...], *, owner: str = "scorer"
) -> Tensor | tuple[Tensor, ...]:
    """The entry (or, for a tuple ``reads``, the entries) of ``output`` a scorer reads.

    A single tensor is taken as the one output a model has (it can feed a scorer reading one
    output). A dict must hold every name in ``reads``; otherwise ``ValueError`` names what the
    model outputs.
    """
    names = (reads,) if isinstance(reads, str) else tuple(reads)
    if isinstance(output, Tensor):
        if len(names) != 1:
            raise ValueError(
                f"{owner} reads {', '.join(names)} but the model returns one tensor; return a "
                f"dict with keys {', '.join(names)} (see ood_core.tap)"
            )
        return output
    if not isinstance(output, Mapping):
        raise ValueError(
            f"{owner}: the model output must be a tensor or a dict of named outputs, got "
            f"{type(output).__name__}"
        )
    missing = [n for n in names if n not in output]
    if missing:
        raise ValueError(
            f"{owner} reads {', '.join(names)} but the model outputs {', '.join(map(str, output))}"
            f" (missing: {', '.join(missing)})"
        )
    picked = tuple(output[n] for n in names)
    return picked[0] if isinstance(reads, str) else picked


def _hook(token: str, name: str) -> Any:
    def hook(module: nn.Module, args: Any, out: Any) -> None:
        current = _capture.get()
        if current is not None and current[0] == token:
            current[1][name] = out

    return hook


class Tapped(nn.Module):
    """``model`` returning a dict: its own output as ``output`` plus the outputs of named modules.

    Built by :func:`tap`. Forward hooks on the tapped submodules record their outputs during
    this wrapper's forward only (outside it they do nothing); the wrapper exports with
    ``torch.export`` (the hooks run while tracing). ``model`` is the submodule ``model``, so
    its state-dict keys gain the prefix ``model.``.
    """

    def __init__(self, model: nn.Module, taps: Mapping[str, str], output: str = "logits") -> None:
        super().__init__()
        self.model = model
        self.taps = dict(taps)
        self.output = output
        self._token = f"tap-{next(_tokens)}"
        self._handles = []
        for name, path in self.taps.items():
            module = model.get_submodule(path)
            self._handles.append(module.register_forward_hook(_hook(self._token, name)))

    def forward(self, x: Any) -> dict[str, Tensor]:
        store: dict[str, Tensor] = {}
        reset = _capture.set((self._token, store))
        try:
            own = self.model(x)
        finally:
            _capture.reset(reset)
        out: dict[str, Tensor] = {}
        if self.output not in self.taps:
            out[self.output] = own
        for name, path in self.taps.items():
            value = store.get(name)
            if not isinstance(value, Tensor):
                raise RuntimeError(
                    f"tap: module {path!r} (output {name!r}) "
                    + ("did not run in forward" if value is None else "did not return a tensor")
                )
            out[name] = value.flatten(1) if name in _VECTOR_OUTPUTS else value
        return out

    def remove(self) -> None:
        """Remove the hooks from the tapped modules (the wrapper then fails in forward)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def tap(model: nn.Module, *, output: str = "logits", **taps: str) -> Tapped:
    """Wrap ``model`` so it returns ``{output: model(x), name: module output, ...}``.

    ``taps`` map an output name from :data:`OUTPUTS` to the dotted name of a submodule (as in
    ``model.named_modules()``), e.g. ``tap(resnet, features="avgpool")`` gives ``logits`` (the
    model's own output) and ``features`` (``avgpool``'s output flattened to ``(B, C)``;
    ``features`` and ``embedding`` are flattened from dim 1, ``feature_maps`` keep their
    shape). Tapping ``output`` itself (``logits="fc"``) replaces the model's own output.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"tap: argument 'model' must be an nn.Module, got {type(model).__name__}")
    if output not in OUTPUTS:
        raise ValueError(f"tap: argument 'output' must be one of {OUTPUTS}, got {output!r}")
    if not taps:
        raise ValueError("tap: name at least one module, e.g. tap(model, features='avgpool')")
    modules = dict(model.named_modules())
    for name, path in taps.items():
        if name not in OUTPUTS:
            raise ValueError(f"tap: output name {name!r} is not one of {OUTPUTS}")
        if not isinstance(path, str) or not path or path not in modules:
            known = ", ".join(n for n in modules if n)
            raise ValueError(
                f"tap: {name}={path!r} does not name a submodule of {type(model).__name__}; "
                f"submodules: {known}"
            )
    return Tapped(model, taps, output)


__all__ = ["OUTPUTS", "Tapped", "select_output", "tap"]
