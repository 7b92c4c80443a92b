"""The small CNN of ``oodx demo`` and how a registered loss is fed from it (uses torch)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from oodx.errors import UserError

#: forward-argument names the demo can feed, by what they are
OUTPUT_NAMES = {
    "logits": "logits",
    "embedding": "embedding",
    "embeddings": "embedding",
    "z": "embedding",
    "features": "features",
}
TARGET_NAMES = ("target", "targets", "y", "labels")
#: ``distmat``: squared distances to the loss's centres, ``loss.distance(embedding)``
DISTANCE_NAMES = ("distmat",)
#: constructor parameters the demo fills in from the problem's size
CLASS_KWARGS = ("n_classes", "num_classes")
DIM_KWARGS = ("n_dim", "n_features", "n_embedding", "num_features", "dim", "embedding_dim")


class DemoNet(nn.Module):
    """A small CNN for 28 x 28 grayscale images in [0, 1].

    Three conv blocks give 128 ``features``; a linear head gives ``logits`` (one per class) and
    another an ``embedding`` of ``embedding_dim``. ``forward`` returns only the output named by
    ``output`` (what the scorer reads), so the exported model's ``output`` is what the scorer
    gets; :meth:`outputs` returns all three for training. With ``with_logits`` (for a scorer
    that reads embeddings or features and has no class decision) ``forward`` returns
    ``{output: ..., "logits": ...}``: the exporter still scores ``output`` and takes the class
    from the logits.
    """

    def __init__(
        self, n_classes: int = 10, embedding_dim: int = 16, output: str = "logits"
    ) -> None:
        super().__init__()
        if output not in ("logits", "embedding", "features"):
            raise ValueError(
                f"DemoNet: output must be logits, embedding or features, got {output!r}"
            )
        self.output = output
        self.with_logits = False
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
        self.logits_head = nn.Linear(128, n_classes)
        self.embedding_head = nn.Linear(128, embedding_dim)
        self.register_buffer("mean", torch.tensor(0.1307))
        self.register_buffer("std", torch.tensor(0.3081))

    def outputs(self, x: Tensor) -> dict[str, Tensor]:
        """``features`` ``(B, 128)``, ``logits`` ``(B, C)`` and ``embedding`` ``(B, D)``."""
        h = self.body((x - self.mean) / self.std)
        return {"features": h, "logits": self.logits_head(h), "embedding": self.embedding_head(h)}

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        h = self.body((x - self.mean) / self.std)
        if self.output == "logits":
            return self.logits_head(h)
        out = self.embedding_head(h) if self.output == "embedding" else h
        if self.with_logits:
            return {self.output: out, "logits": self.logits_head(h)}
        return out


def unsupported_inputs(inputs: tuple[str, ...]) -> list[str]:
    """The forward arguments (registration ``inputs``) the demo cannot feed."""
    known = set(OUTPUT_NAMES) | set(TARGET_NAMES) | set(DISTANCE_NAMES)
    return [name for name in inputs if name not in known]


def loss_kwargs(
    target: Any, inputs: tuple[str, ...], n_classes: int, dims: Mapping[str, int], given: Mapping
) -> dict[str, Any]:
    """Constructor keywords for the loss class ``target``: the class count and embedding size
    where its signature asks for them, then ``given`` (``--loss-arg``) on top."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}
    reads_features = "features" in inputs and not {"embedding", "distmat"} & set(inputs)
    dim = dims["features"] if reads_features else dims["embedding"]
    kwargs: dict[str, Any] = {}
    for name, param in params.items():
        if name in given or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name in CLASS_KWARGS:
            kwargs[name] = n_classes
        elif name in DIM_KWARGS and param.default is inspect.Parameter.empty:
            kwargs[name] = dim
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
    loss: nn.Module, inputs: tuple[str, ...], outputs: Mapping[str, Tensor], y: Tensor
) -> tuple[Tensor, ...]:
    """The loss's forward arguments, in the order of its registration's ``inputs``."""
    args = []
    for name in inputs:
        if name in TARGET_NAMES:
            args.append(y)
        elif name in OUTPUT_NAMES:
            args.append(outputs[OUTPUT_NAMES[name]])
        elif name in DISTANCE_NAMES:
            args.append(loss.distance(outputs["embedding"]))
        else:  # checked before training starts
            raise UserError(f"the demo cannot feed the loss argument {name!r}")
    return tuple(args)
