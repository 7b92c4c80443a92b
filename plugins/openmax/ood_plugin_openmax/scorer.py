"""OpenMax: the unknown-class probability of the Weibull-revised activation vector."""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.statistics import ClassStatistics
from ood_core.validation import check_float, fail, fail_closed
from ood_plugin_openmax.weibull import TRANSLATION, fit_weibull, weibull_cdf


class OpenMax(Scorer):
    """OpenMax probability of the unknown class (higher = more OOD).

    Bendale & Boult, "Towards Open Set Deep Networks", CVPR 2016 (Alg. 1 and 2). Fit: per class
    ``k``, the mean activation vector ``mu_k`` (mean logits) of the *correctly classified* fit
    samples of ``k`` and a Weibull fitted by maximum likelihood to the ``tailsize`` largest of
    their distances to ``mu_k`` (translated as libMR does: the tail's minimum moved to 10000).
    Score: with ``d_k = euclid_weight * |v - mu_k| + (1 - euclid_weight) * (1 - cos(v, mu_k))``,
    ``w_k = WeibullCDF_k(d_k)`` and the rank weights ``r = (alpha - i) / alpha`` of the
    ``alpha`` largest logits (``i = 0..alpha-1``, 0 elsewhere)::

        v_hat_k = v_k (1 - r_k w_k),   v_hat_0 = sum_k v_k r_k w_k,
        score   = softmax(v_hat_0, v_hat_1..C)_0 = sigmoid(v_hat_0 - logsumexp_k v_hat_k)

    ``fit(logits, y)`` keeps the samples with ``argmax == y`` (``y < 0`` left out); with
    ``y=None`` every sample counts for its predicted class. A class without a fitted model has
    ``w = 1`` (as far as can be). The Weibull fit is torch float64 (bisection on the likelihood
    equation), and forward evaluates the Weibull CDF in float64 in the graph, so the fitted
    scorer exports. The tail needs the final means, so the fit keeps the kept logits
    (``N x C`` float64) until it ends. Classification ``(B, C)`` only.

    Differs from pytorch-ood 0.4.0 (``OpenMax``, same keywords): the paper's correctly
    classified samples (0.4.0 uses every labelled sample); the exact likelihood maximum
    (0.4.0: scipy's ``exponweib.fit``, a Nelder-Mead search); no clamp of activations at 709
    (a stable softmax instead); scoring in torch, not numpy, so it exports.
    """

    reads = "logits"
    needs_fit = True
    fit_gathers = ("_rows", "_labels")  # concatenated over torch.distributed ranks
    fit_state = ("means", "present", "shape", "scale", "shift")

    def __init__(self, tailsize: int = 25, alpha: int = 10, euclid_weight: float = 1.0) -> None:
        super().__init__()
        owner = type(self).__name__
        for name, value in (("tailsize", tailsize), ("alpha", alpha)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise fail(owner, name, "a positive integer", repr(value))
        if isinstance(euclid_weight, bool) or not 0 <= euclid_weight <= 1:
            raise fail(owner, "euclid_weight", "a number in [0, 1]", repr(euclid_weight))
        self.tailsize, self.alpha, self.euclid_weight = tailsize, alpha, float(euclid_weight)
        f64 = torch.float64
        for name in ("shape", "scale", "shift"):
            self.register_buffer(name, torch.zeros(0, dtype=f64))
        self.register_buffer("means", torch.zeros(0, 0, dtype=f64))
        self.register_buffer("present", torch.zeros(0, dtype=torch.bool))

    def _fit_begin(self) -> None:
        self._rows: list[Tensor] = []
        self._labels: list[Tensor] = []

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        owner = f"{type(self).__name__}.fit"
        if x.dim() != 2:
            raise fail(owner, "x", "logits (N, C)", x)
        pred = x.argmax(dim=1)
        keep = pred == pred if y is None else pred == y  # correctly classified (never y < 0)
        self._rows.append(x[keep])
        self._labels.append(pred[keep])

    def _fit_end(self) -> None:
        owner = type(self).__name__
        x, y = torch.cat(self._rows), torch.cat(self._labels)
        self._rows, self._labels = [], []
        if x.shape[0] == 0:
            raise ValueError(f"{owner}.fit: no fit sample is correctly classified ('x' vs 'y')")
        stats = ClassStatistics(x.shape[1], scatter=False, owner=owner).update(x, y)
        moments = stats.finalize()
        self.means, self.present = moments.means, moments.present
        distances = self._distance(x, self.means.to(x.dtype)[y])  # to its own class: O(N D)
        tails = [
            distances[y == k].topk(min(self.tailsize, int(n))).values
            for k, n in enumerate(moments.counts.tolist())
            if n > 0
        ]
        width = max(t.numel() for t in tails)
        # pad short tails with their minimum: never the maximum, so the scale stays put
        padded = torch.stack([torch.cat([t, t[-1:].expand(width - t.numel())]) for t in tails])
        lowest = padded.amin(dim=1)
        shape, scale = fit_weibull(padded - lowest[:, None] + TRANSLATION)
        self.shape, self.scale, self.shift = (
            _scatter(v, self.present) for v in (shape, scale, lowest - TRANSLATION)
        )

    def _distances(self, x: Tensor) -> Tensor:
        """Distances of ``x`` ``(B, C)`` to every class mean: ``(B, C)``."""
        return self._distance(x[:, None, :], self.means.to(x.dtype)[None])

    def _distance(self, x: Tensor, mu: Tensor) -> Tensor:
        """``euclid_weight * |x - mu| + (1 - euclid_weight) * (1 - cos(x, mu))`` over the last
        dimension (``x`` and ``mu`` broadcast)."""
        euclid = ((x - mu) ** 2).sum(-1).sqrt()
        if self.euclid_weight == 1:
            return euclid
        cosine = 1 - (x * mu).sum(-1) / (x.norm(dim=-1) * mu.norm(dim=-1))
        return self.euclid_weight * euclid + (1 - self.euclid_weight) * cosine

    def forward(self, logits: Tensor) -> Tensor:
        self._check_fitted()
        owner = type(self).__name__
        v = check_float(owner, "logits", logits, ranks=(2,))
        if v.shape[1] != self.means.shape[1]:
            raise fail(owner, "logits", f"{self.means.shape[1]} classes in dim 1 (as in fit)", v)
        out_dtype = compute_dtype(v.dtype)
        x = v.to(torch.float64)
        w = weibull_cdf(self._distances(x) - self.shift, self.shape, self.scale)
        w = torch.where(self.present, w, torch.ones_like(w))
        alpha = min(self.alpha, x.shape[1])
        top = torch.topk(x, alpha, dim=1).indices
        ranks = torch.arange(alpha, 0, -1, dtype=x.dtype, device=x.device) / alpha
        r = torch.zeros_like(x).scatter(1, top, ranks.expand(x.shape[0], alpha))
        revised = x * (1 - r * w)
        unknown = (x * r * w).sum(dim=1)
        score = torch.sigmoid(unknown - torch.logsumexp(revised, dim=1))
        return fail_closed(score.to(out_dtype))


def _scatter(values: Tensor, present: Tensor) -> Tensor:
    """``values`` of the present classes placed at their index, 1 elsewhere (never read)."""
    out = torch.ones(present.shape[0], dtype=torch.float64, device=values.device)
    return out.masked_scatter(present, values.to(torch.float64))
