"""oodx under torch.distributed: 2 and 3 CPU ranks (gloo), one spawn per world size.

Every rank's state after a few updates equals one process fed the concatenated global batch
(ranks' shards in rank order, uneven and empty shards included): stateful losses, every
registered scorer that must be fitted, and the metrics; a short DDP run with MCHAD, CAC, Center and VOS
keeps the ranks' parameters equal and matches one process.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
TOL = dict(atol=1e-6, rtol=1e-6)


def _local(obj):
    """The one-process reference: the same object with synchronisation switched off."""
    obj.sync_dist = False
    return obj


def _shards(n_ranks: int, total: int, step: int) -> list[slice]:
    """Uneven cuts of ``total`` rows: rank 1 gets nothing on odd steps (an empty rank)."""
    sizes = [total // n_ranks + (r < total % n_ranks) for r in range(n_ranks)]
    if step % 2 and n_ranks > 1:
        sizes[0] += sizes[1]
        sizes[1] = 0
    cuts = [0]
    for s in sizes:
        cuts.append(cuts[-1] + s)
    return [slice(cuts[r], cuts[r + 1]) for r in range(n_ranks)]


def _data(step: int, n: int = 11, c: int = 3, d: int = 4) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(100 + step)
    y = torch.randint(-1, c, (n,), generator=g)
    y[: n // 2] = torch.where(y[: n // 2] == c - 1, 0, y[: n // 2])  # class c-1 only late
    return torch.randn(n, c, generator=g), torch.randn(n, d, generator=g), y


def _check_ii(rank: int, world: int) -> None:
    from ood_plugin_ii import IILoss

    ours, ref = IILoss(3, 4), _local(IILoss(3, 4))
    for step in range(3):
        _, z, y = _data(step)
        part = _shards(world, len(y), step)[rank]
        ours(z[part], y[part])
        ref(z, y)
    torch.testing.assert_close(ours.state_dict(), ref.state_dict(), **TOL)


def _check_vos_queues(rank: int, world: int) -> None:
    from ood_plugin_vos import VirtualOutlierSynthesizingRegLoss as VOS

    torch.manual_seed(0)
    ours = VOS(num_classes=3, num_features=4, sample_number=3, sample_from=8)
    ref = _local(copy.deepcopy(ours))
    for step in range(5):  # fills, then overwrites (ring) with uneven and empty shards
        logits, z, y = _data(step)
        part = _shards(world, len(y), step)[rank]
        torch.manual_seed(step)
        ours(logits[part], z[part], y[part])
        ref.update_queues(z, y)
    assert bool(ours.queues_full())
    for name in ("data_dict", "queue_counts", "queue_heads"):
        assert torch.equal(getattr(ours, name), getattr(ref, name)), name


def _check_scone(rank: int, world: int) -> None:
    from ood_plugin_scone import EnergyMarginLoss

    ours = EnergyMarginLoss(full_train_loss=0.5)
    ref = _local(copy.deepcopy(ours))
    batches = [(_data(s)[0], _data(s)[2]) for s in range(3)]
    mine = [(x[p], y[p]) for s, (x, y) in enumerate(batches) for p in [_shards(world, 11, s)[rank]]]
    got = ours.update_hyperparameters(nn.Identity(), mine)
    want = ref.update_hyperparameters(nn.Identity(), batches)
    torch.testing.assert_close(got, want, **TOL)
    torch.testing.assert_close(ours.state_dict(), ref.state_dict(), **TOL)


def _check_svdd(rank: int, world: int) -> None:
    from ood_plugin_deep_svdd import DeepSADLoss, DeepSVDDLoss

    z = torch.randn(10, 4, generator=torch.Generator().manual_seed(3)) + 0.5
    for cls in (DeepSVDDLoss, DeepSADLoss):
        ours, ref = cls(n_dim=4), _local(cls(n_dim=4))
        ours.init_center([z[_shards(world, 10, s)[rank]] for s in range(1)])
        ref.init_center(z)
        torch.testing.assert_close(ours.center.params, ref.center.params, **TOL)


def _nacue_kwargs() -> dict:
    """NAC-UE runs a model: a small MLP on the 6-wide fit data, hooked after its hidden layer
    (the same weights in every rank: seeded without touching the global generator)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    return {"model": model, "layers": [model[1]], "o_star": 5}


#: keywords a scorer cannot do without (a new scorer with a required keyword fails here loudly)
REQUIRED = {
    "dice": {"p": 0.5},
    "vim": {"d": 2},
    "mahalanobis-odin": {"encoder": nn.Identity()},
    "nacue": _nacue_kwargs(),
}


def _build_scorer(name: str, dim: int, classes: int):
    import ood_core
    from ood_core.testing.posthoc import cluster_head

    kwargs = REQUIRED.get(name, {})
    try:
        return ood_core.create_scorer(name, **kwargs)
    except (TypeError, ValueError):
        return ood_core.create_scorer(name, head=cluster_head(dim, classes), **kwargs)


def _fit_data(scorer, n: int, dim: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    from ood_core.testing.posthoc import cluster_head, cluster_samples

    x, y = cluster_samples(n, dim, classes, seed=5)
    if scorer.reads == "logits":
        with torch.no_grad():
            x = cluster_head(dim, classes)(x)
    return x, y


def _check_scorers(rank: int, world: int) -> None:
    import warnings

    import ood_core

    names = [s.name for s in ood_core.list_scorers() if s.needs_fit and s.load().sync_dist]
    assert names, "no registered scorer needs fit"
    failures = []
    for name in names:
        ours = _build_scorer(name, 6, 3)
        ref = _local(copy.deepcopy(ours))
        x, y = _fit_data(ours, 60, 6, 3)
        cut = [slice(r * 60 // world, (r + 1) * 60 // world) for r in range(world)][rank]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours.fit([(x[cut][:7], y[cut][:7]), (x[cut][7:], y[cut][7:])])
            ref.fit(x, y)
        try:
            torch.testing.assert_close(ours.state_dict(), ref.state_dict(), **TOL)
        except AssertionError as exc:
            failures.append(f"scorer {name!r}: {exc}")
    assert not failures, "\n".join(failures)


def _check_metrics(rank: int, world: int) -> None:
    from ood_core.metrics import OODMetrics

    g = torch.Generator().manual_seed(9)
    scores, labels = torch.randn(50, generator=g), torch.randint(-1, 3, (50,), generator=g)
    preds = torch.randint(0, 3, (50,), generator=g)
    for mode in ("exact", "binned"):
        ours = OODMetrics(mode=mode, bins=2**12)
        ref = OODMetrics(mode=mode, bins=2**12, sync_on_compute=False)
        for step in range(2):
            half = slice(25 * step, 25 * step + 25)
            part = _shards(world, 25, step)[rank]
            ours.update(scores[half][part], labels[half][part], preds[half][part])
            ref.update(scores[half], labels[half], preds[half])
        assert ours.compute() == pytest.approx(ref.compute(), abs=1e-12)
        local = OODMetrics(mode=mode, bins=2**12, sync_on_compute=False)
        local.update(scores[rank::world], labels[rank::world])
        gathered = [None] * world
        dist.all_gather_object(gathered, local.compute())
        if world > 1:  # the switch: each rank's own samples
            assert any(v != gathered[0] for v in gathered[1:]) or rank != 0


class _Trainer(nn.Module):
    """Model and loss in one module, so DDP averages the loss's parameters (centres) too."""

    def __init__(self, loss: nn.Module, out: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Linear(4, out)
        self.loss = loss

    def forward(self, x, y):
        if hasattr(self.loss, "fc"):  # VOS: features -> fc (the loss's head) -> logits
            feats = torch.tanh(self.body(x))
            return self.loss(self.loss.fc(feats), feats, y)
        return self.loss(self.loss.distance(self.body(x)), y)  # MCHAD, CAC, Center: distances


def _losses():
    from ood_plugin_cac import CACLoss
    from ood_plugin_center import CenterLoss
    from ood_plugin_mchad import MCHADLoss
    from ood_plugin_vos import VirtualOutlierSynthesizingRegLoss as VOS

    torch.manual_seed(2)
    yield "mchad", _Trainer(MCHADLoss(n_classes=3, n_dim=3), 3)
    torch.manual_seed(2)
    yield "cac", _Trainer(CACLoss(n_classes=3), 3)  # anchors in a 3-d logit space
    torch.manual_seed(2)
    yield "center", _Trainer(CenterLoss(n_classes=3, n_dim=3), 3)
    torch.manual_seed(2)
    energy = nn.Linear(3, 1, bias=False)  # the default's bias is unused: DDP would refuse it
    nn.init.uniform_(energy.weight)
    vos = VOS(weights_energy=energy, num_classes=3, num_features=5, sample_number=2, sample_from=6)
    g = torch.Generator().manual_seed(4)
    vos.update_queues(torch.randn(6, 5, generator=g), torch.arange(3).repeat(2))  # full
    yield "vos", _Trainer(vos, 5)


def _reference_loss(ref: _Trainer, shards: list, step: int) -> torch.Tensor:
    """Mean of the shards' losses; VOS queues take the shards' features once, in rank order."""
    loss = ref.loss
    if hasattr(loss, "fc"):
        with torch.no_grad():
            feats = torch.cat([torch.tanh(ref.body(x)) for x, _ in shards])
        type(loss).update_queues(loss, feats, torch.cat([y for _, y in shards]))
        loss.update_queues = lambda *a: None  # forward must not queue them again
    total = 0
    for x, y in shards:
        torch.manual_seed(step)
        total = total + ref(x, y) / len(shards)
    loss.__dict__.pop("update_queues", None)
    return total


def _check_ddp_training(rank: int, world: int) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    for name, trainer in _losses():
        ref = copy.deepcopy(trainer)
        _local(ref.loss)
        model = DDP(trainer)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
        for step in range(3):
            g = torch.Generator().manual_seed(50 + step)
            x, y = torch.randn(4 * world, 4, generator=g), torch.arange(4 * world) % 3
            opt.zero_grad()
            torch.manual_seed(step)  # the same virtual outliers on every rank
            model(x[rank::world], y[rank::world]).backward()
            opt.step()
            ref_opt.zero_grad()  # one process: the mean of the ranks' losses
            total = _reference_loss(ref, [(x[r::world], y[r::world]) for r in range(world)], step)
            total.backward()
            ref_opt.step()
        params = torch.cat([p.detach().reshape(-1) for p in trainer.parameters()])
        gathered = [torch.zeros_like(params) for _ in range(world)]
        dist.all_gather(gathered, params)
        for other in gathered:
            assert torch.equal(other, params), f"{name}: ranks differ"
        for (key, a), b in zip(trainer.named_parameters(), ref.parameters()):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=f"{name}: {key}")


def _check_concurrent_save(rank: int, world: int) -> None:
    """Every rank saves to one path at once: a valid checkpoint with the synchronised state."""
    import ood_core

    path = Path(os.environ["OODX_TEST_OUT"], "m.pt2")
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    loss = ood_core.create_loss("ii", n_classes=3, n_embedding=3)
    loss(model(torch.randn(6, 4)), torch.tensor([0, 1, 2, 0, 1, 2]))  # synchronised means
    dist.barrier()
    for _ in range(3):
        ood_core.save(path, model, loss=loss, example_input=torch.randn(2, 4))
    dist.barrier()
    rebuilt = ood_core.load(path).build_loss()
    assert rebuilt.running_centers.counts.tolist() == [2.0 * world] * 3  # all ranks' samples
    assert [p.name for p in path.parent.iterdir() if p.suffix == ".pt2" or "tmp" in p.name] == [
        "m.pt2"
    ], "temporaries left"


CHECKS = [
    _check_ii,
    _check_vos_queues,
    _check_scone,
    _check_svdd,
    _check_scorers,
    _check_metrics,
    _check_ddp_training,
    _check_concurrent_save,
]


def _worker(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    os.environ["OODX_TEST_OUT"] = out
    errors = []
    try:
        for check in CHECKS:
            try:
                check(rank, world)
            except Exception:  # noqa: BLE001 - reported to the parent
                errors.append(f"{check.__name__}: {traceback.format_exc()}")
            dist.barrier()
    finally:
        Path(out, f"rank{rank}.txt").write_text("\n".join(errors))
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_state_matches_one_process(tmp_path, world):
    mp.spawn(_worker, args=(world, str(tmp_path / "store"), str(tmp_path)), nprocs=world)
    errors = [(tmp_path / f"rank{r}.txt").read_text() for r in range(world)]
    assert not any(errors), "\n".join(errors)


def test_size_one_group_and_switch(tmp_path):
    """A group of one rank changes nothing; no group: the helpers say so."""
    from ood_core import distributed

    assert not distributed.is_distributed() and not distributed.should_sync()
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        assert not distributed.is_distributed()
        _check_ii(0, 1)
        _check_vos_queues(0, 1)
    finally:
        dist.destroy_process_group()


def test_env_switch_turns_sync_off():
    code = "import ood_core.distributed as d; print(d.sync_enabled())"
    env = {**os.environ, "OODX_DISTRIBUTED_SYNC": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_docs_torchrun_example_runs(tmp_path):
    """docs/distributed.md's torchrun example, on 2 CPU ranks."""
    text = (ROOT / "docs" / "distributed.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "train_ddp.py"
    script.write_text(code)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([*cmd, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "AUROC" in out.stdout


def test_no_fitted_scorer_fits_each_rank_on_its_own_data():
    """Every fitted scorer synchronises its fit by default (Gram included: its held-out split
    is a per-sample hash), so ``_check_scorers`` covers them all: pinned so that none opts out
    silently."""
    import ood_core

    opted_out = {s.name for s in ood_core.list_scorers() if s.needs_fit and not s.load().sync_dist}
    assert opted_out == set()
