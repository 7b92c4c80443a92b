"""KL matching: divergence of a posterior from the closest class-typical posterior."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.statistics import ClassStatistics
from ood_core.validation import check_float, fail, fail_closed

#: log of the smallest positive float64: floor of log d_k, so an empty class keeps a finite log
_LOG_FLOOR = math.log(torch.finfo(torch.float64).tiny)


class KLMatching(Scorer):
    """KL matching ``min_k KL[p(y|x) || d_k]`` (higher = more OOD).

    Hendrycks, Basart, Mazeika, Zou, Kwon, Mostajabi, Steinhardt, Song, "Scaling Out-of-
    Distribution Detection for Real-World Settings", ICML 2022 (Sec. 4): ``p = softmax(f(x))``
    and ``d_k``, the typical posterior of class ``k``, is the mean softmax of the fit samples
    the model *predicts* as ``k`` (``argmax``), so no labels are needed. ``fit(logits, y=None)``
    groups by prediction in both cases; given labels ``y``, rows with ``y < 0`` (OOD) are left
    out. The minimum runs over the classes predicted at least once. Per-class float64 sums and
    counts stream in bounded memory (:class:`ood_core.statistics.ClassStatistics`); the buffers
    ``log_dists`` ``(K, C)`` (``log d_k``, floored at ``log(float64 tiny)``) and ``classes``
    ``(K,)`` hold the fit. Classification ``(B, C)``; segmentation ``(B, C, H, W)`` scores each
    pixel (fit on its ``(N, C)`` rows).

    Same values as pytorch-ood 0.4.0's ``KLMatching`` fitted on the same logits (tested to
    1e-5), except where a typical posterior holds an exact 0 (float64 underflow): 0.4.0 uses
    the lowest float for ``log 0``, oodx ``log(tiny) ~ -708``; both are then far OOD.
    """

    reads = "logits"
    needs_fit = True
    fit_sums = ("_kept",)  # summed over torch.distributed ranks
    fit_state = ("log_dists", "classes")
    log_dists: Tensor
    classes: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("log_dists", torch.zeros(0, 0))
        self.register_buffer("classes", torch.zeros(0, dtype=torch.long))

    def _fit_begin(self) -> None:
        self._stats: ClassStatistics | None = None
        self._kept = 0

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        if x.dim() != 2:
            raise fail(f"{type(self).__name__}.fit", "x", "logits (N, C); flatten pixels", x)
        if y is not None:
            x = x[y >= 0]
        if self._stats is None:
            self._stats = ClassStatistics(x.shape[1], scatter=False, owner=type(self).__name__)
        p = torch.softmax(x, dim=1)
        self._kept += x.shape[0]
        self._stats.update(p, p.argmax(dim=1))

    def _fit_end(self) -> None:
        owner = type(self).__name__
        if self._stats is None or self._kept == 0:
            raise ValueError(f"{owner}.fit: argument 'y' marks every sample OOD (< 0)")
        moments = self._stats.finalize()
        present = moments.present
        log_d = moments.means[present].log().clamp_min(_LOG_FLOOR)
        self.log_dists = log_d.to(self.log_dists.dtype)
        self.classes = present.nonzero().squeeze(1).to(self.classes.device)

    def forward(self, logits: Tensor) -> Tensor:
        self._check_fitted()
        owner = type(self).__name__
        x = check_float(owner, "logits", logits, ranks=(2, 4), masks=True)
        if x.shape[1] != self.log_dists.shape[1]:
            width = self.log_dists.shape[1]
            raise fail(owner, "logits", f"{width} classes in dim 1 (as in fit)", x)
        logp = torch.log_softmax(x.to(compute_dtype(x.dtype)), dim=1)
        p = logp.exp()
        # 0 log 0 = 0: a masked class (-inf logit) adds nothing
        neg_entropy = (p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(1, keepdim=True)
        cross = torch.einsum("bc...,kc->bk...", p, self.log_dists.to(p.dtype))
        return fail_closed((neg_entropy - cross).amin(dim=1))
