"""The small CNN of ``oodx demo`` and how a registered loss is fed from it (uses torch)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from oodx.errors import UserError

#: roles (``ood_core.loss.ROLES``) of forward arguments the demo can feed: its model's outputs
#: (logits, embedding, features), the distances to the loss's centres
#: (``loss.distance(embedding)``), the confidence (the sigmoid of a confidence head whose logit
#: is the last column of the ``logits`` output) and the target
FEEDABLE_ROLES = ("logits", "embedding", "features", "distances", "confidence", "target")
#: pytorch-ood's constructor keywords for the problem's size, which the demo fills in from its
#: data: ``classes`` (the class count) or ``width`` (of the embedding or features the loss reads)
SIZE_KEYWORDS = {
    "n_classes": "classes",
    "num_classes": "classes",
    "n_dim": "width",
    "n_embedding": "width",
    "n_features": "width",
    "num_features": "width",
}


class DemoNet(nn.Module):
    """A small CNN for 28 x 28 grayscale images in [0, 1].

    Three conv blocks give 128 ``features``; a linear head gives ``logits`` (one per class,
    then ``extra_logits`` more, e.g. a background class, then the confidence head's logit when
    ``confidence``) and another an ``embedding`` of ``embedding_dim`` (batch-normalised without
    affine parameters when ``embedding_norm="batch"``, as the II loss's authors train it).
    ``forward`` returns only the output named by ``output`` (what the scorer reads), so the
    exported model's ``output`` is what the scorer gets; :meth:`outputs` returns all three for
    training. With ``with_logits`` (for a scorer that reads embeddings or features and has no
    class decision) ``forward`` returns ``{output: ..., "logits": ...}``: the exporter still
    scores ``output`` and takes the class from the logits.
    """

    def __init__(
        self,
        n_classes: int = 10,
        embedding_dim: int = 16,
        output: str = "logits",
        *,
        extra_logits: int = 0,
        confidence: bool = False,
        embedding_norm: str | None = None,
    ) -> None:
        super().__init__()
        if output not in ("logits", "embedding", "features"):
            raise ValueError(
                f"DemoNet: output must be logits, embedding or features, got {output!r}"
            )
        if embedding_norm not in (None, "batch"):
            raise ValueError(
                f"DemoNet: embedding_norm must be None or 'batch', got {embedding_norm!r}"
            )
        self.output = output
        self.with_logits = False
        self.n_classes = n_classes
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 3 * 3, 128),
            nn.ReLU(),
        )
        self.logits_head = nn.Linear(128, n_classes + extra_logits)
        self.confidence_head = nn.Linear(128, 1) if confidence else None
        self.embedding_head = nn.Linear(128, embedding_dim)
        self.embedding_norm = (
            nn.BatchNorm1d(embedding_dim, affine=False) if embedding_norm == "batch" else None
        )
        self.register_buffer("mean", torch.tensor(0.1307))
        self.register_buffer("std", torch.tensor(0.3081))

    def _logits(self, h: Tensor) -> Tensor:
        logits = self.logits_head(h)
        if self.confidence_head is not None:
            logits = torch.cat([logits, self.confidence_head(h)], dim=1)
        return logits

    def _embedding(self, h: Tensor) -> Tensor:
        z = self.embedding_head(h)
        return z if self.embedding_norm is None else self.embedding_norm(z)

    def outputs(self, x: Tensor) -> dict[str, Tensor]:
        """``features`` ``(B, 128)``, ``logits`` ``(B, C [+ extra] [+ 1])`` and ``embedding``
        ``(B, D)``."""
        h = self.body((x - self.mean) / self.std)
        return {"features": h, "logits": self._logits(h), "embedding": self._embedding(h)}

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        h = self.body((x - self.mean) / self.std)
        if self.output == "logits":
            return self._logits(h)
        out = self._embedding(h) if self.output == "embedding" else h
        if self.with_logits:
            return {self.output: out, "logits": self._logits(h)}
        return out


def unsupported_roles(roles: tuple[str, ...]) -> list[str]:
    """The roles of a loss's forward arguments (registration ``inputs``) the demo cannot feed."""
    return [role for role in roles if role not in FEEDABLE_ROLES]


def loss_kwargs(
    target: Any, roles: tuple[str, ...], n_classes: int, dims: Mapping[str, int], given: Mapping
) -> dict[str, Any]:
    """Constructor keywords for the loss class ``target``: the class count and the width of what
    it reads (``dims`` by output name) where its signature asks for them (:data:`SIZE_KEYWORDS`),
    then ``given`` (``--loss-arg``) on top."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}
    reads_features = "features" in roles and not {"embedding", "distances"} & set(roles)
    sizes = {"classes": n_classes, "width": dims["features" if reads_features else "embedding"]}
    kwargs: dict[str, Any] = {}
    for name, param in params.items():
        size = SIZE_KEYWORDS.get(name)
        if name in given or size is None or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if size == "classes" or param.default is inspect.Parameter.empty or param.default is None:
            kwargs[name] = sizes[size]
    kwargs.update(given)
    missing = [
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty
        and name not in kwargs
        and name != "self"
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if missing:
        raise UserError(
            f"the loss needs constructor argument(s) {', '.join(missing)} that the demo cannot "
            "guess.",
            "give them with --loss-arg NAME=VALUE (repeatable)",
        )
    return kwargs


def feed(
    loss: nn.Module, roles: tuple[str, ...], outputs: Mapping[str, Tensor], y: Tensor
) -> tuple[Tensor, ...]:
    """The loss's forward arguments, by the roles of its registration's ``inputs`` in order.

    With a ``confidence`` role the last column of the logits output is the confidence logit:
    ``logits`` gets the columns before it and ``confidence`` its sigmoid ``(B, 1)``.
    """
    from ood_core.loss import ROLE_OUTPUT

    split = "confidence" in roles
    args = []
    for role in roles:
        if role == "target":
            args.append(y)
        elif role == "distances":
            args.append(loss.distance(outputs[ROLE_OUTPUT[role]]))
        elif role == "confidence":
            args.append(torch.sigmoid(outputs["logits"][:, -1:]))
        elif role == "logits" and split:
            args.append(outputs["logits"][:, :-1])
        elif role in FEEDABLE_ROLES:
            args.append(outputs[role])
        else:  # checked before training starts
            raise UserError(f"the demo cannot feed a loss argument with the role {role!r}")
    return tuple(args)
