"""The background-class scorer: the softmax mass the model gives the background class."""

from __future__ import annotations

import torch
from torch import Tensor

from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.validation import check_float, fail, fail_closed


class BackgroundClassScorer(Scorer):
    """Softmax probability of the background class, ``softmax(f(x))_N`` (higher = more OOD).

    For a model trained with :class:`~ood_plugin_background_class.BackgroundClassLoss`: its
    ``N + 1`` logits end with the background class ``N``. ``predict`` is the argmax over the
    ``N`` known classes. Classification ``(B, N + 1)`` and segmentation ``(B, N + 1, H, W)``.

    Background-class baseline as evaluated by Dhamija, Günther & Boult, "Reducing Network
    Agnostophobia", NeurIPS 2018.
    """

    reads = "logits"

    def _logits(self, logits: Tensor) -> Tensor:
        owner = type(self).__name__
        x = check_float(owner, "logits", logits, ranks=(2, 4), masks=True)
        if x.shape[1] < 2:
            raise fail(owner, "logits", "N + 1 >= 2 columns, the background class last", x)
        return x

    def forward(self, logits: Tensor) -> Tensor:
        x = self._logits(logits)
        return fail_closed(torch.softmax(x.to(compute_dtype(x.dtype)), dim=1)[:, -1])

    def predict(self, logits: Tensor) -> Tensor:
        """The known class with the largest logit (the background column is left out)."""
        return self._logits(logits)[:, :-1].argmax(dim=1)
