"""Shared helpers of the benchmark scripts: machine description, tables, result files."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def versions(*dists: str) -> str:
    """``name version`` for each installed distribution (``missing`` otherwise)."""
    out = []
    for dist in dists:
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} missing")
    return ", ".join(out)


def machine() -> str:
    """One line describing this machine (CPU model, cores, Python, OS)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{', GPU ' + gpu if gpu else ''}; Python "
        f"{platform.python_version()}; {platform.system()} {platform.release()}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (also readable as plain text)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def write_result(name: str, title: str, body: str, *, deps: Sequence[str], command: str) -> Path:
    """Write ``results/<name>.md`` with machine, versions, date and the command; return path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    header = (
        f"# {title}\n\n"
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}\n"
        f"- machine: {machine()}\n"
        f"- versions: {versions(*deps)}\n"
        f"- command: `{command}`\n\n"
    )
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(header + body + "\n")
    os.replace(tmp, path)
    return path
