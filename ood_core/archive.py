"""Checks a checkpoint archive before torch reads a byte of it (importing this never imports torch).

A checkpoint is the PT2 zip that ``torch.export.save`` writes (plus ``oodx/``). Torch's loader has
paths that unpickle or load native code (legacy ``model.pt`` pickles, ``use_pickle`` payloads,
custom/opaque objects, the 2.7-format fallback, AOTInductor ``.so`` files, sample inputs retried
with ``weights_only=False``) and paths that ``eval`` text from the archive (sympy expressions,
guard code). :func:`open_archive` accepts only what ``ood_core.save`` writes for a program: an
allow-list of member names, each once (also case-insensitively, as torch's zip reader compares),
unencrypted, stored or deflated within a ratio, sizes bounded by the tensor shapes the configs
declare and by a total read from the central directory before anything is inflated. The JSON
members are parsed with bounded size and depth, without NaN, and checked against a schema; the
program's node targets and symbolic expressions are checked against a grammar. Everything is read
through Python's :mod:`zipfile` from the validated member table, so no second zip reader with
other rules ever sees the file.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ood_core.errors import CheckpointError

FORMAT = "oodx-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "oodx/manifest.json"
TENSOR_DIR = "oodx/tensors/"

MAX_TOTAL_BYTES = 16 << 30  # all members together, uncompressed (from the central directory)
MAX_MEMBERS = 100_000
MAX_RATIO = 200  # uncompressed / compressed, for members over 1 MiB
MAX_JSON_BYTES = {MANIFEST: 8 << 20, "models/model.json": 512 << 20}
MAX_CONFIG_JSON_BYTES = 64 << 20
MAX_JSON_DEPTH = {MANIFEST: 32, "models/model.json": 200}
MAX_DIM = 1 << 40
MAX_RANK = 64

_MEMBER_RULES: tuple[tuple[str, str], ...] = (
    (r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id", "meta"),
    (r"models/model\.json", "program"),
    (r"data/weights/model_weights_config\.json", "config"),
    (r"data/constants/model_constants_config\.json", "config"),
    (r"data/weights/weight_[0-9]{1,9}", "payload"),
    (r"data/constants/tensor_[0-9]{1,9}", "payload"),
    (r"data/sample_inputs/model\.pt", "sample"),
    (r"oodx/manifest\.json", "manifest"),
    (r"oodx/tensors/[0-9]{1,9}\.bin", "state"),
)
_REQUIRED = (
    "archive_format",
    "archive_version",
    "models/model.json",
    "data/weights/model_weights_config.json",
    "data/constants/model_constants_config.json",
    "data/sample_inputs/model.pt",
)
_FIXED_CONTENT = {"archive_format": b"pt2", "archive_version": b"0", "byteorder": b"little"}
# why a name outside the allow-list is dangerous, for a clearer refusal (first match wins)
_KNOWN_BAD: tuple[tuple[str, str], ...] = (
    (r"(.*/)?[^/]*\.so(\.[0-9]+)*|data/aotinductor/.*", "native code (AOTInductor shared library)"),
    (r"data/(weights|constants)/[^/]*\.pt", "a legacy pickle that torch unpickles"),
    (r"data/constants/(custom_obj|opaque_obj)_.*", "a pickled custom object"),
    (
        r"serialized_.*|version|data\.pkl|.*/data\.pkl",
        "a member of the old (2.7) format, whose fallback unpickles",
    ),
    (r"extra/.*|data/executorch/.*|data/mtia.*|xl_model_weights/.*", "an unsupported PT2 part"),
)

# ScalarType of torch._export.serde.schema -> (torch dtype name, item size)
SCALAR_TYPES: dict[int, tuple[str, int]] = {
    1: ("uint8", 1), 2: ("int8", 1), 3: ("int16", 2), 4: ("int32", 4), 5: ("int64", 8),
    6: ("float16", 2), 7: ("float32", 4), 8: ("float64", 8), 9: ("complex32", 4),
    10: ("complex64", 8), 11: ("complex128", 16), 12: ("bool", 1), 13: ("bfloat16", 2),
    28: ("uint16", 2), 29: ("float8_e4m3fn", 1), 30: ("float8_e5m2", 1),
    31: ("float8_e4m3fnuz", 1), 32: ("float8_e5m2fnuz", 1), 33: ("float8_e8m0fnu", 1),
    34: ("uint32", 4), 35: ("uint64", 8),
}  # fmt: skip
ITEM_SIZES: dict[str, int] = dict(SCALAR_TYPES.values())
_STRIDED = 7


@dataclass
class Archive:
    """A checkpoint zip whose member table passed the allow-list; members read by relative name."""

    path: Path
    zf: zipfile.ZipFile
    root: str
    infos: dict[str, zipfile.ZipInfo]
    program: dict[str, Any] = field(default_factory=dict)
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None

    def fail(self, member: str | None, what: str) -> CheckpointError:
        where = f" member {f'{self.root}/{member}'!r}" if member else ""
        return CheckpointError(f"checkpoint {self.path} refused:{where}: {what}")

    def read(self, name: str) -> bytes:
        """The bytes of member ``name`` (relative to the root), never more than declared."""
        info = self.infos[name]
        try:
            with self.zf.open(info) as f:
                data = f.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise self.fail(name, f"corrupted ({exc}); save or copy it again") from None
        except Exception as exc:  # noqa: BLE001 - zlib.error and the like
            raise self.fail(name, f"corrupted ({type(exc).__name__}: {exc})") from None
        if len(data) != info.file_size:
            raise self.fail(name, f"holds {len(data)} bytes, the directory says {info.file_size}")
        return data

    def close(self) -> None:
        self.zf.close()


def open_archive(path: Path) -> Archive:
    """Open ``path`` as a PT2/oodx archive and check everything torch would read (see module doc)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupted (its zip directory is unreadable: "
            f"{exc}); it was probably cut short while copying or writing. Save or copy it again."
        ) from None
    try:
        arc = Archive(path, zf, *_member_table(path, zf.infolist()))
        _check_contents(arc)
    except BaseException:
        zf.close()
        raise
    return arc


def _member_table(path: Path, infos: list[zipfile.ZipInfo]) -> tuple[str, dict[str, Any]]:
    def fail(name: str, what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} refused: member {name!r}: {what}")

    if not infos:
        raise CheckpointError(f"checkpoint {path} refused: the zip archive is empty")
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(
            f"checkpoint {path} refused: {len(infos)} members (at most {MAX_MEMBERS})"
        )
    root = infos[0].filename.split("/", 1)[0]
    if not re.fullmatch(r"[^/\\\x00-\x1f.][^/\\\x00-\x1f]{0,254}", root):
        raise fail(infos[0].filename, "the archive's top folder name is not allowed")
    table: dict[str, zipfile.ZipInfo] = {}
    folded: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        _check_name(name, root, fail)
        rel = name[len(root) + 1 :]
        key = rel.casefold()
        if rel in table or key in folded:
            raise fail(
                name, "appears twice (also compared case-insensitively, as torch's reader does)"
            )
        folded.add(key)
        _check_entry(info, fail)
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise fail(
                name, f"the members add up to more than {MAX_TOTAL_BYTES} bytes uncompressed"
            )
        table[rel] = info
    _check_no_overlap(infos, fail)
    missing = [m for m in _REQUIRED if m not in table]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} refused: not a torch.export program archive (missing {missing})"
        )
    return root, table


def _check_name(name: str, root: str, fail: Any) -> None:
    if "\\" in name or "\x00" in name or any(ord(c) < 32 for c in name):
        raise fail(name, "a backslash or control character in the name")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise fail(name, "an absolute path")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise fail(name, "an empty, '.' or '..' path component")
    inside = parts[0] == root and len(parts) >= 2
    rel = name[len(root) + 1 :] if inside else name
    if inside and any(re.fullmatch(rule, rel) for rule, _ in _MEMBER_RULES):
        return
    for rule, why in _KNOWN_BAD:
        if re.fullmatch(rule, rel):
            raise fail(name, f"{why}; oodx never loads it")
    if not inside:
        raise fail(name, f"outside the archive's top folder {root!r}")
    raise fail(name, "not a member that ood_core.save or torch.export.save writes (allow-list)")


def _check_entry(info: zipfile.ZipInfo, fail: Any) -> None:
    if info.flag_bits & 0x1:
        raise fail(info.filename, "encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise fail(
            info.filename, f"compression method {info.compress_type} (stored or deflated only)"
        )
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise fail(info.filename, "a stored member whose sizes disagree")
    if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise fail(info.filename, f"compression ratio above {MAX_RATIO} (a zip bomb?)")


def _check_no_overlap(infos: list[zipfile.ZipInfo], fail: Any) -> None:
    spans = sorted(
        (
            i.header_offset,
            i.header_offset + 30 + len(i.orig_filename.encode()) + i.compress_size,
            i.filename,
        )
        for i in infos
    )
    for (_, end, name), (start, _, _) in zip(spans, spans[1:]):
        if start < end:
            raise fail(name, "its data overlaps another member's (a crafted zip)")


def _check_contents(arc: Archive) -> None:
    for name, expected in _FIXED_CONTENT.items():
        if name in arc.infos and arc.read(name).strip() != expected:
            raise arc.fail(name, f"must read {expected.decode()!r}")
    check_sample_inputs(arc)
    arc.program = read_json(arc, "models/model.json")
    check_program(arc, arc.program)
    for kind, prefix in (("weights", "weight_"), ("constants", "tensor_")):
        name = f"data/{kind}/model_{kind}_config.json"
        arc.payloads[kind] = check_payload_config(arc, name, read_json(arc, name), prefix)
    if MANIFEST in arc.infos:
        arc.manifest = read_json(arc, MANIFEST)
        check_manifest(arc.manifest, lambda what: arc.fail(MANIFEST, what))
        _check_state_members(arc)
    elif any(n.startswith(TENSOR_DIR) for n in arc.infos):
        raise arc.fail(TENSOR_DIR, "loss tensors without a manifest")


# --------------------------------------------------------------------------------------------
# sample inputs: a torch.save zip whose pickle may only rebuild tensors (checked without torch;
# loading then uses torch's weights_only unpickler as well)

SAMPLE_INPUTS = "data/sample_inputs/model.pt"
_PICKLE_GLOBALS = frozenset(
    {"torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter",
     "collections OrderedDict", "torch device"}
    | {f"torch {t}Storage" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int",
                                     "Short", "Char", "Byte", "Bool", "ComplexFloat",
                                     "ComplexDouble")}
)  # fmt: skip
_PICKLE_REFUSED_OPS = frozenset(
    {"STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"}
)


def check_sample_inputs(arc: Archive) -> None:
    """The sample-inputs member holds only tensors: its pickle names no callable but tensor rebuilders."""
    import io
    import pickletools

    data = arc.read(SAMPLE_INPUTS)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            pkls = [i for i in inner.infolist() if i.filename.endswith("/data.pkl")]
            if len(pkls) != 1 or len({i.filename.casefold() for i in inner.infolist()}) != len(
                inner.infolist()
            ):
                raise arc.fail(SAMPLE_INPUTS, "not a torch.save archive with one data.pkl")
            if (
                pkls[0].file_size > (16 << 20)
                or sum(i.file_size for i in inner.infolist()) > MAX_TOTAL_BYTES
            ):
                raise arc.fail(SAMPLE_INPUTS, "too large")
            ops = list(pickletools.genops(inner.read(pkls[0])))
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile/pickletools raise many kinds of errors
        raise arc.fail(
            SAMPLE_INPUTS, f"not a readable torch.save archive ({type(exc).__name__})"
        ) from None
    for op, arg, _ in ops:
        if op.name in _PICKLE_REFUSED_OPS or (op.name == "GLOBAL" and arg not in _PICKLE_GLOBALS):
            raise arc.fail(
                SAMPLE_INPUTS, f"a pickle that calls {arg or op.name!r}, not only tensors"
            )


# --------------------------------------------------------------------------------------------
# JSON with bounds


def parse_json(data: bytes, max_depth: int, fail: Any) -> Any:
    """``json.loads`` that refuses invalid UTF-8, NaN/Infinity and nesting deeper than ``max_depth``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 ({exc})") from None
    depth = deepest = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', text):
        c = m.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > max_depth:
                raise fail(f"JSON nested deeper than {max_depth} levels")
        elif c in "]}":
            depth -= 1

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    try:
        return json.loads(text, parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:
        raise fail(f"unreadable JSON ({exc})") from None


def read_json(arc: Archive, name: str) -> Any:
    info = arc.infos[name]
    limit = MAX_JSON_BYTES.get(name, MAX_CONFIG_JSON_BYTES)
    if info.file_size > limit:
        raise arc.fail(name, f"{info.file_size} bytes of JSON (at most {limit})")
    return parse_json(arc.read(name), MAX_JSON_DEPTH.get(name, 16), lambda w: arc.fail(name, w))


# --------------------------------------------------------------------------------------------
# the program: node targets and symbolic expressions are the two places torch resolves or
# evaluates text from the file (getattr chains on torch/math/operator; sympy.sympify = eval)

_TARGET = re.compile(
    r"torch\.ops\.(aten|prims)\.(?!.*__)[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*"
    r"|_operator\.(getitem|add|sub|mul|truediv|floordiv|mod|pow|neg|pos|abs|eq|ne|lt|le|gt|ge"
    r"|and_|or_|not_|xor)"
    r"|math\.(ceil|floor|trunc|sqrt)|torch\.sym_(float|int|max|min|not|ite|sqrt|sum)"
)
_SYMPY_NAMES = frozenset(
    "Symbol Integer Rational Float Add Mul Pow Mod Max Min Abs Eq Ne Lt Le Gt Ge StrictLessThan "
    "StrictGreaterThan LessThan GreaterThan Equality Unequality And Or Not BooleanTrue BooleanFalse "
    "true false True False oo zoo Infinity NegativeInfinity IntInfinity NegativeIntInfinity int_oo "
    "floor ceiling sqrt Piecewise ExprCondPair FloorDiv ModularIndexing Where PythonMod CleanDiv "
    "CeilToInt FloorToInt CeilDiv LShift RShift PowByNatural FloatPow FloatTrueDiv IntTrueDiv "
    "IsNonOverlappingAndDenseIndicator TruncToFloat TruncToInt RoundToInt RoundDecimal ToFloat "
    "Identity positive negative nonnegative nonpositive integer real finite zero even odd "
    "precision evaluate".split()
)
_EXPR_TOKEN = re.compile(
    r"\s+|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|'[A-Za-z0-9_.+\-]*'|[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?"
    r"|\*\*|[(),=+\-*/%<>!]"
)


def check_expression(text: Any) -> str | None:
    """Why ``text`` is not a sympy ``srepr``/arithmetic expression of allowed names, or None."""
    if not isinstance(text, str) or len(text) > 10_000:
        return "not a string of at most 10000 characters"
    pos = 0
    while pos < len(text):
        m = _EXPR_TOKEN.match(text, pos)
        if m is None:
            return f"unexpected {text[pos : pos + 20]!r}"
        name = m.group("name")
        if name and name not in _SYMPY_NAMES and not re.fullmatch(r"[a-z]{1,3}[0-9]+", name):
            return f"name {name!r} is not allowed"
        pos = m.end()
    return None


def check_program(arc: Archive, program: Any) -> None:
    """Node targets, symbolic expressions and guard code of the serialized program."""
    where = "models/model.json"
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        raise arc.fail(where, "not a serialized exported program")
    if program.get("guards_code") not in (None, []):
        raise arc.fail(where, "guard code (Python source that torch would exec); oodx refuses it")
    for node in _nodes(program):
        target = node.get("target")
        if not isinstance(target, str) or not _TARGET.fullmatch(target):
            raise arc.fail(where, f"node target {str(target)[:80]!r} is not an aten/prims operator")
    for text in _values_of(program, "expr_str"):
        why = check_expression(text)
        if why:
            raise arc.fail(where, f"symbolic expression {str(text)[:80]!r}: {why}")


def _nodes(obj: Any) -> Iterator[dict[str, Any]]:
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            nodes = o.get("nodes")
            if isinstance(nodes, list):
                yield from (n if isinstance(n, dict) else {"target": n} for n in nodes)
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)


def _values_of(obj: Any, key: str) -> Iterator[Any]:
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            if key in o:
                yield o[key]
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)


# --------------------------------------------------------------------------------------------
# weights and constants configs


def _as_int(value: Any, lo: int, hi: int) -> int | None:
    if isinstance(value, dict) and set(value) == {"as_int"}:
        value = value["as_int"]
    if type(value) is int and lo <= value <= hi:
        return value
    return None


def check_payload_config(arc: Archive, name: str, config: Any, prefix: str) -> dict[str, Any]:
    """Validate a weights/constants config; returns ``{fqn: tensor description}`` (plain values)."""
    if (
        not isinstance(config, dict)
        or set(config) != {"config"}
        or not isinstance(config["config"], dict)
    ):
        raise arc.fail(name, 'must be {"config": {...}}')
    folder = name.rsplit("/", 1)[0]
    out: dict[str, Any] = {}
    needed: dict[str, int] = {}
    for fqn, meta in config["config"].items():
        desc = _payload_entry(meta, prefix, lambda w, f=fqn: arc.fail(name, f"entry {f!r}: {w}"))
        member = f"{folder}/{desc['path_name']}"
        if member not in arc.infos:
            raise arc.fail(name, f"entry {fqn!r} names {desc['path_name']!r}, which is missing")
        needed[member] = max(needed.get(member, 0), desc["nbytes"])
        out[fqn] = desc
    for member in arc.infos:
        if member.startswith(folder + "/") and member != name and member not in needed:
            raise arc.fail(member, f"a payload that {name.rsplit('/', 1)[1]} does not declare")
    for member, span in needed.items():
        size = arc.infos[member].file_size
        if size and (size < span or size > 4 * span + 65536):
            raise arc.fail(member, f"{size} bytes for tensors that declare {span} bytes")
    return out


def _payload_entry(meta: Any, prefix: str, fail: Any) -> dict[str, Any]:
    keys = {"path_name", "is_param", "use_pickle", "tensor_meta"}
    if not isinstance(meta, dict) or set(meta) != keys:
        raise fail(f"must have exactly the keys {sorted(keys)}")
    if meta["use_pickle"] is not False:
        raise fail("stored as a pickle (use_pickle), which would run code on load")
    path_name = meta["path_name"]
    if not isinstance(path_name, str) or not re.fullmatch(
        re.escape(prefix) + r"[0-9]{1,9}", path_name
    ):
        raise fail(
            f"path_name {str(path_name)[:60]!r} is not {prefix}<n> (pickled objects are refused)"
        )
    if type(meta["is_param"]) is not bool:
        raise fail("is_param must be true or false")
    tm = meta["tensor_meta"]
    tkeys = {"dtype", "sizes", "requires_grad", "device", "strides", "storage_offset", "layout"}
    if not isinstance(tm, dict) or set(tm) != tkeys:
        raise fail(f"tensor_meta must have exactly the keys {sorted(tkeys)}")
    if type(tm["dtype"]) is not int or tm["dtype"] not in SCALAR_TYPES:
        raise fail(f"dtype {tm['dtype']!r} is not a known tensor dtype")
    if tm["layout"] != _STRIDED or type(tm["requires_grad"]) is not bool:
        raise fail("only strided tensors, requires_grad true or false")
    dev = tm["device"]
    if not (isinstance(dev, dict) and set(dev) == {"type", "index"} and dev["type"] in ("cpu", "cuda")
            and (dev["index"] is None or _as_int(dev["index"], 0, 1024) is not None)):  # fmt: skip
        raise fail(f"device {dev!r} is not a cpu/cuda device")
    sizes, strides = tm["sizes"], tm["strides"]
    if not (
        isinstance(sizes, list)
        and isinstance(strides, list)
        and len(sizes) == len(strides) <= MAX_RANK
    ):
        raise fail("sizes and strides must be lists of the same length")
    sizes = [_as_int(s, 0, MAX_DIM) for s in sizes]
    strides = [_as_int(s, 0, MAX_DIM) for s in strides]
    offset = _as_int(tm["storage_offset"], 0, MAX_DIM)
    if None in sizes or None in strides or offset is None:
        raise fail(f"sizes, strides and storage_offset must be integers in [0, {MAX_DIM}]")
    dtype, item = SCALAR_TYPES[tm["dtype"]]
    numel = math.prod(sizes)
    span = 0 if numel == 0 else offset + 1 + sum((s - 1) * st for s, st in zip(sizes, strides))
    if span * item > MAX_TOTAL_BYTES:
        raise fail(f"declares {span * item} bytes (at most {MAX_TOTAL_BYTES})")
    return {"path_name": path_name, "is_param": meta["is_param"], "dtype": dtype,
            "sizes": sizes, "strides": strides, "storage_offset": offset,
            "requires_grad": tm["requires_grad"], "nbytes": span * item}  # fmt: skip


# --------------------------------------------------------------------------------------------
# the oodx manifest

MANIFEST_DTYPES = (
    "float32",
    "float64",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)
_OPTIONAL_STR = (str, type(None))


def check_manifest(manifest: Any, fail: Any) -> None:
    """Schema of ``oodx/manifest.json``: one :class:`CheckpointError` (from ``fail``) per bad field."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise fail(f"not an oodx manifest (format must be {FORMAT!r})")
    version = manifest.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise fail(
            f"format_version {version!r}: this ood-core reads integer versions 1 to "
            f"{FORMAT_VERSION}. Upgrade ood-core (pip install -U ood-core) to read newer files."
        )
    for key in ("created", "torch", "ood_core", "python"):
        if not isinstance(manifest.get(key, ""), str):
            raise fail(f"field {key!r} must be a string")
    _check_model_entry(manifest.get("model"), fail)
    _check_loss_entry(manifest.get("loss"), fail)
    classes = manifest.get("classes")
    if classes is not None and not (
        isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    ):
        raise fail("field 'classes' must be null or a list of strings")
    plugins = manifest.get("plugins", {})
    if not isinstance(plugins, dict) or not all(
        isinstance(v, _OPTIONAL_STR) for v in plugins.values()
    ):
        raise fail("field 'plugins' must map distribution names to version strings")
    if not isinstance(manifest.get("extra", {}), dict):
        raise fail("field 'extra' must be an object")


def _check_shape(shape: Any, batch: bool) -> bool:
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        return False
    dims = shape[1:] if batch and shape and shape[0] is None else shape
    return (not batch or shape[:1] == [None]) and all(
        type(d) is int and 0 <= d <= MAX_DIM for d in dims
    )


def _check_model_entry(model: Any, fail: Any) -> None:
    if not isinstance(model, dict):
        raise fail("field 'model' must be an object")
    if not isinstance(model.get("class", ""), str):
        raise fail("field 'model.class' must be a string")
    if "input_shape" in model and not _check_shape(model["input_shape"], batch=True):
        raise fail(f"field 'model.input_shape' must be [null, d1, ...] with integers 0..{MAX_DIM}")
    if model.get("input_dtype", "float32") not in MANIFEST_DTYPES:
        raise fail(f"field 'model.input_dtype' must be one of {list(MANIFEST_DTYPES)}")
    if "output" in model:
        _check_output(model["output"], "model.output", fail)


_OUTPUT_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,200}")  # printable: names end up in messages


def _check_output(out: Any, where: str, fail: Any) -> None:
    """``{"kind": "tensor", "shape": [null, ...]}``, ``{"kind": "dict", "keys": {name: out}}``,
    ``{"kind": "tuple", "items": [out, ...]}`` or ``{"kind": <type name>}`` (what save writes)."""
    kind = out.get("kind") if isinstance(out, dict) else None
    if not isinstance(kind, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", kind):
        raise fail(f"field '{where}' must be an object with a 'kind' naming the output's type")
    fields = {"tensor": "shape", "dict": "keys", "tuple": "items"}.get(kind)
    expected = {"kind"} | ({fields} if fields else set())
    if set(out) != expected:
        raise fail(
            f"field '{where}' of kind {kind!r} must have the fields {sorted(expected)}, "
            f"got {sorted(out)}"
        )
    if kind == "tensor" and not _check_shape(out["shape"], batch=True):
        raise fail(f"field '{where}.shape' must be [null, d1, ...] with integers 0..{MAX_DIM}")
    if kind == "dict":
        keys = out["keys"]
        if not isinstance(keys, dict) or not all(_OUTPUT_NAME.fullmatch(k) for k in keys):
            raise fail(f"field '{where}.keys' must map output names (printable strings) to outputs")
        for name, value in keys.items():
            _check_output(value, f"{where}.keys.{name}", fail)
    if kind == "tuple":
        if not isinstance(out["items"], list):
            raise fail(f"field '{where}.items' must be a list of outputs")
        for i, value in enumerate(out["items"]):
            _check_output(value, f"{where}.items.{i}", fail)


def _check_loss_entry(loss: Any, fail: Any) -> None:
    if loss is None:
        return
    if not isinstance(loss, dict) or not isinstance(loss.get("name"), str) or not loss["name"]:
        raise fail("field 'loss' must be null or an object with a string 'name'")
    for key in ("class", "kwargs_from", "plugin", "distribution", "version", "scorer"):
        if not isinstance(loss.get(key), _OPTIONAL_STR):
            raise fail(f"field 'loss.{key}' must be a string or null")
    if not isinstance(loss.get("kwargs", {}), dict):
        raise fail("field 'loss.kwargs' must be an object of constructor keywords")
    state = loss.get("state", {})
    if not isinstance(state, dict):
        raise fail("field 'loss.state' must be an object")
    for key, meta in state.items():
        if not isinstance(meta, dict):
            raise fail(f"loss state entry {key!r} must be an object")
        if not isinstance(meta.get("file"), str) or not re.fullmatch(
            r"oodx/tensors/[0-9]{1,9}\.bin", meta["file"]
        ):
            raise fail(f"loss state entry {key!r}: 'file' must be oodx/tensors/<n>.bin")
        if meta.get("dtype") not in MANIFEST_DTYPES:
            raise fail(f"loss state entry {key!r}: dtype must be one of {list(MANIFEST_DTYPES)}")
        if not _check_shape(meta.get("shape"), batch=False):
            raise fail(f"loss state entry {key!r}: shape must be a list of integers 0..{MAX_DIM}")


def state_nbytes(meta: dict[str, Any]) -> int:
    """Bytes of a checked loss-state entry (``numel * itemsize``)."""
    return math.prod(meta["shape"]) * ITEM_SIZES[meta["dtype"]]


def _check_state_members(arc: Archive) -> None:
    state = ((arc.manifest or {}).get("loss") or {}).get("state") or {}
    files = {}
    for key, meta in state.items():
        if meta["file"] in files:
            raise arc.fail(
                MANIFEST, f"loss state entries {files[meta['file']]!r} and {key!r} share a file"
            )
        files[meta["file"]] = key
        if meta["file"] not in arc.infos:
            raise arc.fail(MANIFEST, f"the loss state tensor {key!r} is missing ({meta['file']})")
        size, expected = arc.infos[meta["file"]].file_size, state_nbytes(meta)
        if size != expected:
            raise arc.fail(
                meta["file"], f"{size} bytes; dtype and shape of {key!r} need {expected}"
            )
    for name in arc.infos:
        if name.startswith(TENSOR_DIR) and name not in files:
            raise arc.fail(name, "a loss tensor the manifest does not declare")
