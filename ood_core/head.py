"""The classifier head of post-hoc scorers that read features: checks and its linear weights.

Scorers such as ViM, fDBD, NCI or pNML use the weight ``W`` (C, D) and bias ``b`` (C,) of the
last layer. They take it as ``head=`` (an ``nn.Linear``, or any module exposing ``weight`` and
``bias`` tensors of those shapes); pytorch-ood 0.4.0's ``w=``/``b=`` keywords build one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ood_core.scoring import Scorer
from ood_core.validation import check_float, fail


def refuse_encoder(owner: str, encoder: Any) -> None:
    """oodx scorers read model outputs: pytorch-ood's ``encoder`` argument may only be ``None``."""
    if encoder is not None:
        raise fail(
            owner,
            "encoder",
            "None (oodx scorers read model outputs: run the encoder yourself and pass its "
            "features to fit() and to the scorer)",
            f"a {type(encoder).__name__}",
        )


def require_head(owner: str, head: Any) -> nn.Module:
    """``head`` must be given: an ``nn.Module`` mapping features (B, D) to logits (B, C)."""
    if head is None:
        raise fail(
            owner, "head", "the classifier head, an nn.Module mapping features to logits", "None"
        )
    return head


def linear_from_weights(owner: str, w: Any, b: Any = None) -> nn.Linear:
    """An ``nn.Linear`` with weight ``w`` (C, D) and bias ``b`` (C,) (pytorch-ood's ``w``, ``b``)."""
    if not isinstance(w, Tensor) or not w.is_floating_point() or w.dim() != 2 or 0 in w.shape:
        raise fail(owner, "w", "a float tensor (C, D): the last layer's weight", w)
    if b is not None and (not isinstance(b, Tensor) or tuple(b.shape) != (w.shape[0],)):
        raise fail(owner, "b", f"a float tensor ({w.shape[0]},): the last layer's bias", b)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    with torch.no_grad():
        layer.weight.copy_(w.detach())
        if b is not None:
            layer.bias.copy_(b.detach())
    return layer


def linear_weights(owner: str, head: Any) -> tuple[Tensor, Tensor]:
    """``(W, b)`` of a linear head: ``W`` (C, D), ``b`` (C,) (zeros if it has no bias).

    The head must be an ``nn.Linear`` or expose ``weight`` (C, D) and ``bias`` (C,) or ``None``.
    """
    expected = "an nn.Linear (or a module exposing weight (C, D) and bias (C,) or None)"
    w = getattr(head, "weight", None)
    if not isinstance(w, Tensor) or w.dim() != 2 or 0 in w.shape:
        raise fail(owner, "head", expected, f"{type(head).__name__} with weight {_shape(w)}")
    b = getattr(head, "bias", None)
    if b is None:
        b = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    elif not isinstance(b, Tensor) or tuple(b.shape) != (w.shape[0],):
        raise fail(owner, "head", expected, f"{type(head).__name__} with bias {_shape(b)}")
    return w, b


def check_head_width(owner: str, head: nn.Module, width: int) -> None:
    """The head must take features of ``width``: one probe row must give logits (1, C)."""
    probe = torch.zeros(1, width, dtype=_dtype(head), device=_device(head))
    try:
        with torch.no_grad():
            out = head(probe)
    except Exception as exc:  # noqa: BLE001 - the head's own error says why
        raise fail(
            owner, "head", f"a module taking features (B, {width}) like the fit data", repr(exc)
        ) from exc
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[1] == 0:
        raise fail(owner, "head", "a module returning logits (B, C)", out)


class FeatureScorer(Scorer):
    """A scorer reading features ``(B, D)``; its class decision is the head's argmax when it has
    a ``head`` (otherwise the base class's argmax of what it reads)."""

    reads = "features"

    @property
    def predicts(self) -> bool:
        """A class decision only with a head (:attr:`Scorer.predicts`)."""
        return self.head is not None

    def predict(self, features: Tensor) -> Tensor:
        """``argmax_c head(features)_c`` (int64); NaN and infinite features raise ``ValueError``."""
        if self.head is None:
            return super().predict(features)
        x = check_float(type(self).__name__, "features", features, ranks=(2,))
        return apply_head(self.head, x).argmax(dim=1)


class LinearHeadMeanScorer(FeatureScorer):
    """A feature scorer with a linear head whose fit is the mean of the fit features (the
    ``mean`` buffer, float64 sums over batches; rows labelled ``< 0`` are dropped)."""

    needs_fit = True
    fit_state: Any = ("mean",)
    mean: Tensor

    def __init__(self, encoder: Any, head: nn.Module | None) -> None:
        owner = type(self).__name__
        refuse_encoder(owner, encoder)
        super().__init__(head=require_head(owner, head))
        linear_weights(owner, self.head)
        self.register_buffer("mean", torch.zeros(0))

    def _fit_begin(self) -> None:
        from ood_core.statistics import ClassStatistics

        self._stats = ClassStatistics(scatter=False, owner=type(self).__name__)

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        self._stats.update(x if y is None else x[y >= 0])

    def _fit_end(self) -> None:
        owner = type(self).__name__
        mean = self._stats.finalize().means[0]
        w, _ = linear_weights(owner, self.head)
        if mean.shape[0] != w.shape[1]:
            raise fail(f"{owner}.fit", "x", f"features (B, {w.shape[1]}) for the head", mean[None])
        self.mean = mean.to(self.mean.dtype)

    def _logits(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Checked features in their compute dtype and the head's logits ``W z + b``."""
        from ood_core.validation import check_embedding

        x = check_embedding(type(self).__name__, "features", features, self.mean.shape[0])
        z = x.to(torch.promote_types(x.dtype, torch.float32))
        w, b = linear_weights(type(self).__name__, self.head)
        return z, z @ w.to(z.dtype).T + b.to(z.dtype)


def apply_head(head: nn.Module, x: Tensor) -> Tensor:
    """Logits ``head(x)``, run in the head's dtype and returned in ``x``'s compute dtype."""
    return head(x.to(_dtype(head))).to(torch.promote_types(x.dtype, torch.float32))


def _shape(x: Any) -> str:
    return f"of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


def _dtype(module: nn.Module) -> torch.dtype:
    p = next(iter(module.parameters()), None)
    return torch.float32 if p is None else p.dtype


def _device(module: nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return torch.device("cpu") if p is None else p.device


__all__ = [
    "FeatureScorer",
    "LinearHeadMeanScorer",
    "apply_head",
    "check_head_width",
    "linear_from_weights",
    "linear_weights",
    "refuse_encoder",
    "require_head",
]
