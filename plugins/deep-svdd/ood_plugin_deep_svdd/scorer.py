"""The Deep SVDD scorer: squared distance to the one centre (minus the squared radius)."""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.nearest_center import NearestCenterScorer
from ood_core.validation import check_float, fail_closed


class DeepSVDDScorer(NearestCenterScorer):
    """Outlier score ``|f(x) - mu|^2 - r^2``: squared distance of the embedding to the centre.

    Ruff et al., "Deep One-Class Classification", ICML 2018 (the anomaly score of One-Class Deep
    SVDD, ``r = 0``, and of soft-boundary Deep SVDD); also the score of Deep SAD (Ruff et al.,
    ICLR 2020). Positive scores lie outside the hypersphere. Reads embeddings ``(B, D)``; the
    centre lives in the buffer ``centers`` ``(1, D)``, the radius in ``radius``.
    :meth:`predict` is always 0, the one normal class.

    Create it from a trained loss with ``loss.scorer()`` (a copy of its centre and radius);
    ``DeepSVDDScorer(n_dim)`` starts at a zero centre, to be replaced by ``load_state_dict``.
    """

    radius: Tensor

    def __init__(
        self, n_dim: int, center: Tensor | None = None, radius: float | Tensor = 0.0
    ) -> None:
        owner = type(self).__name__
        if center is not None:
            center = check_float(owner, "center", center, ranks=(1,)).reshape(1, -1)
        super().__init__(1, n_dim, center)
        radius = torch.as_tensor(radius, dtype=torch.get_default_dtype())
        self.register_buffer("radius", radius.detach().clone().reshape(()))

    def forward(self, embedding: Tensor) -> Tensor:
        """Outlier scores ``(B,)``: ``|z - mu|^2 - r^2``."""
        d = super().forward(embedding)
        return fail_closed(d - self.radius.to(d.dtype) ** 2)
