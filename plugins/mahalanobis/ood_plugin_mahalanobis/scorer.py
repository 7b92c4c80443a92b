"""Mahalanobis distance to class-conditional Gaussians with a shared covariance (Lee et al. 2018)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.scoring import Scorer
from ood_core.statistics import (
    ClassStatistics,
    check_ridge,
    feature_rows,
    precision,
    refuse_model,
)
from ood_core.validation import check_float, fail, fail_closed


class Mahalanobis(Scorer):
    """Squared Mahalanobis distance to the closest class mean, ``min_k (z - mu_k)^T S^-1 (z - mu_k)``.

    Lee, Lee, Lee, Shin, "A Simple Unified Framework for Detecting Out-of-Distribution Samples
    and Adversarial Attacks", NeurIPS 2018, eq. (2) (the confidence there is the negated
    distance): class means ``mu_k`` and the tied covariance
    ``S = 1/N sum_k sum_{y_i = k} (z_i - mu_k)(z_i - mu_k)^T``, fitted in float64 over batches.
    Reads ``features (B, D)``, or ``(B, D, H, W)`` scored per pixel. ``eps`` (ours): ridge added
    to ``S``; ``None`` adds one only when ``S`` is singular, with a warning.

    Differs from pytorch-ood 0.4.0 (``Mahalanobis(encoder)``): 0.4.0 inverts the scatter matrix
    ``N * S`` (plus ``1e-6 I``) and halves the distance, so its score is ours ``/ (2 N)`` up to
    that ridge; the ranking is the same. 0.4.0 averages feature maps; we score them per pixel.
    """

    reads = "features"
    needs_fit = True
    fit_needs_labels = True
    fit_state = ("offset", "whiten", "centres", "layers", "weights", "classes")
    offset: Tensor
    whiten: Tensor
    centres: Tensor
    layers: Tensor
    weights: Tensor
    classes: Tensor

    def __init__(
        self, encoder: Any = None, *, eps: float | None = None, head: nn.Module | None = None
    ) -> None:
        super().__init__(head=head)
        refuse_model(type(self).__name__, "encoder", encoder)
        self.eps = check_ridge(type(self).__name__, "eps", eps)
        self._init_buffers()

    def _init_buffers(self) -> None:
        for name, shape in (
            ("offset", (0,)),
            ("whiten", (0, 0)),
            ("centres", (0, 0, 0)),
            ("layers", (0, 0)),
            ("weights", (0,)),
        ):
            self.register_buffer(name, torch.zeros(shape))
        self.register_buffer("classes", torch.zeros(0, dtype=torch.long))
        self._dims: tuple[int, ...] = ()
        self.register_load_state_dict_post_hook(_sync_dims)

    # -- fit ---------------------------------------------------------------------------------

    def _fit_begin(self) -> None:
        self._stats = ClassStatistics(owner=type(self).__name__)

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        self._stats.update(x, y)

    def _fit_end(self) -> None:
        moments = self._stats.finalize()
        del self._stats
        dims = self._layer_dims(moments.means.shape[1])
        present = moments.present
        means = moments.means[present]
        whiten = self._block_whitening(moments.shared_covariance(), dims)
        offset = moments.total_mean()
        self._store(offset, whiten, (means - offset) @ whiten, dims, present.nonzero()[:, 0])

    def _layer_dims(self, width: int) -> tuple[int, ...]:
        return (width,)

    def _block_whitening(self, cov: Tensor, dims: tuple[int, ...]) -> Tensor:
        """Block-diagonal whitening, one block per layer (a layer's own covariance)."""
        whiten = torch.zeros_like(cov)
        start = 0
        for k, d in enumerate(dims):
            block = slice(start, start + d)
            owner = type(self).__name__ + (f" (layer {k})" if len(dims) > 1 else "")
            whiten[block, block] = precision(cov[block, block], owner=owner, eps=self.eps).whiten
            start += d
        return whiten

    def _store(
        self,
        offset: Tensor,
        whiten: Tensor,
        centres: Tensor,
        dims: tuple[int, ...],
        classes: Tensor,
    ) -> None:
        dtype = self.offset.dtype
        layers = torch.block_diag(*[torch.ones(d, 1, dtype=torch.float64) for d in dims])
        layers = layers.to(centres.device)
        self.offset, self.whiten = offset.to(dtype), whiten.to(dtype)
        self.centres = (centres[None] * layers.T[:, None, :]).to(dtype)  # (L, C, D): per layer
        self.layers = layers.to(dtype)
        self.weights = self._layer_weights(len(dims)).to(device=centres.device, dtype=dtype)
        self.classes = classes.to(self.classes.device)
        self._dims = dims

    def _layer_weights(self, n: int) -> Tensor:
        return torch.ones(n)

    # -- scoring -----------------------------------------------------------------------------

    def _distances(self, features: Any) -> tuple[Tensor, tuple[int, ...]]:
        """Per-layer squared distances ``(N, L, C)`` and the leading shape of the scores."""
        self._check_fitted()
        x, lead = feature_rows(type(self).__name__, features, self.offset.shape[0])
        z = (x - self.offset.to(x.dtype)) @ self.whiten.to(x.dtype)
        centres = self.centres.to(x.dtype)
        sq = (z * z) @ self.layers.to(x.dtype)  # (N, L)
        cross = torch.einsum("nj,lcj->nlc", z, centres)
        norms = (centres * centres).sum(-1)  # (L, C)
        return (sq[:, :, None] - 2 * cross + norms[None]).clamp_min(0), lead

    def forward(self, features: Tensor) -> Tensor:
        d, lead = self._distances(features)
        score = (d.min(dim=2).values * self.weights.to(d.dtype)).sum(1)
        return fail_closed(score.reshape(lead))

    def predict(self, features: Tensor) -> Tensor:
        """The class whose mean is closest (weighted over layers), int64 ``(B,)`` / ``(B, H, W)``."""
        d, lead = self._distances(features)
        nearest = (d * self.weights.to(d.dtype)[None, :, None]).sum(1).argmin(dim=1)
        return self.classes[nearest].reshape(lead)


def _sync_dims(module: nn.Module, incompatible_keys: Any) -> None:
    # after load_state_dict: the layer widths (Python ints, for shapes in the graph) follow `layers`
    module._dims = tuple(int(n) for n in module.layers.sum(0).tolist())


class MultiMahalanobis(Mahalanobis):
    """Weighted sum over layers of the Mahalanobis score, ``sum_l alpha_l min_k d_lk(z_l)``.

    Lee et al., NeurIPS 2018, section 2 ("feature ensemble"): one Gaussian fit (class means,
    tied covariance) per layer on its spatially averaged features. ``features`` is a tuple/list
    of per-layer outputs ``(B, D_l)`` or ``(B, C_l, H, W)`` (averaged over space), or one tensor
    ``(B, sum D_l)`` of them concatenated. ``alpha``: the layer weights (default all 1).

    Differs from pytorch-ood 0.4.0 (``MultiMahalanobis(model, alpha)``): takes the layers'
    outputs, not the layers; scores are 0.4.0's times ``2 N`` (covariance, not scatter; no
    halving), and export works at any batch size (0.4.0 fixes the traced batch size).
    """

    def __init__(
        self,
        model: Any = None,
        alpha: Sequence[float] | None = None,
        *,
        eps: float | None = None,
        head: nn.Module | None = None,
    ) -> None:
        Scorer.__init__(self, head=head)
        owner = type(self).__name__
        refuse_model(owner, "model", model)
        self.eps = check_ridge(owner, "eps", eps)
        self.alpha = _check_alpha(owner, alpha)
        self._init_buffers()

    def _layer_weights(self, n: int) -> Tensor:
        if self.alpha is None:
            return torch.ones(n)
        if len(self.alpha) != n:
            raise fail(
                type(self).__name__, "alpha", f"{n} weights, one per fitted layer", self.alpha
            )
        return torch.tensor(self.alpha, dtype=torch.float64)

    def fit(self, x: Any, y: Tensor | None = None) -> MultiMahalanobis:
        """Fit on per-layer outputs: ``fit((z1, z2, ...), y)`` or batches ``((z1, z2, ...), y)``."""
        if isinstance(x, (tuple, list)) and y is not None and all(isinstance(t, Tensor) for t in x):
            x, y = [(tuple(x), y)], None
        self._fit_dims: tuple[int, ...] | None = None
        return super().fit(x, y)

    def _fit_batch(self, owner: str, i: int, x: Any, y: Any, shape: Any) -> Any:
        from ood_core.outputs import select_output

        if isinstance(x, Mapping):
            x = select_output(x, self.reads, owner=owner)
        if isinstance(x, (tuple, list)):
            x = self._concat_layers(x, f"argument 'x' (batch {i})")
            dims = self._last_dims
        else:
            dims = (x.shape[1],) if isinstance(x, Tensor) and x.dim() >= 2 else None
        if self._fit_dims is not None and dims is not None and dims != self._fit_dims:
            raise ValueError(
                f"{owner}.fit: argument 'x' (batch {i}) has layer widths {dims}; earlier batches "
                f"had {self._fit_dims}"
            )
        self._fit_dims = self._fit_dims or dims
        return super()._fit_batch(owner, i, x, y, shape)

    def _layer_dims(self, width: int) -> tuple[int, ...]:
        return self._fit_dims or (width,)

    def _concat_layers(self, layers: Sequence[Any], arg: str) -> Tensor:
        """Per-layer outputs, each averaged over space to ``(B, D_l)``, concatenated."""
        owner = type(self).__name__
        pooled = []
        for k, z in enumerate(layers):
            z = check_float(owner, f"{arg}[{k}]", z, ranks=(2, 3, 4, 5))
            pooled.append(z.flatten(2).mean(2) if z.dim() > 2 else z)
        if not pooled or any(z.shape[0] != pooled[0].shape[0] for z in pooled):
            raise fail(owner, arg, "a non-empty tuple of layer outputs of one batch size", layers)
        self._last_dims = tuple(z.shape[1] for z in pooled)
        return torch.cat(pooled, dim=1)

    def _distances(self, features: Any) -> tuple[Tensor, tuple[int, ...]]:
        if isinstance(features, (tuple, list)):
            self._check_fitted()
            features = self._concat_layers(features, "features")
            if self._last_dims != self._dims:
                widths = f"layer widths {self._last_dims}"
                raise fail(type(self).__name__, "features", f"layer widths {self._dims}", widths)
        return super()._distances(features)


def _check_alpha(owner: str, alpha: Sequence[float] | None) -> tuple[float, ...] | None:
    if alpha is None:
        return None
    try:
        values = tuple(float(a) for a in alpha)
    except (TypeError, ValueError):
        raise fail(owner, "alpha", "None or a sequence of finite layer weights", alpha) from None
    if not values or not all(abs(a) < float("inf") for a in values):
        raise fail(owner, "alpha", "None or a non-empty sequence of finite layer weights", alpha)
    return values
