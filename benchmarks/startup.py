"""Startup cost: `oodx --help`, `oodx plugins`, `import ood_core` against `import torch`.

Each command runs in a fresh interpreter; commands are interleaved (A B C ... A B C ...) and the
median wall time of ``--repeats`` rounds is reported.

    python benchmarks/startup.py [--repeats 15] [--no-write]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write_result  # noqa: E402

PY = sys.executable


def commands() -> list[tuple[str, list[str]]]:
    oodx = shutil.which("oodx", path=str(Path(PY).parent)) or shutil.which("oodx")
    cmds = [
        ("python -c 'import ood_core'", [PY, "-c", "import ood_core"]),
        (
            "python -c 'import ood_core; print(ood_core.list_plugins())'",
            [PY, "-c", "import ood_core; print(ood_core.list_plugins())"],
        ),
    ]
    if oodx:
        cmds += [("oodx --help", [oodx, "--help"]), ("oodx plugins", [oodx, "plugins"])]
    cmds.append(("python -c 'import torch'", [PY, "-c", "import torch"]))
    return cmds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    cmds = commands()
    times: dict[str, list[float]] = {name: [] for name, _ in cmds}
    for _ in range(args.repeats):
        for name, cmd in cmds:
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    torch_ms = statistics.median(times["python -c 'import torch'"]) * 1e3
    rows = []
    for name, _ in cmds:
        ms = statistics.median(times[name]) * 1e3
        rows.append((name, f"{ms:.0f}", f"{min(times[name]) * 1e3:.0f}", f"{ms / torch_ms:.2f}"))
    body = table(["command", "median ms", "min ms", "vs import torch"], rows)
    print(body)
    if not args.no_write:
        path = write_result(
            "startup",
            f"Startup ({args.repeats} interleaved rounds)",
            body,
            deps=("ood-core", "oodx", "torch", "pluggy", "click"),
            command=f"python benchmarks/startup.py --repeats {args.repeats}",
        )
        print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
