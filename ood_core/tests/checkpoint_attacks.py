"""A corpus of malicious checkpoints, each a valid ``ood_core.save`` archive rewritten with zipfile.

Every payload that runs writes ``<marker_dir>/<attack name>``; a test asserts no marker appears.
Used by ``test_checkpoint_security.py`` and ``tests/test_checkpoint_attacks_cli.py`` (loaded by
path: the test folders are not packages).
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

Entries = list[tuple[str, bytes]]


class _Payload:
    """Unpickling this runs ``exec(code)``."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple:
        return (exec, (self.code,))


def _write_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


def payload_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Payload(_write_code(marker)), protocol=2)


def shared_object(marker: Path, work: Path) -> bytes:
    """A shared object whose constructor writes ``marker`` (gcc), or fake bytes without gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        return b"\x7fELF fake shared object"
    src, out = work / "evil.c", work / "evil.so"
    src.write_text(
        "#include <stdio.h>\n__attribute__((constructor)) static void run(void) {\n"
        f'  FILE *f = fopen("{marker}", "w"); if (f) {{ fputs("ran", f); fclose(f); }}\n}}\n'
    )
    subprocess.run([gcc, "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return out.read_bytes()


def _replace(entries: Entries, suffix: str, data: bytes) -> Entries:
    return [(n, data if n.endswith(suffix) else d) for n, d in entries]


def _drop(entries: Entries, suffix: str) -> Entries:
    return [(n, d) for n, d in entries if not n.endswith(suffix)]


def _edit_json(entries: Entries, suffix: str, edit: Callable[[dict], None]) -> Entries:
    out = []
    for n, d in entries:
        if n.endswith(suffix):
            obj = json.loads(d)
            edit(obj)
            d = json.dumps(obj).encode()
        out.append((n, d))
    return out


def _first_expr(program: dict, code: str) -> None:
    stack: list = [program]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            if "expr_str" in o:
                o["expr_str"] = code
                return
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    raise AssertionError("the base program has no symbolic expression (dynamic batch expected)")


def attacks(
    root: str, marker: Callable[[str], Path], work: Path
) -> dict[str, Callable[[Entries], Entries]]:
    """Attack name -> rewrite of the member list ``[(name, bytes)]`` of a valid archive."""
    r = root
    pk = lambda name: payload_pickle(marker(name))  # noqa: E731
    exec_expr = lambda name: f"__import__('builtins').exec({_write_code(marker(name))!r})"  # noqa: E731

    def custom_obj(prefix: str, name: str) -> Callable[[Entries], Entries]:
        def edit(e: Entries) -> Entries:
            def cfg(c: dict) -> None:
                c["config"]["evil"] = {
                    "path_name": f"{prefix}0",
                    "is_param": False,
                    "use_pickle": True,
                    "tensor_meta": None,
                }

            return [
                *_edit_json(e, "model_constants_config.json", cfg),
                (f"{r}/data/constants/{prefix}0", pk(name)),
            ]

        return edit

    def use_pickle(value: object, name: str) -> Callable[[Entries], Entries]:
        def edit(e: Entries) -> Entries:
            targets: list[str] = []

            def cfg(c: dict) -> None:
                first = next(iter(c["config"].values()))
                first["use_pickle"] = value
                targets.append(first["path_name"])

            e = _edit_json(e, "model_weights_config.json", cfg)
            return _replace(e, f"/data/weights/{targets[0]}", pk(name))

        return edit

    old_format = [
        ("serialized_exported_program.json", b"{}"),
        ("serialized_state_dict.pt", None),
        ("serialized_constants.pt", None),
        ("serialized_example_inputs.pt", None),
        ("version", b"8.20"),
    ]

    def fallback(e: Entries, name: str, keep_root: bool = True) -> Entries:
        def bad_path(c: dict) -> None:
            c["config"]["bogus"] = {
                "path_name": "unsupported_0",
                "is_param": False,
                "use_pickle": False,
                "tensor_meta": None,
            }

        e = _edit_json(e, "model_constants_config.json", bad_path) if keep_root else []
        return [*e, *((n, d if d is not None else pk(name)) for n, d in old_format)]

    return {
        "legacy-weights": lambda e: [
            *_drop(e, "model_weights_config.json"),
            (f"{r}/data/weights/model.pt", pk("legacy-weights")),
        ],
        "legacy-constants": lambda e: [
            *_drop(e, "model_constants_config.json"),
            (f"{r}/data/constants/model.pt", pk("legacy-constants")),
        ],
        "duplicate-sample-inputs": lambda e: [
            (f"{r}/data/sample_inputs/model.pt", pk("duplicate-sample-inputs")),
            *e,
        ],
        "duplicate-differing-case": lambda e: [
            (f"{r}/data/sample_inputs/MODEL.pt", pk("duplicate-differing-case")),
            *e,
        ],
        "old-format-fallback": lambda e: fallback(e, "old-format-fallback"),
        "old-format-only": lambda e: fallback(e, "old-format-only", keep_root=False),
        "aotinductor-so": lambda e: [
            *e,
            (f"{r}/data/aotinductor/model/model.so", shared_object(marker("aotinductor-so"), work)),
            (f"{r}/data/aotinductor/model/model_metadata.json", b'{"AOTI_DEVICE_KEY": "cpu"}'),
        ],
        "so-elsewhere": lambda e: [
            *e,
            (f"{r}/oodx/evil.so", shared_object(marker("so-elsewhere"), work)),
        ],
        "sample-inputs-pickle": lambda e: _replace(
            e, "/data/sample_inputs/model.pt", pk("sample-inputs-pickle")
        ),
        "use-pickle-weight": use_pickle(True, "use-pickle-weight"),
        "use-pickle-truthy-string": use_pickle("false", "use-pickle-truthy-string"),
        "custom-obj-constant": custom_obj("custom_obj_", "custom-obj-constant"),
        "opaque-obj-constant": custom_obj("opaque_obj_", "opaque-obj-constant"),
        "sympy-eval": lambda e: _edit_json(
            e, "models/model.json", lambda p: _first_expr(p, exec_expr("sympy-eval"))
        ),
        "guards-code-exec": lambda e: _edit_json(
            e,
            "models/model.json",
            lambda p: p.__setitem__("guards_code", [exec_expr("guards-code-exec")]),
        ),
        "extra-file": lambda e: [*e, (f"{r}/extra/notes.txt", b"hello")],
        "path-traversal": lambda e: [*e, (f"{r}/../evil.pt", pk("path-traversal"))],
    }


def write_archive(path: Path, entries: Entries) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def read_entries(path: Path) -> Entries:
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def build_corpus(base: Path, out: Path, marker_dir: Path) -> dict[str, Path]:
    """Write every attack of :func:`attacks` as ``out/<name>.pt2``; returns name -> path."""
    out.mkdir(parents=True, exist_ok=True)
    marker_dir.mkdir(parents=True, exist_ok=True)
    entries = read_entries(base)
    root = entries[0][0].split("/", 1)[0]
    corpus = {}
    for name, rewrite in attacks(root, lambda n: marker_dir / n, out).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about duplicate names
            corpus[name] = write_archive(out / f"{name}.pt2", rewrite(list(entries)))
    return corpus
