"""Gram: per-class bounds of higher-order Gram-matrix features of several layers' feature maps."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.bank import BoundedRows
from ood_core.head import apply_head, require_head
from ood_core.outputs import select_output
from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.shaping import check_fraction, fail_closed_rows
from ood_core.statistics import refuse_model
from ood_core.validation import check_float, check_positive_int, fail

#: held-out Gram feature rows kept to estimate the expected deviation per layer
DEFAULT_MAX_HELD_OUT = 1 << 16
_P = (1 << 31) - 1  # a Mersenne prime: the split's hash is computed modulo it, in int64


def split_keys(rows: Tensor) -> Tensor:
    """``(B,)`` keys in ``[0, 1)``, a hash of each row's exact float64 bits (modulo ``2^31 - 1``).

    ``sum_i h_i w_i mod P`` over the 32-bit halves ``h_i`` of the row's values, fixed weights
    ``w_i``, then two multiplicative mixing rounds: integer arithmetic, so a row's key does not
    depend on its batch, its position, its rank or the order of the sum; no random generator.
    """
    bits = rows.to(torch.float64).contiguous().view(torch.int64)
    halves = torch.stack([bits & 0xFFFFFFFF, (bits >> 32) & 0xFFFFFFFF], dim=2).flatten(1) % _P
    i = torch.arange(1, halves.shape[1] + 1, dtype=torch.int64, device=rows.device)
    weights = (i * 1103515245 + 12345) % _P + 1
    h = ((halves * weights) % _P).sum(dim=1) % _P
    for _ in range(2):
        h = (h * 48271 + 11) % _P
    return h.to(torch.float64) / _P


def held_out(rows: Tensor, fraction: float) -> Tensor:
    """``(B,)`` bool: rows held out of the bounds to estimate ``E[delta]``, ``key < fraction``
    (:func:`split_keys`): about ``fraction`` of each class, decided by the row alone."""
    return split_keys(rows) < fraction


def gram_features(layer: Tensor, poles: Sequence[int]) -> Tensor:
    """``(B, P C)``: for each pole ``p``, ``sign(g) |g| ** (1 / p)`` with ``g`` the row sums of
    ``F^p (F^p)^T``, ``F`` the layer as ``(C, H W)`` and ``F^p`` elementwise.

    Computed on ``F / s`` (``s = max |F|`` per sample) and rescaled by ``s ** 2``: equal in exact
    arithmetic, and no overflow for large poles. Row sums as ``F^p (sum_j F_j^p)``: no C x C matrix.
    """
    f = layer.flatten(2) if layer.dim() > 2 else layer.unsqueeze(2)  # features: C x 1
    scale = f.abs().amax(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(f.dtype).tiny)
    unit = f / scale
    out = []
    for p in poles:
        fp = unit**p
        g = (fp @ fp.sum(dim=1).unsqueeze(2)).squeeze(2)
        out.append(g.sign() * g.abs() ** (1.0 / p) * scale.flatten(1) ** 2)
    return torch.cat(out, dim=1)


def deviation(g: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """Relative excess of each feature over its bounds: ``relu(lo - g) / |lo + 1e-6| + relu(g -
    hi) / |hi + 1e-6|`` (the paper's normalisation, with the original code's 1e-6)."""
    below = torch.relu(lower - g) / (lower + 1e-6).abs()
    return below + torch.relu(g - upper) / (upper + 1e-6).abs()


def _sync_shapes(module: nn.Module, incompatible_keys: Any) -> None:
    # after load_state_dict: poles and channels (Python ints, for the graph) follow the buffers
    module._poles = tuple(int(p) for p in module.poles.tolist())
    module._channels = tuple(int(c) for c in module.channels.tolist())


class Gram(Scorer):
    """Outlier score ``sum_l delta_l(x) / E[delta_l]``, ``delta_l`` the deviation of layer ``l``'s
    Gram features (:func:`gram_features`, poles ``num_poles_list``, default ``1..L``) from the
    min/max bounds of the predicted class, summed over features and poles (:func:`deviation`).

    Sastry and Oore, "Detecting Out-of-Distribution Examples with Gram Matrices", ICML 2020.
    Reads ``feature_maps``: a tuple/list of ``L`` layers' maps ``(B, C_l, ...)`` (or one tensor,
    one layer). The class is the argmax of ``head`` on the global average of the last layer
    (torchvision style). ``fit(x, y)`` needs labels: bounds per class over the ID samples kept
    for training; ``E[delta_l]`` is the mean deviation of the held-out ones, a sample being held
    out when the hash of its Gram features is below ``f = validation_fraction``
    (:func:`held_out`: about ``f n`` of ``n``, no random generator, independent of order,
    batches and ranks). Distributed fits all-reduce the min/max bounds and counts and gather the
    held-out rows in rank order: every rank holds the one-process fit.
    """

    reads = "feature_maps"
    needs_fit = True
    fit_needs_labels = True
    fit_sums = ("_counts",)
    fit_mins = ("_min",)
    fit_maxes = ("_max",)
    fit_state = ("lower", "upper", "layer_of", "norms", "poles", "channels")
    lower: Tensor
    upper: Tensor
    layer_of: Tensor
    norms: Tensor
    poles: Tensor
    channels: Tensor

    def __init__(
        self,
        head: nn.Module | None = None,
        feature_layers: Any = None,
        num_classes: int | None = None,
        num_poles_list: Sequence[int] | None = None,
        *,
        validation_fraction: float = 0.1,
        max_held_out: int = DEFAULT_MAX_HELD_OUT,
    ) -> None:
        owner = type(self).__name__
        refuse_model(owner, "feature_layers", feature_layers)
        super().__init__(head=require_head(owner, head))
        given = num_classes is not None
        self.num_classes = check_positive_int(owner, "num_classes", num_classes) if given else None
        self._poles = _check_poles(owner, num_poles_list)
        self.validation_fraction = check_fraction(
            owner, "validation_fraction", validation_fraction, below_one=True
        )
        self.max_held_out = check_positive_int(owner, "max_held_out", max_held_out)
        self._channels: tuple[int, ...] = ()
        for name, shape in (("lower", (0, 0)), ("upper", (0, 0)), ("layer_of", (0, 0))):
            self.register_buffer(name, torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("norms", torch.ones(0, dtype=torch.float64))
        self.register_buffer("poles", torch.tensor(self._poles, dtype=torch.int64))
        self.register_buffer("channels", torch.zeros(0, dtype=torch.int64))
        self.register_load_state_dict_post_hook(_sync_shapes)

    def _layers(self, x: Any, owner: str, arg: str) -> tuple[Tensor, ...]:
        """Checked layer maps (a tensor is one layer), of one batch size, fitted channels."""
        if isinstance(x, Mapping):
            x = select_output(x, self.reads, owner=owner)
        layers = tuple(x) if isinstance(x, (tuple, list)) else (x,)
        if not layers:
            raise fail(owner, arg, "a tensor or a non-empty tuple of layer feature maps", "()")
        layers = tuple(check_float(owner, arg, t, ranks=(2, 3, 4)) for t in layers)
        if any(t.shape[0] != layers[0].shape[0] for t in layers):
            raise fail(owner, arg, "layers of one batch size", [tuple(t.shape) for t in layers])
        channels = tuple(t.shape[1] for t in layers)
        if self._channels and channels != self._channels:
            raise fail(owner, arg, f"layers with channels {self._channels} as fitted", channels)
        return layers

    def _features(self, layers: tuple[Tensor, ...], dtype: torch.dtype) -> Tensor:
        return torch.cat([gram_features(t.to(dtype), self._poles) for t in layers], dim=1)

    def _logits(self, layers: tuple[Tensor, ...], dtype: torch.dtype) -> Tensor:
        last = layers[-1].to(dtype)
        return apply_head(self.head, last.flatten(2).mean(2) if last.dim() > 2 else last)

    # -- fit ------------------------------------------------------------------------------

    def fit(self, x: Any, y: Tensor | None = None) -> Gram:
        """Fit on ``x`` (layer maps: a tuple, with labels ``y``; or batches ``(layers, y)``)."""
        if isinstance(x, (tuple, list)) and y is not None and all(isinstance(t, Tensor) for t in x):
            x, y = [(tuple(x), y)], None  # one batch of several layers
        return super().fit(x, y)

    def _fit_begin(self) -> None:
        self._channels = ()
        self._held = BoundedRows(self.max_held_out)

    def _fit_batch(
        self, owner: str, i: int, x: Any, y: Any, shape: tuple[int, ...] | None
    ) -> tuple[Tensor, Tensor | None]:
        layers = self._layers(x, f"{owner}.fit", f"x (batch {i})")
        if not self._channels:
            self._start(owner, tuple(t.shape[1] for t in layers))
        feats = self._features(tuple(t.detach() for t in layers), torch.float64)
        return super()._fit_batch(owner, i, feats, y, shape)

    def _start(self, owner: str, channels: tuple[int, ...]) -> None:
        """Fix channels, poles and classes from the first batch's layer channels."""
        self._channels = channels
        self._poles = self._poles or tuple(range(1, len(channels) + 1))
        probe = torch.zeros(1, channels[-1])  # apply_head casts to the head's dtype
        width = int(apply_head(self.head, probe).shape[1])
        if self.num_classes is not None and self.num_classes != width:
            raise fail(owner, "num_classes", f"the head's {width} logits", self.num_classes)
        self._k = width
        n = len(self._poles) * sum(self._channels)
        self._min = torch.full((width, n), torch.inf, dtype=torch.float64)
        self._max = torch.full((width, n), -torch.inf, dtype=torch.float64)
        self._counts = torch.zeros(width, dtype=torch.int64)

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        assert y is not None  # fit_needs_labels
        x, y = x[y >= 0], y[y >= 0]
        if bool((y >= self._k).any()):
            raise fail(f"{type(self).__name__}.fit", "y", f"labels < {self._k} (the head's)", y)
        self._counts += torch.bincount(y.cpu(), minlength=self._k)
        held = held_out(x, self.validation_fraction)
        fit, fy = x[~held].cpu(), y[~held].cpu()
        index = fy[:, None].expand_as(fit)
        self._min.scatter_reduce_(0, index, fit, "amin")
        self._max.scatter_reduce_(0, index, fit, "amax")
        self._held.add(torch.cat([y[held, None].double(), x[held]], dim=1).cpu())

    def _fit_sync(self) -> None:
        """A rank that saw no batch takes the layer channels of one that did, then the bounds
        are reduced by min / max, the counts summed, the held-out rows gathered in rank order."""
        shapes: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(shapes, (self._channels, self._poles))
        channels, poles = next((c, p) for c, p in shapes if c)
        if not self._channels:
            self._poles = poles
            self._start(type(self).__name__, channels)
        super()._fit_sync()

    def _fit_end(self) -> None:
        owner = type(self).__name__
        empty = (self._counts == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"{owner}.fit: argument 'y' holds no ID samples of class(es) {empty}; every "
                f"class of the head's {self._k} needs some"
            )
        owners = [li for li, c in enumerate(self._channels) for _ in self._poles for _ in range(c)]
        layer_of = torch.nn.functional.one_hot(torch.tensor(owners), len(self._channels))
        self.layer_of = layer_of.double()
        self.lower, self.upper = self._min.clone(), self._max.clone()
        self.norms = self._expected_deviation(owner)
        self.poles = torch.tensor(self._poles, dtype=torch.int64)
        self.channels = torch.tensor(self._channels, dtype=torch.int64)
        del self._held, self._min, self._max, self._counts

    def _expected_deviation(self, owner: str) -> Tensor:
        """Mean held-out deviation per layer (1 where none is held out or it is 0)."""
        if self._held.seen == 0:
            return torch.ones(len(self._channels), dtype=torch.float64)
        if self._held.seen > self._held.limit:
            warnings.warn(
                f"{owner}.fit: {self._held.seen} held-out samples exceed max_held_out="
                f"{self._held.limit}; the expected deviation is the mean over an evenly spread "
                f"subsample of {self._held.limit}",
                UserWarning,
                stacklevel=4,
            )
        rows = self._held.rows()
        k = rows[:, 0].long()
        dev = deviation(rows[:, 1:], self.lower[k], self.upper[k]) @ self.layer_of
        mean = dev.mean(0)
        return torch.where(mean > 0, mean, torch.ones_like(mean))

    # -- scoring ----------------------------------------------------------------------------

    def forward(self, feature_maps: Any) -> Tensor:
        self._check_fitted()
        layers = self._layers(feature_maps, type(self).__name__, "feature_maps")
        dtype = compute_dtype(layers[0].dtype)
        k = self._logits(layers, dtype).argmax(dim=1)
        lower, upper = self.lower.to(dtype)[k], self.upper.to(dtype)[k]
        dev = deviation(self._features(layers, dtype), lower, upper)
        scores = ((dev @ self.layer_of.to(dtype)) / self.norms.to(dtype)).sum(dim=1)
        return fail_closed_rows(scores, torch.cat([t.flatten(1) for t in layers], dim=1))

    def predict(self, feature_maps: Any) -> Tensor:
        """The head's argmax on the global average of the last layer (int64 ``(B,)``)."""
        layers = self._layers(feature_maps, type(self).__name__, "feature_maps")
        return self._logits(layers, compute_dtype(layers[0].dtype)).argmax(dim=1)


def _check_poles(owner: str, poles: Sequence[int] | None) -> tuple[int, ...]:
    """``None`` (``1..L``, fixed at fit) or a non-empty sequence of positive integers."""
    if poles is None:
        return ()
    ok = isinstance(poles, (Sequence, range)) and not isinstance(poles, str) and len(poles) > 0
    ok = ok and all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in poles)
    if not ok:
        raise fail(owner, "num_poles_list", "None or a non-empty list of positive integers", poles)
    return tuple(int(p) for p in poles)


__all__ = ["DEFAULT_MAX_HELD_OUT", "Gram", "deviation", "gram_features", "held_out", "split_keys"]
