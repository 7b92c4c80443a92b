"""Temperature scaling: the softmax temperature that minimises the NLL of held-out data."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor
from torch.nn import functional as F

from ood_core.reduction import compute_dtype
from ood_core.scoring import Scorer
from ood_core.validation import check_float, fail, fail_closed

#: the fitted temperature is kept in [1 / BOUND, BOUND] (the NLL may have no finite minimum)
BOUND = 1e3


class TemperatureScaling(Scorer):
    """Negative maximum softmax of temperature-scaled logits, ``-max_c softmax(f(x) / T)_c``.

    Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks", ICML 2017:
    ``T`` minimises the negative log-likelihood ``mean_i -log softmax(f(x_i) / T)_{y_i}`` of
    labelled held-out ID data. ``fit(logits, y)`` needs the labels (rows with ``y < 0`` are
    left out): with the model's own predictions as labels the NLL falls towards ``T -> 0``.
    L-BFGS with a strong-Wolfe line search runs on ``log T`` in float64 to convergence. The
    NLL over ``T`` is not a sum of per-batch statistics, so the fit keeps the ID fit logits in
    memory (``N x C`` float64: a validation set, not the training set). ``T`` lives in the
    buffer ``t`` (detached; clamped to ``[1e-3, 1e3]`` with a warning when the NLL keeps falling
    towards either end). Classification ``(B, C)``; segmentation ``(B, C, H, W)`` is scored per
    pixel (fit on its pixels as rows ``(N, C)``).

    Differs from pytorch-ood 0.4.0 (``TemperatureScaling``): 0.4.0 runs 50 L-BFGS iterations
    with step size 0.01 on ``T`` itself and stops well short of the minimum; oodx reaches it
    (its NLL is lower; the score formula is the same, tested with 0.4.0's ``T``). 0.4.0 keeps
    ``T`` in a ``Parameter`` that breaks TorchScript export; here it is a buffer.
    """

    reads = "logits"
    needs_fit = True
    fit_gathers = ("_logits", "_labels")  # concatenated over torch.distributed ranks
    fit_needs_labels = True
    fit_state = ("t",)
    t: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("t", torch.tensor(1.0))

    def _fit_begin(self) -> None:
        self._logits: list[Tensor] = []
        self._labels: list[Tensor] = []

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        owner = f"{type(self).__name__}.fit"
        if x.dim() != 2:
            raise fail(owner, "x", "logits (N, C); flatten pixels", x)
        if y.numel() and int(y.max()) >= x.shape[1]:
            raise fail(owner, "y", f"labels below {x.shape[1]} (the classes of 'x')", y)
        known = y >= 0
        self._logits.append(x[known])
        self._labels.append(y[known])

    def _fit_end(self) -> None:
        logits, labels = torch.cat(self._logits), torch.cat(self._labels)
        self._logits, self._labels = [], []
        if labels.numel() == 0:
            raise ValueError(f"{type(self).__name__}.fit: argument 'y' marks every sample OOD")
        t = fit_temperature(logits, labels)
        if not 1 / BOUND < t < BOUND:
            warnings.warn(
                f"{type(self).__name__}: the NLL of the fit data has no minimum in "
                f"[{1 / BOUND:g}, {BOUND:g}] (the model classifies it "
                f"{'perfectly' if t < 1 else 'no better than chance'}); T set to {t:g}",
                stacklevel=3,
            )
        self.t = torch.tensor(t, dtype=self.t.dtype, device=self.t.device)

    def forward(self, logits: Tensor) -> Tensor:
        self._check_fitted()
        x = check_float(type(self).__name__, "logits", logits, ranks=(2, 4), masks=True)
        x = x.to(compute_dtype(x.dtype)) / self.t.to(compute_dtype(x.dtype))
        return fail_closed(-torch.softmax(x, dim=1).amax(dim=1))


def nll(logits: Tensor, labels: Tensor, t: Tensor) -> Tensor:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / t)``."""
    return F.cross_entropy(logits / t, labels)


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """The ``T`` in ``[1 / BOUND, BOUND]`` minimising :func:`nll`, by L-BFGS on ``log T`` (float64).

    The NLL is convex in ``1 / T``: when every label is the strict argmax it falls all the way
    to ``T -> 0``, and when the labels score no better than the mean logit its minimum is at
    ``T -> inf``; both are decided exactly before the search (which would stall on the flat
    tail) and give the bound.
    """
    logits, labels = logits.to(torch.float64), labels.long()
    target = logits.gather(1, labels[:, None])
    if bool(((logits < target).sum(1) == logits.shape[1] - 1).all()):
        return 1 / BOUND
    if float((logits.mean(1) - target.squeeze(1)).mean()) >= 0:
        return BOUND
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_t],
        lr=1.0,
        max_iter=200,
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )
    limit = math.log(BOUND)

    def closure() -> Tensor:
        optimizer.zero_grad()
        value = nll(logits, labels, log_t.clamp(-limit, limit).exp())
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(closure)
    return float(log_t.detach().clamp(-limit, limit).exp())
