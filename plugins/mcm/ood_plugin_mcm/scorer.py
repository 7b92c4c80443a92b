"""MCM: maximum concept matching of image features against class text embeddings."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ood_core.arguments import check_positive
from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.validation import check_float, fail, fail_closed


class MCM(Scorer):
    """Maximum concept matching ``-max_k softmax_k(cos(z(x), t_k) / tau)`` (higher = more OOD).

    Ming, Cai, Gu, Sun, Li, "Delving into Out-of-Distribution Detection with Vision-Language
    Representations", NeurIPS 2022, eq. (2): ``z(x)`` the image features ``(B, D)`` (e.g. CLIP's
    image embedding), ``t_k`` the text embedding of class ``k``'s prompt, given as the tensor
    ``text_embeddings`` ``(C, D)`` and L2-normalised here (a float64 copy, stored in a buffer in
    its own floating dtype). ``temperature`` ``tau > 0``, the paper's default 1. No fitting.
    :meth:`predict` is the best-matching concept (zero-shot classification).

    Same values as pytorch-ood 0.4.0's ``MCM`` (same keywords, less its ``encoder``); computed
    in at least fp32 (0.4.0: always fp32). Features whose width is not ``D`` raise a
    ``ValueError``; a zero text embedding (no direction) is refused at construction.
    """

    reads = "features"
    text_embeddings: Tensor

    def __init__(self, text_embeddings: Tensor, temperature: float = 1.0) -> None:
        super().__init__()
        owner = type(self).__name__
        t = check_float(owner, "text_embeddings", text_embeddings, ranks=(2,))
        if not bool(torch.isfinite(t).all()) or not bool((t.norm(dim=1) > 0).all()):
            raise fail(owner, "text_embeddings", "finite and non-zero in every row (C, D)", t)
        unit = F.normalize(t.detach().to(torch.float64), dim=1).to(t.dtype)
        self.register_buffer("text_embeddings", unit.clone())
        self.temperature = check_positive(owner, "temperature", temperature)

    def _similarities(self, features: Tensor, arg: str) -> Tensor:
        owner = type(self).__name__
        z = check_float(owner, arg, features, ranks=(2,))
        if z.shape[1] != self.text_embeddings.shape[1]:
            width = self.text_embeddings.shape[1]
            raise fail(owner, arg, f"features of width {width} (the text embeddings')", z)
        dtype = torch.promote_types(compute_dtype(z.dtype), self.text_embeddings.dtype)
        return F.normalize(z.to(dtype), dim=1) @ self.text_embeddings.to(dtype).T

    def forward(self, features: Tensor) -> Tensor:
        s = self._similarities(features, "features") / self.temperature
        return fail_closed(-torch.softmax(s, dim=1).amax(dim=1))

    def predict(self, features: Tensor) -> Tensor:
        """The class whose text embedding matches best (int64 ``(B,)``)."""
        return self._similarities(features, "features").argmax(dim=1)
