"""Feature banks of fitted scorers: L2 normalisation and a bounded, evenly spread subsample.

A nearest-neighbour scorer's fitted state is the data itself, and its exported graph holds it
(a 1M x 2048 float32 bank is 8 GB). :class:`BoundedRows` keeps at most ``limit`` rows of a
stream of batches: the rows whose stream position ``i`` has the smallest ``frac(i * phi)``
(``phi`` the golden ratio, a low-discrepancy sequence), so the kept rows are spread evenly over
the whole stream, do not depend on how it was cut into batches, and need no random generator.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ood_core.validation import fail

_PHI = (5**0.5 - 1) / 2


def l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Rows of ``x`` scaled to unit L2 norm, ``x / max(|x|_2, eps)`` (a zero row stays zero)."""
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(eps)


class BoundedRows:
    """At most ``limit`` rows of a stream of ``(n, D)`` batches, evenly spread over the stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0
        self._rows: Tensor | None = None
        self._keys = torch.zeros(0, dtype=torch.float64)
        self._pos = torch.zeros(0, dtype=torch.int64)

    def add(self, rows: Tensor) -> None:
        """Offer the next batch of rows (kept as given: dtype and device)."""
        n = rows.shape[0]
        pos = torch.arange(self.seen, self.seen + n, dtype=torch.int64)
        self.seen += n
        keys = torch.frac(pos.to(torch.float64) * _PHI)
        if self._rows is None:
            self._rows = rows[:0]
        if self._rows.shape[0] >= self.limit:  # full: only rows that beat the worst kept key
            enter = keys < self._keys.max()
            rows, keys, pos = rows[enter.to(rows.device)], keys[enter], pos[enter]
        if not n or not keys.numel():
            return
        rows_all = torch.cat([self._rows, rows])
        keys_all, pos_all = torch.cat([self._keys, keys]), torch.cat([self._pos, pos])
        if keys_all.numel() > self.limit:
            keep = keys_all.topk(self.limit, largest=False).indices
            rows_all, keys_all, pos_all = (
                rows_all[keep.to(rows.device)],
                keys_all[keep],
                pos_all[keep],
            )
        self._rows, self._keys, self._pos = rows_all, keys_all, pos_all

    def rows(self) -> Tensor:
        """The kept rows in stream order, ``(min(seen, limit), D)``."""
        if self._rows is None:
            raise ValueError("BoundedRows.rows: no rows were added")
        order = self._pos.argsort()
        return self._rows[order.to(self._rows.device)]

    def all_gather(self) -> None:
        """Keep the rows of every rank of a torch.distributed process group (in place).

        The ranks' streams count as one stream in rank order (rank 0's rows first): positions
        are offset by the rows earlier ranks saw, and the ``limit`` rows of the union with the
        smallest keys are kept. Equal to one process fed all the data when no rank saw more
        than ``limit`` rows; beyond that, each rank's local choice came first, and the kept rows
        are an evenly spread subsample of the union. A no-op when not distributed.
        """
        from ood_core.distributed import _device, all_gather_cat, is_distributed

        if not is_distributed():
            return
        device = self._rows.device if self._rows is not None else _device()
        seen = all_gather_cat(torch.tensor([self.seen], device=device)).cpu()
        offset = int(seen[: torch.distributed.get_rank()].sum())
        width = all_gather_cat(
            torch.tensor([-1 if self._rows is None else self._rows.shape[1]], device=device)
        )
        d = int(width.max())
        if d < 0:
            return
        rows = (
            self._rows
            if self._rows is not None
            else torch.zeros(0, d, dtype=torch.float64, device=device)
        )
        rows = all_gather_cat(rows)
        pos = all_gather_cat((self._pos + offset).to(device)).cpu()
        keys = torch.frac(pos.to(torch.float64) * _PHI)
        if keys.numel() > self.limit:
            keep = keys.topk(self.limit, largest=False).indices
            rows, keys, pos = rows[keep.to(rows.device)], keys[keep], pos[keep]
        self._rows, self._keys, self._pos, self.seen = rows, keys, pos, int(seen.sum())

    def bank(self, owner: str, k: int, arg: str = "max_bank") -> Tensor:
        """The kept rows for a ``k``-nearest-neighbour scorer: ``ValueError`` if fewer than ``k``
        rows came, a warning (see :meth:`warn_if_reduced`) if more than ``limit`` did."""
        rows = self.rows() if self._rows is not None else torch.zeros(0, 0)
        if rows.shape[0] < k:
            raise fail(
                f"{owner}.fit",
                "k",
                "at most the number of ID samples in the fit data",
                f"k={k} with {rows.shape[0]} ID sample(s) (labels < 0 are dropped)",
            )
        self.warn_if_reduced(owner, arg)
        return rows

    def warn_if_reduced(self, owner: str, arg: str) -> None:
        """Warn (``UserWarning``) when the stream held more rows than ``limit``."""
        if self.seen > self.limit:
            warnings.warn(
                f"{owner}.fit: {self.seen} samples exceed {arg}={self.limit}; keeping an evenly "
                f"spread subsample of {self.limit} (the fitted state and the exported graph hold "
                f"these rows; raise {arg} to keep more)",
                UserWarning,
                stacklevel=4,
            )


__all__ = ["BoundedRows", "l2_normalize"]
