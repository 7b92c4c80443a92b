"""A small synthetic OOD problem and a training loop, for plugin smoke tests.

In-distribution data are ``K`` Gaussian clusters in ``R^8``; outlier-exposure data and OOD test
data are drawn from other regions of the space (a broad shell around the clusters, and clusters
of their own). A small MLP exposes ``features`` (penultimate layer), ``embedding`` and
``logits``, so every loss can be fed by the roles of its forward arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass
class ToyData:
    """Train/test tensors of the toy problem; OOD targets are ``-1``."""

    x_train: Tensor
    y_train: Tensor
    x_ood_train: Tensor
    x_test: Tensor
    y_test: Tensor
    x_ood_test: Tensor


def toy_data(
    num_classes: int = 4, n_per_class: int = 200, in_dim: int = 8, seed: int = 0
) -> ToyData:
    """Make the toy problem (deterministic for a seed)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, in_dim, generator=g) * 4.0

    def id_samples(n: int) -> tuple[Tensor, Tensor]:
        y = torch.arange(num_classes).repeat_interleave(n)
        x = means[y] + torch.randn(len(y), in_dim, generator=g)
        return x, y

    def shell(n: int) -> Tensor:  # outliers around and between the clusters
        direction = torch.nn.functional.normalize(torch.randn(n, in_dim, generator=g), dim=1)
        radius = 6.0 + 6.0 * torch.rand(n, 1, generator=g)
        return direction * radius

    x_train, y_train = id_samples(n_per_class)
    x_test, y_test = id_samples(n_per_class // 2)
    ood_means = torch.randn(3, in_dim, generator=g) * 4.0
    k = torch.randint(0, 3, (n_per_class,), generator=g)
    x_ood_test = torch.cat(
        [ood_means[k] + torch.randn(n_per_class, in_dim, generator=g), shell(n_per_class)]
    )
    return ToyData(x_train, y_train, shell(num_classes * n_per_class), x_test, y_test, x_ood_test)


class ToyNet(nn.Module):
    """MLP returning a dict with ``features`` (hidden), ``embedding`` (``dim``) and ``logits``."""

    def __init__(
        self, in_dim: int = 8, num_classes: int = 4, dim: int = 8, hidden: int = 64
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.to_embedding = nn.Linear(hidden, dim)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        h = self.body(x)
        return {"features": h, "embedding": self.to_embedding(h), "logits": self.head(h)}


def _auroc(id_scores: Tensor, ood_scores: Tensor) -> float:
    from ood_core.metrics import OODMetrics

    metrics = OODMetrics()
    metrics.update(
        torch.cat([id_scores, ood_scores]),
        torch.cat(
            [
                torch.zeros(len(id_scores), dtype=torch.long),
                -torch.ones(len(ood_scores), dtype=torch.long),
            ]
        ),
    )
    return float(metrics.compute()["AUROC"])


def smoke_train(
    loss: nn.Module,
    *,
    inputs: tuple[str, ...],
    reads: str,
    scorer: Callable[[Tensor], Tensor] | None = None,
    use_ood: bool = True,
    num_classes: int = 4,
    dim: int = 8,
    steps: int = 300,
    batch: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    feed: Callable[[dict[str, Tensor], Tensor], tuple[Any, ...]] | None = None,
    after_step: Callable[[ToyNet, nn.Module, int], None] | None = None,
) -> dict[str, float]:
    """Train :class:`ToyNet` with ``loss`` and return ``{"AUROC": ..., "ACC": ...}`` on test data.

    ``inputs`` are the roles of the loss's forward arguments (its registration's ``inputs``;
    forward parameter names are read through the loss's ``roles``); ``feed`` overrides how a batch is turned into forward arguments. With ``use_ood`` each batch has as
    many outlier-exposure samples (target ``-1``) as ID samples. The scores come from ``scorer``
    (default ``loss.scorer()``) applied to the model output named ``reads``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest and immune to contention
    try:
        return _smoke_train(
            loss,
            inputs,
            reads,
            scorer,
            use_ood,
            num_classes,
            dim,
            steps,
            batch,
            lr,
            seed,
            feed,
            after_step,
        )
    finally:
        torch.set_num_threads(threads)


def _arguments(
    loss: nn.Module, inputs: tuple[str, ...], out: dict[str, Tensor], y: Tensor
) -> tuple[Tensor, ...]:
    """Forward arguments by role: ``inputs`` entries are roles or forward parameter names,
    which the loss's ``roles`` turn into roles (``distances`` = ``loss.distance(embedding)``)."""
    declared = getattr(type(loss), "roles", {})
    args = []
    for name in inputs:
        role = declared.get(name, name)
        if role == "target":
            args.append(y)
        elif role == "distances" and callable(getattr(loss, "distance", None)):
            args.append(loss.distance(out["embedding"]))
        elif role in out:
            args.append(out[role])
        else:
            raise ValueError(
                f"smoke_train: cannot feed {name!r} (role {role!r}): ToyNet outputs "
                f"{', '.join(out)}; give feed=lambda out, y: (...)"
            )
    return tuple(args)


def _smoke_train(
    loss, inputs, reads, scorer, use_ood, num_classes, dim, steps, batch, lr, seed, feed, after_step
) -> dict[str, float]:
    torch.manual_seed(seed)
    data = toy_data(num_classes=num_classes, seed=seed)
    net = ToyNet(num_classes=num_classes, dim=dim)
    params = list(net.parameters()) + [p for p in loss.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    loss.train()
    for step in range(steps):
        idx = torch.randint(0, len(data.x_train), (batch,), generator=g)
        x, y = data.x_train[idx], data.y_train[idx]
        if use_ood:
            oidx = torch.randint(0, len(data.x_ood_train), (batch,), generator=g)
            x = torch.cat([x, data.x_ood_train[oidx]])
            y = torch.cat([y, torch.full((batch,), -1, dtype=torch.long)])
        out = net(x)
        args = feed(out, y) if feed is not None else _arguments(loss, inputs, out, y)
        value = loss(*args)
        opt.zero_grad()
        value.backward()
        opt.step()
        if after_step is not None:
            after_step(net, loss, step)
    net.eval()
    loss.eval()
    score = scorer if scorer is not None else loss.scorer().eval()
    with torch.no_grad():
        out_id, out_ood = net(data.x_test), net(data.x_ood_test)
        s_id, s_ood = score(out_id[reads]), score(out_ood[reads])
        pred_fn = getattr(score, "predict", None)
        acc = (
            float((pred_fn(out_id[reads]) == data.y_test).float().mean())
            if pred_fn
            else float("nan")
        )
    return {"AUROC": _auroc(s_id, s_ood), "ACC": acc}
