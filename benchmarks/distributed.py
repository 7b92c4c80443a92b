"""Cost of oodx's cross-rank synchronisation per step: 2 CPU ranks (gloo), sync on vs off.

For each stateful loss, one training forward (+ backward) on each rank, timed with the
synchronisation on and off (``sync_dist``), interleaved; the difference is what the collectives
cost per step. Also ``OODMetrics.compute()`` (exact, scores gathered) and a fitted scorer.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _cases(quick: bool):
    from ood_plugin_ii import IILoss
    from ood_plugin_vos import VirtualOutlierSynthesizingRegLoss as VOS

    from ood_core.metrics import OODMetrics

    b, c, d = (16, 4, 8) if quick else (256, 100, 128)
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(b, d, generator=g), torch.randint(0, c, (b,), generator=g)
    logits = torch.randn(b, c, generator=g)
    ii = IILoss(c, d)
    vos = VOS(num_classes=c, num_features=d, sample_number=1000, sample_from=1000)

    def metrics(sync: bool) -> None:
        m = OODMetrics(sync_on_compute=sync)
        m.update(torch.randn(20 * b), torch.randint(-1, 2, (20 * b,)))
        m.compute()

    def scorer(sync: bool) -> None:
        import ood_core

        s = ood_core.create_scorer("mahalanobis")
        s.sync_dist = sync
        s.fit(z, y)

    def loss_step(loss, *args):
        def run(sync: bool) -> None:
            loss.sync_dist = sync
            loss(*args)

        return run

    return [
        (
            f"ii forward, B={b} C={c} D={d}",
            "running means: all-reduce (C, D) sums + counts",
            loss_step(ii, z, y),
        ),
        (
            f"vos-synthesis forward, B={b} C={c} D={d}",
            "queues: all-gather (B, D) features + labels",
            loss_step(vos, logits, z, y),
        ),
        (f"OODMetrics.compute, {20 * b} scores/rank", "exact: all-gather scores", metrics),
        (f"mahalanobis fit, B={b} D={d}", "all-reduce class statistics", scorer),
    ]


def _worker(rank: int, world: int, store: str, repeats: int, quick: bool, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    rows = []
    for name, what, fn in _cases(quick):
        times = {True: [], False: []}
        for i in range(repeats + 2):
            for sync in (True, False):
                dist.barrier()
                t0 = time.perf_counter()
                fn(sync)
                if i >= 2:
                    times[sync].append(time.perf_counter() - t0)
        on, off = (statistics.median(times[k]) * 1e3 for k in (True, False))
        rows.append((name, what, f"{off:.3f}", f"{on:.3f}", f"{on - off:+.3f}"))
    if rank == 0:
        Path(out).write_text(json.dumps(rows))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    from common import table, write_result

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows")
        mp.spawn(
            _worker,
            args=(args.world, os.path.join(tmp, "store"), repeats, args.quick, out),
            nprocs=args.world,
        )
        rows = json.loads(Path(out).read_text())
    headers = ["step", "synchronised", "sync off ms", "sync on ms", "collectives ms"]
    body = table(headers, rows) + (
        f"\n\nMedian of {repeats} interleaved calls per side on each of {args.world} CPU ranks "
        "(gloo, 1 thread each, rank 0 shown); 'collectives' = on - off. The machine may be "
        "shared: absolute times are noisy."
    )
    print(body)
    if not args.no_write:
        write_result(
            "distributed",
            "Cost of cross-rank synchronisation (cpu, gloo)",
            body,
            deps=("ood-core", "torch"),
            command="python benchmarks/distributed.py",
        )


if __name__ == "__main__":
    main()
