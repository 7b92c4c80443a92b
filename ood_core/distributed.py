"""Keeping state consistent across ranks when a ``torch.distributed`` process group is running.

oodx synchronises on its own, with no wrapper: when a process group is initialised with a world
size above 1, stateful losses all-reduce / all-gather what they add to their state in forward,
fitted scorers all-reduce their sufficient statistics before finalising, and
:class:`~ood_core.metrics.OODMetrics` gathers at ``compute()``. With no process group, or one of
size 1, nothing happens (one cheap check per call).

Switches (see ``docs/distributed.md``):

- per object: ``loss.sync_dist = False`` / ``scorer.sync_dist = False``;
  ``OODMetrics(sync_on_compute=False)``;
- globally: the environment variable ``OODX_DISTRIBUTED_SYNC=0`` (read at import) or
  :func:`set_sync`.

Under ``torch.compile`` tracing the helpers use the traceable functional collectives
(``torch.distributed._functional_collectives``), so a compiled loss keeps a full graph; a
gather of unequal lengths is not traceable there, so every rank must pass the same batch size
to a compiled loss that gathers (``drop_last=True``). In eager mode lengths may differ.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

_ENABLED = os.environ.get("OODX_DISTRIBUTED_SYNC", "1").strip().lower() not in {
    "0",
    "false",
    "no",
    "off",
}


def set_sync(enabled: bool) -> None:
    """Switch oodx's cross-rank synchronisation on or off for this process."""
    global _ENABLED
    _ENABLED = bool(enabled)


def sync_enabled() -> bool:
    """Whether the global switch (``OODX_DISTRIBUTED_SYNC`` / :func:`set_sync`) is on."""
    return _ENABLED


def is_distributed() -> bool:
    """A ``torch.distributed`` process group is initialised with a world size above 1."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def should_sync(owner: Any = None) -> bool:
    """Synchronise now: distributed, the global switch on, and ``owner.sync_dist`` not False."""
    return _ENABLED and getattr(owner, "sync_dist", True) is not False and is_distributed()


def _tracing() -> bool:
    return bool(torch.compiler.is_compiling())


def all_reduce_sum(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Sums of ``tensors`` over all ranks (new tensors; the inputs are unchanged).

    The tensors are flattened into one buffer per dtype, so one collective runs per dtype.
    Every rank gets the same result.
    """
    out: list[Tensor | None] = [None] * len(tensors)
    for dtype in dict.fromkeys(t.dtype for t in tensors):
        idx = [i for i, t in enumerate(tensors) if t.dtype == dtype]
        flat = torch.cat([tensors[i].detach().reshape(-1) for i in idx])
        flat = _reduce(flat)
        for i, part in zip(idx, flat.split([tensors[i].numel() for i in idx])):
            out[i] = part.reshape(tensors[i].shape)
    return tuple(out)  # type: ignore[arg-type]


def _reduce(flat: Tensor) -> Tensor:
    if _tracing():
        from torch.distributed import _functional_collectives as fc

        return fc.wait_tensor(fc.all_reduce(flat, "sum", torch.distributed.group.WORLD))
    flat = flat.clone()
    torch.distributed.all_reduce(flat)
    return flat


def all_reduce_max(value: int) -> int:
    """Largest ``value`` over all ranks (a host integer: shapes, counts)."""
    t = torch.tensor([int(value)], dtype=torch.int64, device=_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


def all_reduce_int(value: int) -> int:
    """Sum of a host integer over all ranks."""
    t = torch.tensor([int(value)], dtype=torch.int64, device=_device())
    torch.distributed.all_reduce(t)
    return int(t.item())


def _device() -> torch.device:
    """The device collectives of the default group run on (CUDA for NCCL)."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_cat(tensor: Tensor) -> Tensor:
    """Rows of ``tensor`` ``(n_r, ...)`` of every rank concatenated in rank order.

    Lengths may differ between ranks (uneven last batches, empty ranks): the lengths are
    gathered first, every rank pads to the longest, and the padding is dropped. The trailing
    shape and dtype must agree. Under ``torch.compile`` tracing every rank must give the same
    length (a traceable gather of fixed size).
    """
    group = torch.distributed.group.WORLD
    world = torch.distributed.get_world_size()
    x = tensor.detach()
    if _tracing():
        from torch.distributed import _functional_collectives as fc

        return fc.wait_tensor(fc.all_gather_tensor(x.contiguous(), 0, group))
    n = torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    torch.distributed.all_gather(sizes, n)
    lengths = [int(s.item()) for s in sizes]
    longest = max(lengths)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    torch.distributed.all_gather(parts, padded.contiguous())
    return torch.cat([p[:length] for p, length in zip(parts, lengths)])


def _gather_any(owner: str, name: str, value: Any) -> Any:
    """A tensor or list of tensors ``(n, ...)`` concatenated over ranks (rank order)."""
    parts = value if isinstance(value, list) else [value]
    meta = [(tuple(p.shape[1:]), p.dtype, p.device) for p in parts if isinstance(p, Tensor)]
    if len(meta) != len(parts):
        raise TypeError(f"{owner}: fit_gathers attribute {name!r} must hold tensors")
    known: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(known, meta[0][:2] if meta else None)
    ref = next((m for m in known if m is not None), None)
    if ref is None:
        return value
    device = meta[0][2] if meta else (_device() if _device().type == "cuda" else None)
    local = torch.cat(parts) if parts else torch.zeros((0, *ref[0]), dtype=ref[1], device=device)
    out = all_gather_cat(local)
    return [out] if isinstance(value, list) else out


def sync_fit_accumulators(scorer: Any) -> None:
    """The default distributed step of ``Scorer.fit`` (see ``Scorer._fit_sync``)."""
    from ood_core.bank import BoundedRows
    from ood_core.statistics import ClassStatistics

    owner = type(scorer).__name__
    for value in list(vars(scorer).values()):
        if isinstance(value, ClassStatistics):
            value.all_reduce()
        elif isinstance(value, BoundedRows):
            value.all_gather()
    for name in scorer.fit_sums:
        value = getattr(scorer, name)
        if isinstance(value, Tensor):
            setattr(scorer, name, all_reduce_sum(value)[0])
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{owner}: fit_sums attribute {name!r} must be a tensor or a number")
        else:
            total = all_reduce_sum(torch.tensor([value], dtype=torch.float64, device=_device()))
            setattr(scorer, name, type(value)(total[0].item()))
    for name in scorer.fit_gathers:
        setattr(scorer, name, _gather_any(owner, name, getattr(scorer, name)))
    for names, op in ((scorer.fit_mins, "MIN"), (scorer.fit_maxes, "MAX")):
        for name in names:
            value = getattr(scorer, name)
            if not isinstance(value, Tensor):
                raise TypeError(f"{owner}: fit_{op.lower()} attribute {name!r} must be a tensor")
            value = value.clone()
            torch.distributed.all_reduce(value, op=getattr(torch.distributed.ReduceOp, op))
            setattr(scorer, name, value)


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return torch.distributed.get_rank() if is_distributed() else 0


__all__ = [
    "all_gather_cat",
    "all_reduce_int",
    "all_reduce_max",
    "all_reduce_sum",
    "is_distributed",
    "rank",
    "set_sync",
    "should_sync",
    "sync_enabled",
    "sync_fit_accumulators",
]
