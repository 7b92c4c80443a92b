"""VOS losses: the energy-based uncertainty regulariser, with real or virtual outliers."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ood_core.functional import cross_entropy
from ood_core.labels import is_known, known_or_zero
from ood_core.loss import Loss
from ood_core.reduction import Reduction, check_reduction, compute_dtype
from ood_core.validation import (
    check_float,
    check_target,
    check_tensor,
    fail,
    host_reads_allowed,
)
from ood_plugin_vos.functional import weighted_energy
from ood_plugin_vos.scorer import WeightedEnergyScore

#: ridge added to the pooled covariance before sampling, as in the authors' code
COVARIANCE_RIDGE = 1e-4


def _apply_head(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` computed in ``x``'s dtype (a linear head's parameters are cast to it)."""
    if isinstance(module, nn.Linear):
        bias = None if module.bias is None else module.bias.to(x.dtype)
        return F.linear(x, module.weight.to(x.dtype), bias)
    param = next(iter(module.parameters()), None)
    return module(x if param is None else x.to(param.dtype)).to(x.dtype)


def _check_logits_y(
    owner: str, logits: Any, y: Any, ranks: tuple[int, ...]
) -> tuple[Tensor, Tensor]:
    logits = check_float(owner, "logits", logits, ranks)
    y = check_tensor(owner, "y", y)
    if y.dim() >= 1 and y.shape[0] != logits.shape[0]:
        raise fail(owner, "y", f"a batch of {logits.shape[0]} to match 'logits'", y)
    shape = (logits.shape[0], *logits.shape[2:])
    y = check_target(owner, y, shape=shape, num_classes=logits.shape[1], arg="y")
    return logits, y


def _check_size(owner: str, arg: str, x: Tensor, dim: int, size: int, what: str) -> None:
    if x.shape[dim] != size:
        raise fail(owner, arg, f"of size {size} in dim {dim}: {what}", x)


def _default_logistic_regression() -> nn.Linear:
    # phi(E) -> (outlier logit, ID logit), oriented as in the paper: the outlier probability
    # sigma(phi(E)) grows with the energy. The objective itself is symmetric in that sign, so a
    # random orientation can make training separate the energies the wrong way round.
    layer = nn.Linear(1, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5], [-0.5]]))
        layer.bias.zero_()
    return layer


def _default_weights_energy(num_classes: int) -> nn.Linear:
    # non-negative initial weights: the ReLU in the weighted energy zeroes negative ones
    layer = nn.Linear(int(num_classes), 1)
    nn.init.uniform_(layer.weight)
    return layer


class VOSRegLoss(Loss):
    """Cross-entropy plus VOS's energy-based uncertainty regulariser, with real outliers.

    ``L = L_CE + alpha * L_reg`` with, over the ID entries ``x`` (target ``>= 0``) and the outlier
    entries ``v`` (target ``< 0``) of the batch,

    ``L_reg = mean over x and v of -log softmax(phi(E))[label]``, label 1 for ID and 0 for
    outliers, i.e. ``E_v[-log sigma(phi(E(v)))] + E_x[-log(1 - sigma(phi(E(x))))]`` (pooled
    over all entries as in the authors' code), where ``phi = logistic_regression`` maps the
    weighted energy ``E(x) = -log sum_c relu(w_c) exp(f_c(x))`` (``w = weights_energy.weight``)
    to two logits. Du et al., "VOS: Learning What You Don't Know by Virtual Outlier Synthesis",
    ICLR 2022, Eq. (4)-(5). Classification ``(B, C)`` and segmentation ``(B, C, H, W)`` (every
    pixel is an entry). Natural scorer: ``weighted-energy`` (:meth:`scorer`).

    ``logistic_regression`` and ``weights_energy`` may be omitted when ``num_classes`` is given:
    ``Linear(1, 2)`` (weight ``[[0.5], [-0.5]]``, bias 0, so the outlier probability grows with
    the energy, the paper's orientation; the objective alone does not fix it) and
    ``Linear(num_classes, 1)`` with uniform ``[0, 1)`` weights are created.
    ``reduction`` ``none`` gives the per-entry cross-entropy (0 at outliers) plus the scalar
    regulariser.

    Differs from pytorch-ood 0.4.0: the weighted energy is one stable function
    (:func:`~ood_plugin_vos.functional.weighted_energy`, a max-subtracted log-sum-exp of
    ``f_c + log w_c``) shared with the scorer, so it is finite when every weight is ``<= 0``
    (0.4.0: NaN) and the training energy equals the test-time score (0.4.0's ``WeightedEBO``
    overflows to ``-inf`` for large logits).
    """

    roles = {"logits": "logits", "y": "target"}

    def __init__(
        self,
        logistic_regression: nn.Module | None = None,
        weights_energy: nn.Module | None = None,
        alpha: float = 0.1,
        reduction: Reduction = "mean",
        *,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.reduction = check_reduction(reduction, owner)
        if weights_energy is None:
            if num_classes is None or int(num_classes) < 1:
                raise ValueError(
                    f"{owner}: argument 'weights_energy' or 'num_classes' must be given "
                    f"(a Linear(C, 1) or a positive class count), got num_classes={num_classes!r}"
                )
            weights_energy = _default_weights_energy(num_classes)
        weight = getattr(weights_energy, "weight", None)
        if not isinstance(weights_energy, nn.Module) or not isinstance(weight, Tensor):
            raise fail(
                owner, "weights_energy", "a module with a weight, e.g. Linear(C, 1)", weights_energy
            )
        if num_classes is not None and weight.numel() != int(num_classes):
            raise fail(
                owner,
                "weights_energy",
                f"{num_classes} weights (num_classes)",
                f"weight {tuple(weight.shape)}",
            )
        if logistic_regression is None:
            logistic_regression = _default_logistic_regression()
        if not isinstance(logistic_regression, nn.Module):
            raise fail(
                owner,
                "logistic_regression",
                "a module mapping (N, 1) to (N, 2)",
                logistic_regression,
            )
        try:
            alpha = float(alpha)
        except (TypeError, ValueError):
            raise fail(owner, "alpha", "a number", alpha) from None
        self.logistic_regression = logistic_regression
        self.weights_energy = weights_energy
        self.alpha = alpha

    @property
    def num_energy_classes(self) -> int:
        return self.weights_energy.weight.numel()

    def config_for_state(self) -> dict[str, object]:
        """``num_classes``, so that a config recorded with modules rebuilds ``weights_energy``."""
        return {"num_classes": self.num_energy_classes}

    def energy(self, logits: Tensor) -> Tensor:
        """Weighted energy of ``logits`` over dim 1 (the same function the scorer uses)."""
        return weighted_energy(logits, self.weights_energy.weight, dim=1)

    def _logistic_loss(self, energies: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy of ``phi(E)`` against ``labels`` (1 ID, 0 outlier, < 0 ignored)."""
        out = _apply_head(self.logistic_regression, energies[:, None])
        return cross_entropy(out, labels, "mean")

    def forward(self, logits: Tensor, y: Tensor) -> Tensor:
        """Loss for logits ``(B, C[, H, W])`` and targets ``y`` ``(B[, H, W])`` (``< 0`` = outlier)."""
        owner = type(self).__name__
        logits, y = _check_logits_y(owner, logits, y, ranks=(2, 4))
        _check_size(owner, "logits", logits, 1, self.num_energy_classes, "classes (weights_energy)")
        labels = is_known(y).long().reshape(-1)
        reg = self._logistic_loss(self.energy(logits).reshape(-1), labels)
        return cross_entropy(logits, y, self.reduction) + self.alpha * reg

    def scorer(self) -> WeightedEnergyScore:
        """The ``weighted-energy`` scorer with a copy of the learned energy weights."""
        return WeightedEnergyScore.from_loss(self)


class VirtualOutlierSynthesizingRegLoss(VOSRegLoss):
    """VOS: cross-entropy plus the energy regulariser against virtual outliers sampled in feature space.

    Keeps a queue of the last ``sample_number`` penultimate features of every class. Once every
    queue is full, it fits class-conditional Gaussians ``N(mu_k, Sigma)`` (class means, pooled
    covariance ``Sigma = 1/(K S) sum_k sum_i (z_ki - mu_k)(z_ki - mu_k)^T + 1e-4 I``), draws
    ``sample_from`` samples per class and keeps the ``select`` of lowest likelihood as virtual
    outliers ``v``; their logits are ``fc(v)``. The loss is ``L_CE + alpha * L_reg`` with
    ``L_reg`` of :class:`VOSRegLoss` between the ID samples of the batch and the virtual
    outliers (0 until the queues were full before the step). Du et al., "VOS: Learning What You
    Don't Know by Virtual Outlier Synthesis", ICLR 2022, Sec. 3.1-3.2 and Eq. (5).
    Classification only; samples with targets ``< 0`` are ignored. Natural scorer:
    ``weighted-energy`` (:meth:`scorer`).

    The modules may be omitted with ``num_classes`` and ``num_features`` (``fc`` is then a new
    ``Linear(num_features, num_classes)``: use ``loss.fc`` as the model's last layer).
    Sampling draws a standard normal ``e`` and returns ``mu_k + L e`` with ``L`` the Cholesky
    factor of ``Sigma``; the log-density falls with ``|e|^2``, so the ``select`` largest ``|e|^2``
    are the lowest-likelihood samples.

    Differs from pytorch-ood 0.4.0: the queues (``data_dict``), their fill levels
    (``queue_counts``) and write positions (``queue_heads``) are persistent buffers, so a
    resumed run keeps them (0.4.0 loses them on save/load; its state dicts load here with empty
    queues). Each class queue is a ring buffer: a step writes only the new rows (``O(B D)``,
    no Python loop over samples, no ``.item()``), so once full the oldest feature of a class is
    overwritten in place instead of shifting the queue; the Gaussians do not depend on the
    order, and :meth:`ordered_queues` gives 0.4.0's oldest-first layout. Forward compiles with
    ``fullgraph=True``; compiled or on a GPU, sampling sits in a ``torch.cond`` on "the queues
    were full", so nothing is sampled while they fill (reading that flag is the one host read
    per step on a GPU, the price of not sampling ``K x sample_from`` Gaussians every step; in
    eager mode on the CPU the flag is read directly). Under torch.distributed the features
    and labels of every rank are all-gathered in rank order before they are queued, so every
    rank holds the same queues (``loss.sync_dist = False`` keeps them per rank; see
    ``docs/distributed.md``). Outliers are ignored by a
    mask instead of being dropped, so ``reduction="none"`` keeps shape ``(B,)`` with zeros at
    outliers; the weighted energy is the stable shared function of :class:`VOSRegLoss`; if the
    Cholesky factorisation fails the diagonal of ``Sigma`` is used instead of raising;
    segmentation inputs raise ``ValueError`` (0.4.0: ``NotImplementedError``).
    """

    data_dict: Tensor
    queue_counts: Tensor
    queue_heads: Tensor
    #: all-gather the queued features across torch.distributed ranks (ood_core.distributed)
    sync_dist: bool = True

    roles = {"logits": "logits", "features": "features", "y": "target"}

    def __init__(
        self,
        logistic_regression: nn.Module | None = None,
        weights_energy: nn.Module | None = None,
        fc: nn.Module | None = None,
        alpha: float = 0.1,
        reduction: Reduction = "mean",
        sample_number: int = 1000,
        select: int = 1,
        sample_from: int = 10000,
        *,
        num_classes: int | None = None,
        num_features: int | None = None,
    ) -> None:
        owner = type(self).__name__
        if fc is None:
            if num_classes is None or num_features is None:
                raise ValueError(
                    f"{owner}: argument 'fc' or both 'num_classes' and 'num_features' must be "
                    f"given, got num_classes={num_classes!r}, num_features={num_features!r}"
                )
            fc = nn.Linear(int(num_features), int(num_classes))
        if (
            not isinstance(fc, nn.Module)
            or not hasattr(fc, "in_features")
            or not hasattr(fc, "out_features")
        ):
            raise fail(owner, "fc", "the model's last layer, a Linear(D, C)", fc)
        if num_classes is not None and int(num_classes) != fc.out_features:
            raise fail(owner, "num_classes", f"fc.out_features ({fc.out_features})", num_classes)
        if num_features is not None and int(num_features) != fc.in_features:
            raise fail(owner, "num_features", f"fc.in_features ({fc.in_features})", num_features)
        super().__init__(
            logistic_regression, weights_energy, alpha, reduction, num_classes=fc.out_features
        )
        for arg, value in (
            ("sample_number", sample_number),
            ("sample_from", sample_from),
            ("select", select),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise fail(owner, arg, "a positive integer", value)
        if select > sample_from:
            raise fail(owner, "select", f"at most sample_from ({sample_from})", select)
        self.fc = fc
        self.num_classes = fc.out_features
        self.num_input_last_layer = fc.in_features
        self.sample_number = sample_number
        self.select = select
        self.sample_from = sample_from
        self.register_buffer(
            "data_dict", torch.zeros(self.num_classes, sample_number, self.num_input_last_layer)
        )
        self.register_buffer("queue_counts", torch.zeros(self.num_classes, dtype=torch.long))
        self.register_buffer("queue_heads", torch.zeros(self.num_classes, dtype=torch.long))
        self._host_full = False  # see _seen_full
        self._full_copy: tuple[Tensor, object] | None = None

    def config_for_state(self) -> dict[str, object]:
        """``num_classes`` and ``num_features``, so that a recorded ``fc=None`` rebuilds ``fc``."""
        return {**super().config_for_state(), "num_features": self.num_input_last_layer}

    # -- state ---------------------------------------------------------------------------------

    @property
    def number_dict(self) -> dict[int, int]:
        """Fill level of every class queue (read-only view, as 0.4.0's attribute of that name)."""
        return {k: int(c) for k, c in enumerate(self.queue_counts.tolist())}

    def queues_full(self) -> Tensor:
        """Boolean scalar tensor: every class queue holds ``sample_number`` features."""
        return (self.queue_counts >= self.sample_number).all()

    def reset_queues(self) -> None:
        """Empty every class queue."""
        self.data_dict.zero_()
        self.queue_counts.zero_()
        self.queue_heads.zero_()
        self._host_full, self._full_copy = False, None

    def ordered_queues(self) -> Tensor:
        """The queues ``(K, S, D)`` oldest first (0.4.0's layout; ``data_dict`` is a ring)."""
        k, s, d = self.data_dict.shape
        slots = torch.arange(s, device=self.data_dict.device)
        index = torch.where(self.queues_full(), (self.queue_heads[:, None] + slots) % s, slots)
        return self.data_dict.gather(1, index[:, :, None].expand(k, s, d))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):  # noqa: D401
        # pytorch-ood 0.4.0 state dicts have no queues: load them with empty ones
        for name in ("data_dict", "queue_counts"):
            if prefix + name not in state_dict:
                state_dict[prefix + name] = torch.zeros_like(getattr(self, name))
        self._host_full, self._full_copy = False, None
        if prefix + "queue_heads" not in state_dict:  # oldest-first queues: the ring starts at 0
            counts = state_dict[prefix + "queue_counts"]
            state_dict[prefix + "queue_heads"] = counts % self.sample_number
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @torch.no_grad()
    def update_queues(self, features: Tensor, y: Tensor) -> None:
        """Store the ID ``features`` ``(B, D)`` in their class queues, in batch order.

        While some queue is not full, each class queue is filled up and further samples of a full
        class are dropped; once all are full, each new sample overwrites its class's oldest one
        (a ring buffer; :meth:`ordered_queues` is oldest-first, as 0.4.0's queues). Writes only
        the ``B`` new rows, without a host read. Distributed: all ranks' ``features`` and ``y``
        are gathered in rank order first (``sync_dist``).
        """
        from ood_core.distributed import all_gather_cat, should_sync

        if should_sync(self):
            features, y = all_gather_cat(features), all_gather_cat(y)
        queues, counts, heads = self.data_dict, self.queue_counts, self.queue_heads
        k, s, d = queues.shape
        known = is_known(y)
        cls = known_or_zero(y)
        classes = torch.arange(k, device=y.device)
        # one-hot by comparison: F.one_hot checks the range on the host (a sync)
        onehot = ((cls[:, None] == classes[None, :]) & known[:, None]).long()
        rank = ((onehot.cumsum(0) - onehot) * onehot).sum(1)  # earlier samples of the same class
        new = onehot.sum(0)
        full = (counts >= s).all()
        fill_pos = counts[cls] + rank
        # filling: up to the capacity; full: the last s samples of a class, oldest slot first
        valid = known & torch.where(full, rank >= new[cls] - s, fill_pos < s)
        pos = torch.where(full, (heads[cls] + rank) % s, fill_pos)
        _write_rows(queues.view(k * s, d), cls * s + pos, features.detach().to(queues.dtype), valid)
        filled = (counts + new).clamp_max(s)
        heads.copy_(torch.where(full, (heads + new) % s, filled % s))
        counts.copy_(torch.where(full, counts, filled))

    # -- sampling ------------------------------------------------------------------------------

    @torch.no_grad()
    def class_gaussians(self) -> tuple[Tensor, Tensor]:
        """Class means ``(K, D)`` and the Cholesky factor ``(D, D)`` of the pooled covariance."""
        return _class_gaussians(self.data_dict)

    @staticmethod
    def select_outliers(means: Tensor, chol: Tensor, noise: Tensor, select: int) -> Tensor:
        """Samples ``mu_k + L e`` for ``noise`` ``e`` ``(K, N, D)``; keeps the ``select`` least likely per class.

        Returns ``(K * select, D)``, class by class, least likely first.
        """
        samples = means[:, None, :] + noise @ chol.T
        idx = (noise * noise).sum(-1).topk(select, dim=1).indices
        picked = samples.gather(1, idx[:, :, None].expand(-1, -1, samples.shape[-1]))
        return picked.reshape(-1, samples.shape[-1])

    @torch.no_grad()
    def sample_virtual_outliers(self) -> Tensor:
        """Virtual outliers ``(K * select, D)`` from the class-conditional Gaussians of the queues."""
        return _sample(self.data_dict, self.sample_from, self.select)

    def _seen_full(self, were_full: Tensor) -> bool:
        """Whether the host knows the queues were full, learnt without a host-device sync.

        Queues never empty in forward, so once seen full the answer is kept (until
        :meth:`reset_queues` or a state-dict load). Until then each step copies the flag to the
        host asynchronously and reads it once the copy is done: at once on the CPU, on a GPU
        at the first step after the copy finished (sampling may start a step or two later
        than on the CPU; the loss is the cross-entropy until then, as while filling).
        """
        if self._host_full:
            return True
        cuda = were_full.is_cuda
        host = torch.empty((), dtype=torch.bool, pin_memory=cuda)
        host.copy_(were_full, non_blocking=cuda)
        event = None
        if cuda:
            event = torch.cuda.Event()
            event.record()
        pending, self._full_copy = self._full_copy, (host, event)
        for flag, done in (self._full_copy, pending) if pending else (self._full_copy,):
            if (done is None or done.query()) and bool(flag.numpy()):
                self._host_full, self._full_copy = True, None
                return True
        return False

    @torch.no_grad()
    def _sample_when(self, full: Tensor) -> Tensor:
        """:meth:`sample_virtual_outliers` if ``full``, else zeros, as one ``torch.cond``."""
        sample_from, select = self.sample_from, self.select

        def sample(queues: Tensor) -> Tensor:
            return _sample(queues, sample_from, select)

        def skip(queues: Tensor) -> Tensor:
            dtype = compute_dtype(queues.dtype)
            return queues.new_zeros(queues.shape[0] * select, queues.shape[2], dtype=dtype)

        return torch.cond(full, sample, skip, (self.data_dict,))

    # -- loss ----------------------------------------------------------------------------------

    def forward(self, logits: Tensor, features: Tensor, y: Tensor) -> Tensor:
        """Loss for logits ``(B, C)``, penultimate ``features`` ``(B, D)`` and targets ``y`` ``(B,)``."""
        owner = type(self).__name__
        logits, y = _check_logits_y(owner, logits, y, ranks=(2,))
        features = check_float(owner, "features", features, ranks=(2,))
        _check_size(
            owner, "features", features, 0, logits.shape[0], "samples (the batch of 'logits')"
        )
        _check_size(
            owner, "features", features, 1, self.num_input_last_layer, "features (fc.in_features)"
        )
        _check_size(owner, "logits", logits, 1, self.num_classes, "classes (fc.out_features)")
        known = is_known(y)
        were_full = self.queues_full()
        self.update_queues(features, y)
        e_id = self.energy(logits)
        if host_reads_allowed(logits):
            if not bool(were_full):  # the virtual outliers would be discarded: skip sampling
                reg = self._logistic_loss(e_id, torch.where(known, 1, -1)) * 0.0
                return cross_entropy(logits, y, self.reduction) + self.alpha * reg
            virtual = self.sample_virtual_outliers()
        elif torch.compiler.is_compiling():  # sample only when full, inside the graph
            virtual = self._sample_when(were_full)
        elif self._seen_full(were_full):  # eager on a GPU: a flag read without a sync
            virtual = self.sample_virtual_outliers()
        else:
            reg = self._logistic_loss(e_id, torch.where(known, 1, -1)) * 0.0
            return cross_entropy(logits, y, self.reduction) + self.alpha * reg
        virtual = virtual.to(e_id.dtype)
        e_virtual = self.energy(_apply_head(self.fc, virtual))
        labels = torch.cat(
            [torch.where(known, 1, -1), torch.zeros_like(e_virtual, dtype=torch.long)]
        )
        reg = self._logistic_loss(torch.cat([e_id, e_virtual]), labels)
        reg = torch.where(were_full & known.any(), reg, reg * 0.0)
        return cross_entropy(logits, y, self.reduction) + self.alpha * reg


def _write_rows(flat: Tensor, target: Tensor, rows: Tensor, valid: Tensor) -> None:
    """``flat[target[i]] = rows[i]`` where ``valid`` (distinct targets), in place, no host read.

    Rows that are not valid are sent to the first valid row's slot with that row's value (or,
    with no valid row, to slot 0 with its current value): repeated writes of one value, so the
    result is exact whatever order a device applies them in.
    """
    if rows.shape[0] == 0:
        return
    first = valid.long().argmax().reshape(1)  # a tensor index (a 0-d one would be read)
    any_valid = valid.any()
    spare_slot = torch.where(any_valid, target.index_select(0, first), 0)
    spare_row = torch.where(any_valid, rows.index_select(0, first)[0], flat[0])
    target = torch.where(valid, target, spare_slot)
    flat.index_copy_(0, target, torch.where(valid[:, None], rows, spare_row[None, :]))


def _class_gaussians(queues: Tensor) -> tuple[Tensor, Tensor]:
    """Class means ``(K, D)`` of ``queues`` ``(K, S, D)`` and the Cholesky factor of the pooled
    covariance plus ``COVARIANCE_RIDGE * I`` (its diagonal's square root if that fails)."""
    q = queues.to(compute_dtype(queues.dtype))
    k, s, d = q.shape
    means = q.mean(dim=1)
    centred = (q - means[:, None, :]).reshape(k * s, d)
    cov = centred.T @ centred / (k * s)
    cov = cov + COVARIANCE_RIDGE * torch.eye(d, dtype=q.dtype, device=q.device)
    chol, info = torch.linalg.cholesky_ex(cov)
    diagonal = torch.diag_embed(cov.diagonal().clamp_min(COVARIANCE_RIDGE).sqrt())
    return means, torch.where(info == 0, chol, diagonal)


def _sample(queues: Tensor, sample_from: int, select: int) -> Tensor:
    """Virtual outliers ``(K * select, D)`` from the class Gaussians of ``queues``."""
    means, chol = _class_gaussians(queues)
    k, d = means.shape
    noise = torch.randn(k, sample_from, d, dtype=means.dtype, device=means.device)
    return VirtualOutlierSynthesizingRegLoss.select_outliers(means, chol, noise, select)
