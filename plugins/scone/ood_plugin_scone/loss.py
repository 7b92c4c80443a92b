"""The SCONE energy-margin loss (Bai et al., ICML 2023), an augmented Lagrangian."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.arguments import check_real
from ood_core.functional import cross_entropy, nll_and_logsumexp
from ood_core.labels import is_known, is_unknown
from ood_core.loss import Loss
from ood_core.reduction import compute_dtype, masked_mean
from ood_core.validation import (
    check_batch,
    check_finite,
    check_float_shape,
    check_target,
    check_target_logits,
    check_tensor,
    fail,
)
from ood_plugin_scone.scorer import Head, SconeScorer, head_logit

#: keywords that must be > 0 (penalty weights and their factor) or >= 0; others: any real
_POSITIVE = ("in_constraint_weight", "ce_constraint_weight", "penalty_mult")
_NON_NEGATIVE = (
    "full_train_loss",
    "false_alarm_cutoff",
    "ce_tol",
    "out_constraint_weight",
    "lr_lam",
)


def _hyperparameter(owner: str, arg: str, value: object) -> float:
    if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
        value = float(value)  # pytorch-ood accepts one-element tensors
    minimum = 0.0 if arg in _POSITIVE + _NON_NEGATIVE else None
    value = check_real(owner, arg, value, minimum=minimum)
    if arg in _POSITIVE and value == 0:
        raise fail(owner, arg, "a real number > 0", repr(value))
    if arg == "false_alarm_cutoff" and value > 1:
        raise fail(owner, arg, "a fraction in [0, 1]", repr(value))
    return value


def penalty(c: Tensor, lam: Tensor, beta: Tensor) -> Tensor:
    """Augmented-Lagrangian penalty ``psi(c; lam, beta)`` of a constraint ``c <= 0``.

    ``lam * c + beta / 2 * c^2`` where ``beta * c + lam >= 0``, else ``-lam^2 / (2 beta)``;
    chosen with ``torch.where`` (no host sync; the other branch gets no gradient).
    """
    active = beta * c + lam >= 0
    return torch.where(active, lam * c + 0.5 * beta * c * c, -0.5 * lam * lam / beta)


class EnergyMarginLoss(Loss):
    """SCONE: energy-margin OOD objective under false-alarm and accuracy constraints.

    With logits ``f(x)``, ``e(x) = log sum_c exp f_c(x)`` (the negative free energy), a
    logistic-regression head ``phi`` (``logistic_regression``, default ``nn.Linear(1, 1)``
    owned by the loss), the ID samples ``I`` (``targets >= 0``) and the wild/outlier samples
    ``O`` (``targets < 0``) of a batch::

        L_in  = mean_{x in I} sigmoid(phi(e(x)))            soft false-alarm rate on ID data
        L_out = mean_{x in O} sigmoid(-phi(e(x) - eta))     outliers not flagged, margin eta
        L_CE  = mean_{x in I} -log softmax(f(x))_y

    SCONE solves ``min L_out  s.t.  L_in <= alpha,  L_CE <= tau * L_0`` (``alpha =
    false_alarm_cutoff``, ``tau = ce_tol``, ``L_0 = full_train_loss``, the cross-entropy of the
    pre-trained model) with the augmented Lagrangian method; forward returns::

        L = w * L_out + psi(L_in - alpha; lam, beta) + psi(L_CE - tau * L_0; lam2, beta2)
        psi(c; lam, beta) = lam * c + beta / 2 * c^2   if beta * c + lam >= 0
                          = -lam^2 / (2 * beta)         otherwise

    (``w = out_constraint_weight``, ``beta = in_constraint_weight``, ``beta2 =
    ce_constraint_weight``). :meth:`update_hyperparameters` (once per epoch) updates the
    multipliers ``lam``, ``lam2`` and the penalty weights from the constraints measured on the
    ID training data. Bai, Canal, Du, Kwon, Nowak, Li, "Feed Two Birds with One Scone:
    Exploiting Wild Data for Both Out-of-Distribution Generalization and Detection", ICML 2023
    (arXiv:2306.09158); constrained formulation from WOODS (Katz-Samuels et al., ICML 2022).
    Natural scorer: ``scone`` (``phi(e(x))``, :meth:`scorer`, a copy of the head).

    The head: pass ``logistic_regression`` to ``forward`` as in pytorch-ood, or leave it out to
    use the loss's own ``self.logistic_regression`` (give the optimizer ``loss.parameters()``).
    All scalars are persistent float32 buffers with pytorch-ood's names (``lam``, ``lam2``,
    ``in_constraint_weight``, ...), and 0.4.0 state dicts load.

    Differs from pytorch-ood 0.4.0: the loss owns a default head (state-dict keys
    ``logistic_regression.weight``/``.bias``; a 0.4.0 state dict, which has none, keeps the
    current head) so that ``forward(logits, targets)`` and :meth:`scorer` work without one.
    0.4.0 raises unless a batch holds both ID and outlier samples; here an empty part of the
    batch contributes 0 to its mean (finite value, graph kept), so empty, all-ID and all-OOD
    batches work. The penalty branch is chosen with ``torch.where`` instead of Python ``if``
    on tensor values (same values; compiles with ``fullgraph=True``, no host sync). Any float
    dtype works (0.4.0 fails unless logits and head share a dtype). Bad input raises
    ``ValueError`` naming the argument. :meth:`update_hyperparameters` restores the model's
    train/eval mode (0.4.0 leaves it in eval mode) and ignores outlier targets.
    """

    full_train_loss: Tensor
    eta: Tensor
    false_alarm_cutoff: Tensor
    in_constraint_weight: Tensor
    lam: Tensor
    lam2: Tensor
    ce_tol: Tensor
    ce_constraint_weight: Tensor
    out_constraint_weight: Tensor
    lr_lam: Tensor
    penalty_mult: Tensor
    constraint_tol: Tensor
    #: all-reduce the constraint measurements across torch.distributed ranks
    sync_dist: bool = True

    roles = {"logits": "logits", "targets": "target"}

    def __init__(
        self,
        full_train_loss: float,
        eta: float = 1.0,
        false_alarm_cutoff: float = 0.05,
        in_constraint_weight: float = 1.0,
        ce_tol: float = 2.0,
        ce_constraint_weight: float = 1.0,
        out_constraint_weight: float = 1.0,
        lr_lam: float = 1.0,
        penalty_mult: float = 1.5,
        constraint_tol: float = 0.0,
    ) -> None:
        """
        :param full_train_loss: cross-entropy ``L_0`` of the pre-trained model on the ID data
        :param eta: margin subtracted from ``e(x)`` of outliers before the head
        :param false_alarm_cutoff: tolerated soft false-alarm rate ``alpha`` on ID data
        :param in_constraint_weight: initial penalty weight ``beta`` of the false-alarm constraint
        :param ce_tol: factor ``tau``: the ID cross-entropy is kept below ``tau * L_0``
        :param ce_constraint_weight: initial penalty weight ``beta2`` of the accuracy constraint
        :param out_constraint_weight: weight ``w`` of the outlier objective
        :param lr_lam: step size ``rho`` of the multiplier updates
        :param penalty_mult: factor ``kappa`` applied to a penalty weight whose constraint is
            violated by more than ``constraint_tol`` in :meth:`update_hyperparameters`
        :param constraint_tol: tolerance ``epsilon`` of that test
        """
        super().__init__()
        owner = type(self).__name__
        values = dict(
            full_train_loss=full_train_loss,
            eta=eta,
            false_alarm_cutoff=false_alarm_cutoff,
            in_constraint_weight=in_constraint_weight,
            ce_tol=ce_tol,
            ce_constraint_weight=ce_constraint_weight,
            out_constraint_weight=out_constraint_weight,
            lr_lam=lr_lam,
            penalty_mult=penalty_mult,
            constraint_tol=constraint_tol,
        )
        checked = {name: _hyperparameter(owner, name, value) for name, value in values.items()}
        # same buffers, order and dtype as pytorch-ood 0.4.0, so its state dicts load
        for name in ("full_train_loss", "eta", "false_alarm_cutoff", "in_constraint_weight"):
            self.register_buffer(name, torch.tensor(checked[name], dtype=torch.float32))
        self.register_buffer("lam", torch.tensor(0.0))
        self.register_buffer("lam2", torch.tensor(0.0))
        for name in (
            "ce_tol",
            "ce_constraint_weight",
            "out_constraint_weight",
            "lr_lam",
            "penalty_mult",
            "constraint_tol",
        ):
            self.register_buffer(name, torch.tensor(checked[name], dtype=torch.float32))
        self.logistic_regression: nn.Module = nn.Linear(1, 1)

    # ------------------------------------------------------------------------------------------
    # forward

    def _check(self, logits: object, targets: object) -> tuple[Tensor, Tensor]:
        owner = type(self).__name__
        logits = check_float_shape(owner, "logits", logits, ranks=(2,))
        targets = check_tensor(owner, "targets", targets)
        if targets.dim() != 1:
            raise fail(owner, "targets", "a tensor of rank 1 (one label per sample)", targets)
        check_batch(owner, logits=logits, targets=targets)
        targets = check_target(
            owner, targets, shape=(logits.shape[0],), num_classes=logits.shape[1], arg="targets"
        )
        # -inf masks a class (not an ID target's); NaN and +inf raise
        if check_finite(owner, "logits", logits, masks=True) and targets.numel():
            check_target_logits(owner, "logits", logits, targets)
        return logits, targets

    def _head(self, logistic_regression: Head | None) -> Head:
        return self.logistic_regression if logistic_regression is None else logistic_regression

    def terms(
        self, logits: Tensor, targets: Tensor, logistic_regression: Head | None = None
    ) -> dict[str, Tensor]:
        """The unconstrained terms ``energy_in`` (``L_in``), ``energy_out`` (``L_out``), ``ce``."""
        owner = type(self).__name__
        logits, targets = self._check(logits, targets)
        dtype = compute_dtype(logits.dtype)
        x = logits.to(dtype)
        known, unknown = is_known(targets), is_unknown(targets)
        nll, lse = nll_and_logsumexp(x, targets)
        # one head evaluation: outliers are shifted by the margin before the head
        shifted = torch.where(unknown, lse - self.eta.to(dtype), lse)
        z = head_logit(owner, self._head(logistic_regression), shifted, dtype)
        return {
            "energy_in": masked_mean(torch.sigmoid(z), known),
            "energy_out": masked_mean(torch.sigmoid(-z), unknown),
            "ce": masked_mean(nll, known),
        }

    def forward(
        self, logits: Tensor, targets: Tensor, logistic_regression: Head | None = None
    ) -> Tensor:
        """The augmented Lagrangian (scalar) for ``logits`` ``(B, C)``, ``targets`` ``(B,)``.

        Targets ``< 0`` mark wild/outlier samples. ``logistic_regression`` maps ``(B, 1)``
        energies to ``(B, 1)`` logits; default: the loss's own ``self.logistic_regression``.
        """
        t = self.terms(logits, targets, logistic_regression)
        dtype = t["ce"].dtype
        buf = {name: b.to(dtype) for name, b in self.named_buffers()}
        in_loss = penalty(
            t["energy_in"] - buf["false_alarm_cutoff"], buf["lam"], buf["in_constraint_weight"]
        )
        ce_loss = penalty(
            t["ce"] - buf["ce_tol"] * buf["full_train_loss"],
            buf["lam2"],
            buf["ce_constraint_weight"],
        )
        return ce_loss + buf["out_constraint_weight"] * t["energy_out"] + in_loss

    # ------------------------------------------------------------------------------------------
    # multiplier updates

    @torch.no_grad()
    def step_multipliers(self, false_alarm: Tensor | float, ce: Tensor | float) -> None:
        """One augmented-Lagrangian update from measured ``L_in`` and ``L_CE`` (in place).

        With ``c = false_alarm - alpha`` and ``c2 = ce - tau * L_0``::

            lam   <- lam + rho * c        if beta * c + lam >= 0,  else lam - rho * lam / beta
            beta  <- kappa * beta         if c > epsilon
            (lam2, beta2 likewise with c2)
        """
        ref = self.lam
        false_alarm = torch.as_tensor(false_alarm).to(ref)
        ce = torch.as_tensor(ce).to(ref)
        rho, kappa, tol = self.lr_lam, self.penalty_mult, self.constraint_tol
        for c, lam, beta in (
            (false_alarm - self.false_alarm_cutoff, self.lam, self.in_constraint_weight),
            (ce - self.ce_tol * self.full_train_loss, self.lam2, self.ce_constraint_weight),
        ):
            new_lam = torch.where(beta * c + lam >= 0, lam + rho * c, lam - rho * lam / beta)
            new_beta = torch.where(c > tol, beta * kappa, beta)
            lam.copy_(new_lam)
            beta.copy_(new_beta)

    @torch.no_grad()
    def evaluate_constraints(
        self,
        model: Callable[[Tensor], Tensor],
        train_loader_in: Iterable[Any],
        logistic_regression: Head | None = None,
    ) -> dict[str, Tensor]:
        """``L_in`` (``false_alarm``) and ``L_CE`` (``ce``) over the ID samples of a loader.

        Batches ``(input, label, ...)`` are moved to the device of this loss; ``model`` is
        called in eval mode and its train/eval mode is restored afterwards. Under
        torch.distributed the sums and counts are all-reduced, so every rank measures the union
        of the ranks' loaders and takes the same multiplier step (``sync_dist``).
        """
        owner = type(self).__name__
        head = self._head(logistic_regression)
        device = self.lam.device
        was_training = model.training if isinstance(model, nn.Module) else None
        if isinstance(model, nn.Module):
            model.eval()
        false_alarm = torch.zeros((), dtype=torch.float64, device=device)
        ce = torch.zeros((), dtype=torch.float64, device=device)
        count = torch.zeros((), dtype=torch.float64, device=device)
        try:
            for batch in train_loader_in:
                data, target = batch[0].to(device), batch[1].to(device)
                logits, target = self._check(model(data), target)
                x = logits.to(compute_dtype(logits.dtype))
                known = is_known(target)
                z = head_logit(owner, head, torch.logsumexp(x, dim=1), x.dtype)
                false_alarm += torch.where(known, torch.sigmoid(z), 0).sum().double()
                ce += cross_entropy(x, target, reduction="sum").double()
                count += known.sum().double()
        finally:
            if was_training is not None:
                model.train(was_training)
        from ood_core.distributed import all_reduce_sum, should_sync

        if should_sync(self):  # every rank measures the whole (distributed) ID training set
            false_alarm, ce, count = all_reduce_sum(false_alarm, ce, count)
        count = count.clamp_min(1)
        return {"false_alarm": false_alarm / count, "ce": ce / count}

    def update_hyperparameters(
        self,
        model: Callable[[Tensor], Tensor],
        train_loader_in: Iterable[Any],
        logistic_regression: Head | None = None,
    ) -> dict[str, Tensor]:
        """Update ``lam``, ``lam2`` and the penalty weights from the ID training data (in place).

        Call once per epoch. Measures ``L_in`` and ``L_CE`` over ``train_loader_in`` (yielding
        ``(input, label)`` batches; see :meth:`evaluate_constraints`) and applies
        :meth:`step_multipliers`. Returns the measured values.
        """
        measured = self.evaluate_constraints(model, train_loader_in, logistic_regression)
        self.step_multipliers(measured["false_alarm"], measured["ce"])
        return measured

    # ------------------------------------------------------------------------------------------
    # state and scorer

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # a pytorch-ood 0.4.0 state dict has no head: keep the current one
        head_prefix = prefix + "logistic_regression."
        if not any(key.startswith(head_prefix) for key in state_dict):
            for key, value in self.logistic_regression.state_dict().items():
                state_dict[head_prefix + key] = value.detach().clone()
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def scorer(self, logistic_regression: nn.Module | None = None) -> SconeScorer:
        """The natural scorer ``scone`` with a copy of the head (default: the loss's own)."""
        head = self.logistic_regression if logistic_regression is None else logistic_regression
        return SconeScorer.from_head(head)
