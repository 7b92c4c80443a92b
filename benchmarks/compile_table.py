"""Which losses run under ``torch.compile(fullgraph=True)``: oodx vs pytorch-ood 0.4.0.

Every loss pair of ``benchmarks/losses.py`` (same keywords, same state, same inputs), at the
classification size and, where both support it, the segmentation size. A loss *compiles* when
``torch.compile(loss, fullgraph=True)`` runs forward and backward without a graph break or error
and gives the eager value (stateful or random losses: a finite value). The default backend is
``aot_eager`` (Dynamo capture plus AOT autograd, no code generation: fast and what decides
whether a graph breaks); ``--backend inductor`` also generates code (slow on a small CPU).

    python benchmarks/compile_table.py                # writes results/compile.md
    python benchmarks/compile_table.py --quick --no-write
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import losses as L  # noqa: E402
from common import table, write_result  # noqa: E402

STATEFUL = {"vos-synthesis", "ii", "scone", "confidence"}  # state updates or random sampling


def check(loss: torch.nn.Module, inputs: tuple, extra: tuple, backend: str, exact: bool) -> str:
    """``ok`` or why ``torch.compile(loss, fullgraph=True)`` fails on these inputs."""
    import torch._dynamo

    torch._dynamo.reset()
    compiled = torch.compile(loss, backend=backend, fullgraph=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = L.step(compiled, inputs, extra)
    except Exception as exc:  # noqa: BLE001 - the table reports it
        kind = type(exc).__name__
        text = str(exc).strip().splitlines()
        reason = next((t for t in text if t.strip()), "")[:80]
        return f"fails ({kind}: {reason})"
    if not torch.isfinite(value).all():
        return "fails (non-finite value)"
    if exact:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            eager = L.step(loss, inputs, extra)
        if not torch.allclose(value, eager, rtol=1e-4, atol=1e-5):
            return f"wrong value ({float(value):.5g} vs eager {float(eager):.5g})"
    return "ok"


def main(argv: list[str] | None = None) -> list[list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="aot_eager")
    parser.add_argument("--only", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny inputs")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    sizes = L.QUICK if args.quick else L.FULL
    specs, skipped = L.available_pairs(args.only)
    rows = []
    counts = {"ours": [0, 0], "theirs": [0, 0]}
    for task in ("classification", "segmentation"):
        for spec in specs:
            if not L.supports(spec, task):
                continue
            pair = L.build_pair(spec, sizes[task], "cpu")
            exact = spec.name not in STATEFUL
            ours = check(pair.ours, L.make_inputs(spec, sizes[task], "cpu"), pair.extra,
                         args.backend, exact)  # fmt: skip
            theirs = check(pair.theirs, L.make_inputs(spec, sizes[task], "cpu"), pair.extra,
                           args.backend, exact)  # fmt: skip
            for side, result in (("ours", ours), ("theirs", theirs)):
                counts[side][0] += result == "ok"
                counts[side][1] += 1
            rows.append([spec.name, spec.cls, task, ours, theirs])
            print(" | ".join(rows[-1]), flush=True)
    body = table(["loss", "pytorch-ood class", "task", "oodx", "pytorch-ood 0.4.0"], rows)
    body += (
        f"\n\nCompiles with `fullgraph=True` (backend `{args.backend}`, forward + backward): "
        f"oodx {counts['ours'][0]} of {counts['ours'][1]}, pytorch-ood "
        f"{counts['theirs'][0]} of {counts['theirs'][1]} (loss/task pairs). Over the "
        f"{len({r[0] for r in rows})} classes: oodx "
        f"{len({r[0] for r in rows if r[3] == 'ok'} - {r[0] for r in rows if r[3] != 'ok'})}, "
        f"pytorch-ood "
        f"{len({r[0] for r in rows if r[4] == 'ok'} - {r[0] for r in rows if r[4] != 'ok'})} "
        "compile at every size tested. 'ok' also requires the eager value (losses with random "
        "sampling or state updates: a finite value)."
    )
    if skipped:
        body += "\n\nNot tested:\n" + "\n".join(f"- {s}" for s in skipped)
    print()
    print(body)
    if not args.no_write:
        argv_s = " ".join(argv if argv is not None else sys.argv[1:])
        path = write_result(
            "compile",
            "torch.compile(fullgraph=True): oodx vs pytorch-ood 0.4.0",
            body,
            deps=L.DEPS,
            command=f"python benchmarks/compile_table.py {argv_s}".strip(),
        )
        print(f"\nwritten to {path}")
    return rows


if __name__ == "__main__":
    main()
