"""oodx checkpoints: one file holding the model as a ``torch.export`` program, the loss and metadata.

A checkpoint is a PT2 archive (the zip that :func:`torch.export.save` writes, so
``torch.export.load`` reads it as well) with an extra folder ``<root>/oodx/``:

- ``oodx/manifest.json``: format name and version, creation time, torch/ood-core/python versions,
  the model's input shape (batch dimension ``null``) and dtype and its output (a tensor, or a
  dict whose keys are the output names), the loss (registered name, class,
  constructor keywords, how the keywords were found, the registration's plugin/distribution/
  version and natural scorer), class names, the plugin distributions the file needs, ``extra``;
- ``oodx/tensors/<i>.bin``: the loss's ``state_dict`` tensors as raw little-endian bytes, with
  dtype and shape in the manifest (no pickle at all).

Loading runs no code from the file: :mod:`ood_core.archive` checks the archive against an
allow-list and schemas first, and the program is rebuilt from the checked members with plain
tensors (``torch.export.load`` is never called; the example inputs go through torch's
``weights_only`` unpickler, which builds tensors only). Plain ``torch.save(module)`` pickles are
refused unless ``trust_pickle=True``.

The loss is saved by its registered name, found by comparing its class's ``module:qualname``
with the registered targets (no plugin is imported), and its constructor keywords: those of
``loss.get_config()`` (an :class:`ood_core.Loss` records its constructor call), or the
``loss_kwargs`` given to :func:`save`, which override it. A loss that is not an
``ood_core.Loss`` must be given ``loss_kwargs``; nothing is guessed from attributes.
:func:`save` rebuilds the loss from name + keywords and loads the state into it before writing:
a checkpoint whose loss would not rebuild is never written. A model loaded from a checkpoint
saves again (its manifest keeps the original model class).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import logging
import math
import os
import platform
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.archive import FORMAT, FORMAT_VERSION, ITEM_SIZES, MANIFEST, Archive, open_archive
from ood_core.archive import TENSOR_DIR as _TENSOR_DIR
from ood_core.atomic import replace_atomically, temp_file_beside
from ood_core.errors import CheckpointError

_MIN_TRACE_BATCH = 2


# --------------------------------------------------------------------------------------------
# the loaded checkpoint


class ExportedModel(nn.Module):
    """A ``torch.export`` program as a module that is always in eval mode.

    ``ExportedProgram.module()`` refuses ``.train()`` and ``.eval()``; this wrapper accepts
    ``.eval()`` (a no-op: the program was traced in eval mode) so inference code written for
    ordinary modules works, and explains why ``.train()`` cannot work.
    """

    def __init__(self, graph_module: nn.Module, source_class: str | None = None) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.source_class = source_class  # the saved model's class, kept when saved again
        self.training = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.graph_module(*args, **kwargs)

    def train(self, mode: bool = True) -> ExportedModel:
        if mode:
            raise RuntimeError(
                "this model was loaded from an exported program traced in eval mode; it cannot "
                "be switched to training mode. Train the original model and save it again."
            )
        return self


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    ``model`` is a runnable ``nn.Module`` (an :class:`ExportedModel` around the exported program,
    always in eval mode, or the unpickled module with ``trust_pickle=True``); ``loss_name``/``loss_kwargs``/``loss_state`` describe the training loss
    (``None``/``{}`` when the file has none); ``metadata`` is the manifest.
    """

    model: nn.Module
    loss_name: str | None = None
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    loss_state: dict[str, Tensor] = field(default_factory=dict)
    classes: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    program: Any = None  # torch.export.ExportedProgram when the model came from one
    source: str = "oodx"  # "oodx", "pt2" (plain torch.export.save) or "pickle"

    @property
    def example_input(self) -> Tensor | None:
        """The input the model was traced with (batch >= 2), when the file carries one."""
        if self.program is None:
            return None
        args = getattr(self.program, "example_inputs", None)
        if not args or not args[0]:
            return None
        first = args[0][0]
        return first if isinstance(first, Tensor) else None

    @property
    def input_shape(self) -> list[int | None] | None:
        """Input shape with ``None`` for the (dynamic) batch dimension, when known."""
        shape = self.metadata.get("model", {}).get("input_shape")
        if shape is not None:
            return list(shape)
        x = self.example_input
        return None if x is None else [None, *x.shape[1:]]

    @property
    def loss_info(self) -> dict[str, Any]:
        """The manifest's ``loss`` entry (``{}`` when the checkpoint has no loss)."""
        return dict(self.metadata.get("loss") or {})

    def build_loss(self) -> nn.Module:
        """The training loss rebuilt with ``create_loss(name, **kwargs)`` and its saved state."""
        if self.loss_name is None:
            where = f" {self.path}" if self.path else ""
            raise CheckpointError(
                f"checkpoint{where} has no loss: it was saved without `loss=` "
                f"(source: {self.source}). Save it with ood_core.save(path, model, loss=criterion, "
                "example_input=...) to keep the loss and its state."
            )
        return _rebuild_loss(self.loss_name, self.loss_kwargs, self.loss_state)

    def __repr__(self) -> str:
        return (
            f"Checkpoint(path={str(self.path)!r}, source={self.source!r}, "
            f"loss={self.loss_name!r}, input_shape={self.input_shape}, classes={self.classes})"
        )


# --------------------------------------------------------------------------------------------
# saving


def save(
    path: str | os.PathLike[str],
    model: nn.Module,
    loss: nn.Module | None = None,
    example_input: Any = None,
    classes: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
    *,
    loss_kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (and ``loss``) to one self-contained checkpoint file at ``path``.

    ``model`` is exported with :func:`torch.export.export` in eval mode with a dynamic batch
    dimension, traced with ``example_input`` (a tensor or array; a batch of 1 is repeated to 2);
    it may return a tensor or a dict of named outputs (see :func:`ood_core.tap`), and a model
    loaded from a checkpoint saves again. ``loss`` must be a registered oodx loss: its name
    comes from its class's registration, its constructor keywords from ``get_config()`` (or
    ``loss_kwargs``, see the module docstring), and its ``state_dict`` is stored. ``classes``
    are class names, ``extra`` any JSON-serialisable metadata. The file is written to a
    temporary file in the same folder and moved into place. Returns the path written.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"save: argument 'model' must be a torch.nn.Module, got {type(model)!r}")
    if example_input is None:
        raise TypeError(
            "save: argument 'example_input' is required: a batch of inputs such as the model "
            "sees in training (it fixes the input shape; the batch dimension stays dynamic)"
        )
    x = _example_tensor(example_input)
    target = Path(path)
    if target.is_dir():
        raise CheckpointError(f"save: {target} is a folder; give a file name such as model.pt")
    program = _export_model(model, x)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "ood_core": _ood_core_version(),
        "python": platform.python_version(),
        "model": {
            "class": _model_class(model),
            "input_shape": [None, *map(int, x.shape[1:])],
            "input_dtype": str(x.dtype).removeprefix("torch."),
            "output": _describe_output(program.module()(x)),
        },
    }
    plugins = {"ood-core": _ood_core_version()}
    tensors: dict[str, Tensor] = {}
    manifest["loss"] = None if loss is None else _loss_entry(loss, loss_kwargs, tensors)
    if manifest["loss"] and manifest["loss"]["distribution"]:
        plugins[manifest["loss"]["distribution"]] = manifest["loss"]["version"]
    manifest["classes"] = None if classes is None else [str(c) for c in classes]
    manifest["plugins"] = plugins
    manifest["extra"] = dict(extra or {})
    _write(target, program, _manifest_text(manifest), tensors)
    return target


def _model_class(model: nn.Module) -> str:
    """``module.qualname`` of ``model``; a loaded checkpoint's model keeps its original class."""
    if isinstance(model, ExportedModel) and model.source_class:
        return model.source_class
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as JSON, checked by the schema :func:`load` applies (never write what
    load would refuse)."""
    from ood_core.archive import check_manifest

    try:
        text = json.dumps(manifest, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"save: metadata must be JSON-serialisable (check `extra` and the loss keywords): {exc}"
        ) from None
    check_manifest(json.loads(text), lambda what: CheckpointError(f"save: manifest: {what}"))
    return text


def _write(target: Path, program: Any, manifest_text: str, tensors: Mapping[str, Tensor]) -> None:
    """The PT2 archive plus ``oodx/``, written beside ``target`` and moved into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_file_beside(target)  # mode as open() gives it, not mkstemp's 0600
    try:
        with open(tmp, "wb") as f:
            torch.export.save(program, f)
        with zipfile.ZipFile(tmp, "a") as zf:
            root = _root(zf.namelist())
            zf.writestr(f"{root}/{MANIFEST}", manifest_text)
            for name, value in tensors.items():
                zf.writestr(f"{root}/{name}", _tensor_bytes(value))
        replace_atomically(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _loss_entry(
    loss: nn.Module, given: Mapping[str, Any] | None, tensors: dict[str, Tensor]
) -> dict[str, Any]:
    """The manifest's ``loss`` entry; the state tensors are added to ``tensors``.

    The loss is rebuilt from name + keywords and given the state before anything is written:
    a checkpoint whose loss would not rebuild is never written.
    """
    info = _registration_of(loss)
    kwargs, how = _loss_kwargs(loss, given)
    state = {k: v.detach().cpu() for k, v in loss.state_dict().items()}
    try:
        _rebuild_loss(info.name, kwargs, state)
    except CheckpointError as exc:
        raise CheckpointError(
            f"save: the loss {info.name!r} would not rebuild from the checkpoint: {exc} "
            f"(keywords from {how}: {kwargs}). Pass the constructor keywords explicitly: "
            "ood_core.save(..., loss_kwargs={...})."
        ) from None
    entry: dict[str, Any] = {
        "name": info.name,
        "class": f"{type(loss).__module__}.{type(loss).__qualname__}",
        "kwargs": kwargs,
        "kwargs_from": how,
        "plugin": info.plugin,
        "distribution": info.distribution,
        "version": info.version,
        "scorer": info.scorer,
        "state": {},
    }
    for key, value in state.items():
        name = f"{_TENSOR_DIR}{len(tensors)}.bin"
        entry["state"][key] = {
            "file": name,
            "dtype": str(value.dtype).removeprefix("torch."),
            "shape": list(value.shape),
        }
        tensors[name] = value
    return entry


def _example_tensor(example_input: Any) -> Tensor:
    if isinstance(example_input, (tuple, list)) and len(example_input) == 1:
        example_input = example_input[0]
    if not isinstance(example_input, Tensor):
        try:
            example_input = torch.as_tensor(example_input)
        except Exception as exc:  # noqa: BLE001 - anything not array-like
            raise TypeError(
                "save: argument 'example_input' must be a tensor or array of inputs, "
                f"got {type(example_input).__name__}"
            ) from exc
    x = example_input.detach()
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(
            "save: argument 'example_input' must be a batch (first dimension >= 1), "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[0] < _MIN_TRACE_BATCH:  # a batch of 1 would be specialised by the tracer
        x = x.repeat(_MIN_TRACE_BATCH, *([1] * (x.dim() - 1)))
    return x[:_MIN_TRACE_BATCH].contiguous()


def _export_model(model: nn.Module, x: Tensor) -> Any:
    """``torch.export`` program of ``model`` in eval mode, batch dimension of ``x`` dynamic.

    The dynamic dimension is attached to the example tensor itself (a ``ShapesCollection``),
    not to a parameter name, so any forward signature works: a module's ``forward(x)`` as well
    as a loaded checkpoint's ``forward(*args)``.
    """
    from torch.export import Dim, ShapesCollection

    shapes = ShapesCollection()
    shapes[x] = {0: Dim("batch", min=1, max=1 << 30)}
    was_training = model.training
    model.eval()
    try:
        return torch.export.export(
            model, (x,), dynamic_shapes=shapes.dynamic_shapes(model, (x,)), strict=False
        )
    except Exception as exc:  # noqa: BLE001 - the tracer may raise many kinds of errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"save: torch.export could not trace {type(model).__name__} with a dynamic batch "
            f"dimension (example input of shape {tuple(x.shape)}): {type(exc).__name__}: "
            f"{reason}. The model must be exportable (no data-dependent Python control flow, "
            "no branching on the batch size)."
        ) from exc
    finally:
        model.train(was_training)


def _describe_output(out: Any) -> Any:
    """Kind and shape of the model's output; a dict's keys are the output names (what
    :func:`ood_core.resolve.model_outputs` reads)."""
    if isinstance(out, Tensor):
        return {"kind": "tensor", "shape": [None, *map(int, out.shape[1:])]}
    if isinstance(out, Mapping):
        return {"kind": "dict", "keys": {str(k): _describe_output(v) for k, v in out.items()}}
    if isinstance(out, (tuple, list)):
        return {"kind": "tuple", "items": [_describe_output(v) for v in out]}
    return {"kind": type(out).__name__}


def _ood_core_version() -> str:
    from ood_core import __version__

    return __version__


def _registration_of(loss: nn.Module) -> Any:
    """The loss's registration, found by its class's ``module:qualname`` (no plugin imported)."""
    from ood_core.loss import registration_of

    info = registration_of(loss)
    if info is None:
        raise CheckpointError(
            f"save: the loss {type(loss).__module__}.{type(loss).__qualname__} is not a "
            "registered oodx loss, so the checkpoint could not rebuild it. Register it through a "
            "plugin (`oodx plugins` lists what is installed) or save without `loss=`."
        )
    return info


def _jsonable(value: Any) -> tuple[bool, Any]:
    """``(ok, value)`` with scalar tensors turned into numbers and tuples into lists."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            return False, None
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return False, None
    if value is None or isinstance(value, (bool, int, float, str)):
        return True, value
    if isinstance(value, (tuple, list)):
        items = [_jsonable(v) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        items = {k: _jsonable(v) for k, v in value.items()}
        return all(ok for ok, _ in items.values()), {k: v for k, (_, v) in items.items()}
    return False, None


def _loss_kwargs(loss: nn.Module, given: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    """Constructor keywords of ``loss`` and where they came from: ``loss_kwargs`` if given,
    else ``get_config()`` of an :class:`ood_core.Loss`; any other module is refused."""
    from ood_core.loss import Loss

    owner = type(loss).__name__
    if given is not None:
        source, how = dict(given), "loss_kwargs"
    elif isinstance(loss, Loss):
        try:
            source, how = loss.get_config(), "get_config()"
        except TypeError as exc:
            raise CheckpointError(
                f"save: {exc}. Pass the constructor keywords: ood_core.save(..., "
                "loss_kwargs={...})"
            ) from None
    else:
        raise CheckpointError(
            f"save: the loss {type(loss).__module__}.{type(loss).__qualname__} is not an "
            "ood_core.Loss, so its constructor keywords are unknown. Derive it from "
            "ood_core.Loss (get_config() then records them), or pass them: "
            "ood_core.save(..., loss_kwargs={...})"
        )
    ok, kwargs = _jsonable(source)
    if not ok or not isinstance(kwargs, dict):
        raise CheckpointError(
            f"save: the constructor keywords of {owner} (from {how}) must be JSON values "
            f"(numbers, strings, lists, dicts; no NaN), got {source!r}"
        )
    return kwargs, how


def _rebuild_loss(name: str, kwargs: Mapping[str, Any], state: Mapping[str, Tensor]) -> nn.Module:
    from ood_core.errors import OODXError
    from ood_core.registry import create_loss

    try:
        loss = create_loss(name, **kwargs)
    except OODXError as exc:
        raise CheckpointError(f"cannot create loss {name!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"create_loss({name!r}, **{dict(kwargs)}) failed: {exc}") from None
    own = loss.state_dict()
    wrong = [
        f"{k}: saved {tuple(v.shape)}, rebuilt {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(own[k].shape) != tuple(v.shape)
    ]
    if wrong or set(own) != set(state):
        raise CheckpointError(
            f"the state of loss {name!r} does not fit the loss built from its keywords "
            f"{dict(kwargs)}: missing {sorted(set(own) - set(state))}, unexpected "
            f"{sorted(set(state) - set(own))}, shape mismatches {wrong}"
        )
    loss.load_state_dict(dict(state))
    return loss


def _tensor_bytes(t: Tensor) -> bytes:
    flat = t.detach().cpu().contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    if sys.byteorder != "little" and flat.element_size() > 1:  # pragma: no cover
        raise CheckpointError("save: big-endian hosts are not supported")
    return flat.view(torch.uint8).numpy().tobytes()


def _tensor_from_bytes(data: bytes, dtype_name: str, shape: Sequence[int]) -> Tensor:
    dtype = getattr(torch, dtype_name, None)
    if not isinstance(dtype, torch.dtype):
        raise CheckpointError(f"unknown tensor dtype {dtype_name!r} in the manifest")
    numel = math.prod(shape)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(data) != numel * itemsize:
        raise CheckpointError(
            f"tensor data of {len(data)} bytes does not fit dtype {dtype_name} and shape "
            f"{list(shape)}"
        )
    if numel == 0:
        return torch.empty(list(shape), dtype=dtype)
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return raw.view(dtype).reshape(list(shape)).clone()


# --------------------------------------------------------------------------------------------
# loading


def load(path: str | os.PathLike[str], trust_pickle: bool = False) -> Checkpoint:
    """Load a checkpoint written by :func:`save` (or a ``torch.export.save`` ``.pt2`` file).

    A PT2 archive is checked by :func:`ood_core.archive.open_archive` (allow-list of members,
    sizes, manifest schema, program grammar) and then rebuilt from the checked members without
    ``torch.export.load``: no pickle, no native code, no fallback format. ``trust_pickle=True``
    only opens the other door, a plain ``torch.save(module)`` pickle (unpickling runs code from
    the file: only for files you trust); it never relaxes the checks on a PT2 archive. Missing,
    truncated, corrupted, foreign or refused files raise :class:`~ood_core.errors.CheckpointError`.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a folder, not a file")
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {p}: {exc}") from None
    if not head:
        raise CheckpointError(f"checkpoint {p} is empty (0 bytes)")
    if head[:2] != b"PK":
        if head[:1] == b"\x80":  # pickle protocol marker: legacy torch.save
            return _load_pickle(p, trust_pickle, "a legacy torch.save pickle")
        raise CheckpointError(
            f"{p} is not an oodx checkpoint (unknown format: it is not a zip archive). "
            "Write checkpoints with ood_core.save(path, model, loss=..., example_input=...)."
        )
    kind = _zip_kind(p)
    if kind == "pickle":
        return _load_pickle(p, trust_pickle, "a torch.save pickle")
    if kind != "pt2":
        raise CheckpointError(
            f"{p} is a zip archive but not an oodx checkpoint (no {MANIFEST}, no PT2 archive). "
            "Write checkpoints with ood_core.save(path, model, loss=..., example_input=...)."
        )
    arc = open_archive(p)
    try:
        return _load_checked(arc)
    finally:
        arc.close()


def _root(names: Sequence[str]) -> str:
    roots = {n.split("/", 1)[0] for n in names if "/" in n}
    return next(iter(roots)) if len(roots) == 1 else ""


def _zip_kind(p: Path) -> str:
    """``"pt2"`` (any ``archive_format`` member), ``"pickle"`` (a torch.save zip) or ``"other"``."""
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise CheckpointError(
            f"checkpoint {p} is truncated or corrupted (its zip directory is unreadable); "
            "it was probably cut short while copying or writing. Save or copy it again."
        ) from None
    if any(n == "archive_format" or n.endswith("/archive_format") for n in names):
        return "pt2"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "pickle"
    return "other"


def _load_checked(arc: Archive) -> Checkpoint:
    manifest = arc.manifest
    program = _rebuild_program(arc, manifest)
    try:
        module = ExportedModel(program.module())
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"checkpoint {arc.path}: cannot build the model module: {exc}"
        ) from None
    ckpt = Checkpoint(model=module, path=arc.path, program=program, source="pt2")
    if manifest is None:
        ckpt.metadata = {"format": "pt2", "model": {}}
        x = _first_example(program)
        if x is not None:
            ckpt.metadata["model"] = {
                "input_shape": [None, *map(int, x.shape[1:])],
                "input_dtype": str(x.dtype).removeprefix("torch."),
            }
        return ckpt
    ckpt.metadata, ckpt.source, ckpt.classes = manifest, "oodx", manifest.get("classes")
    module.source_class = manifest["model"].get("class")
    loss = manifest.get("loss")
    if loss:
        _check_loss_registered(arc, loss)
        ckpt.loss_name = loss["name"]
        ckpt.loss_kwargs = dict(loss.get("kwargs") or {})
        ckpt.loss_state = {
            key: _tensor_from_bytes(arc.read(meta["file"]), meta["dtype"], meta["shape"])
            for key, meta in (loss.get("state") or {}).items()
        }
    return ckpt


def _check_loss_registered(arc: Archive, loss: Mapping[str, Any]) -> None:
    from ood_core.registry import list_losses

    if loss["name"] not in {info.name for info in list_losses()}:
        needs = loss.get("distribution") or "the plugin that registers it"
        raise CheckpointError(
            f"checkpoint {arc.path}: its loss {loss['name']!r} is not registered here; "
            f"install {needs} (`oodx plugins` lists what is installed)."
        )


def _rebuild_program(arc: Archive, manifest: Mapping[str, Any] | None) -> Any:
    """The ExportedProgram from the checked members, by torch's deserializer, given plain tensors.

    Calls ``ExportedProgramDeserializer.deserialize`` with a ready state dict, constants and
    example inputs, so none of ``torch.export.load``'s pickle, native-code or fallback paths runs.
    """
    try:
        from torch._export.serde import schema
        from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass
    except ImportError as exc:  # pragma: no cover - a torch without these internals
        raise CheckpointError(
            f"this torch ({torch.__version__}) cannot read PT2 programs: {exc}"
        ) from None
    state = _payload_tensors(arc, "weights")
    constants = _payload_tensors(arc, "constants")
    example = _sample_inputs(arc)
    try:
        with _quiet_torch_logs():
            serialized = _dict_to_dataclass(schema.ExportedProgram, arc.program)
            return ExportedProgramDeserializer().deserialize(serialized, state, constants, example)
    except Exception as exc:  # noqa: BLE001 - the deserializer raises many kinds of errors
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {arc.path}: the exported model could not be loaded ({type(exc).__name__}: "
            f"{reason}). It may be corrupted or written by an incompatible torch "
            f"(this is torch {torch.__version__}"
            + (f", the file was written by torch {manifest.get('torch')}" if manifest else "")
            + ")."
        ) from None


def _payload_tensors(arc: Archive, kind: str) -> dict[str, Tensor]:
    """Weights or constants from raw bytes, viewed with the checked sizes/strides/offset."""
    folder = f"data/{kind}/"
    bases: dict[str, Tensor] = {}
    out: dict[str, Tensor] = {}
    for fqn, d in arc.payloads[kind].items():
        dtype = getattr(torch, d["dtype"])
        if d["path_name"] not in bases:
            data = arc.read(folder + d["path_name"])
            item = ITEM_SIZES[d["dtype"]]
            if len(data) % item:
                raise arc.fail(
                    folder + d["path_name"], f"{len(data)} bytes is not a multiple of {item}"
                )
            bases[d["path_name"]] = (
                torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype)
                if data
                else torch.zeros(max(d["nbytes"] // item, 0), dtype=dtype)
            )
        base = bases[d["path_name"]]
        t = torch.as_strided(base, d["sizes"], d["strides"], d["storage_offset"])
        if d["is_param"]:
            t = nn.Parameter(t, requires_grad=d["requires_grad"])
        out[fqn] = t
    return out


def _sample_inputs(arc: Archive) -> Any:
    """The traced example inputs, read by torch's ``weights_only`` unpickler (tensors only)."""
    name = "data/sample_inputs/model.pt"
    try:
        with _quiet_torch_logs():
            value = torch.load(io.BytesIO(arc.read(name)), weights_only=True, map_location="cpu")
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything the restricted unpickler refuses
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise arc.fail(
            name, f"not plain tensors (the weights-only reader refused it: {reason[:200]})"
        ) from None
    if not (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], tuple)
        and isinstance(value[1], dict)
    ):
        raise arc.fail(name, "must hold (args tuple, kwargs dict)")
    return value


@contextlib.contextmanager
def _quiet_torch_logs():
    logger = logging.getLogger("torch")
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


def _first_example(program: Any) -> Tensor | None:
    args = getattr(program, "example_inputs", None)
    if args and args[0] and isinstance(args[0][0], Tensor):
        return args[0][0]
    return None


def _load_pickle(p: Path, trust_pickle: bool, what: str) -> Checkpoint:
    if not trust_pickle:
        raise CheckpointError(
            f"{p} is {what} (torch.save of a module). oodx does not load pickles by default: "
            "unpickling runs arbitrary code from the file, and it needs the training script's "
            "Python classes importable. Convert it once, in the training script: "
            "ood_core.save('model.pt', model, loss=criterion, example_input=x). "
            "If you trust the file, pass trust_pickle=True (CLI: --trust-pickle), the one explicit "
            "door for pickles; it does not relax the checks on .pt2 archives."
        )
    try:
        with _quiet_torch_logs():
            obj = torch.load(p, map_location="cpu", weights_only=False)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise CheckpointError(
            f"{p}: the pickle refers to Python code that cannot be imported here ({exc}). "
            "A pickled module needs its classes on the Python path; convert it with "
            "ood_core.save(...) in the training script instead."
        ) from None
    except Exception as exc:  # noqa: BLE001 - a broken pickle raises anything
        raise CheckpointError(f"{p}: cannot unpickle ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), nn.Module):
        obj = obj["model"]
    if not isinstance(obj, nn.Module):
        raise CheckpointError(
            f"{p} holds a {type(obj).__name__}, not a torch.nn.Module (a bare state_dict cannot "
            "be used without the model's class). Save with ood_core.save(path, model, "
            "example_input=...) in the training script."
        )
    obj.eval()
    return Checkpoint(
        model=obj, metadata={"format": "pickle", "model": {}}, path=p, source="pickle"
    )


__all__ = ["FORMAT", "FORMAT_VERSION", "Checkpoint", "ExportedModel", "load", "save"]
