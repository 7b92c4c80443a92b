"""Monte-Carlo dropout: N stochastic forward passes (Gal and Ghahramani, ICML 2016)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ood_core.model_scoring import ModelScorer
from ood_core.validation import check_positive_int, fail


class MCD(ModelScorer):
    """Softmax statistics over ``N`` passes with dropout on: ``var`` or ``mean`` mode.

    Gal, Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016: the predictive
    distribution is ``p = 1/N sum_n softmax(f_n(x))`` over passes ``f_n`` with dropout masks
    drawn anew. ``mode="mean"``: ``-max_c p_c``; ``mode="var"`` (default, as pytorch-ood 0.4.0;
    Kendall et al., Bayesian SegNet, 2015): ``1/C sum_c var_n softmax(f_n(x))_c`` (unbiased
    variance). Logits ``(B, C)`` give ``(B,)``, ``(B, C, H, W)`` give ``(B, H, W)``.

    Dropout layers are put in train mode, everything else in eval mode (``batch_norm=False``:
    the whole model in train mode), and restored afterwards. ``seed`` (ours): draw the masks
    from a generator seeded anew at every call (the global RNG is left untouched), so scores are
    reproducible; ``None`` draws from the global RNG. Masks are drawn for the whole batch, so a
    sample's score depends on its place in the batch (not batch-independent).
    """

    not_exportable_because = "it averages several stochastic forward passes with dropout on"

    def __init__(
        self,
        model: Any,
        samples: int = 30,
        mode: str = "var",
        batch_norm: bool = True,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(model)
        owner = type(self).__name__
        if mode not in ("var", "mean"):
            raise fail(owner, "mode", "'var' or 'mean'", repr(mode))
        if not isinstance(batch_norm, bool):
            raise fail(owner, "batch_norm", "True or False", repr(batch_norm))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise fail(owner, "seed", "None or an int", repr(seed))
        self.n_samples = check_positive_int(owner, "samples", samples)
        if mode == "var" and self.n_samples < 2:
            raise fail(owner, "samples", "at least 2 passes for mode='var'", samples)
        self.mode, self.batch_norm, self.seed = mode, batch_norm, seed
        self.score_mode = "dropout" if batch_norm else "train"

    def _score(self, x: Tensor) -> Tensor:
        if self.seed is None:
            return self._passes(x)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            return self._passes(x)

    @torch.no_grad()
    def _passes(self, x: Tensor) -> Tensor:
        """Welford's running mean and sum of squared deviations of the softmax over passes."""
        mean = m2 = None
        for n in range(1, self.n_samples + 1):
            p = self.model(x).softmax(dim=1)
            if mean is None:
                mean, m2 = p, torch.zeros_like(p)
                continue
            delta = p - mean
            mean = mean + delta / n
            m2 = m2 + delta * (p - mean)
        if self.mode == "mean":
            return -mean.amax(dim=1)
        return (m2 / (self.n_samples - 1)).mean(dim=1)
