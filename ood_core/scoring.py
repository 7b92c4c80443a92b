"""Base class of scorers: a module mapping model outputs to outlier scores, and the fit protocol.

A scorer states what it ``reads`` and whether it ``needs_fit`` as class attributes. A scorer
that learns from data (post-hoc methods such as class means or covariances) implements three
hooks and gets :meth:`Scorer.fit` for free::

    class ClassMeans(Scorer):
        reads = "features"
        needs_fit = True
        fit_state = ("means",)                 # buffers fit sets (resized when loaded)

        def _fit_begin(self): ...              # reset float64 accumulators
        def _fit_update(self, x, y): ...       # x float64 (B, D) on the scorer's device
        def _fit_end(self): ...                # write the fitted buffers

        def forward(self, features):
            self._check_fitted()
            ...

``fit`` takes a tensor or an iterable of batches (``x`` or ``(x, y)``), validates every batch,
and marks the persistent ``fitted`` buffer, so ``state_dict``, ``.to()``, checkpoints and
exports carry the fitted state.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ood_core.errors import OODXError
from ood_core.registry import SCORER_READS

#: model outputs a scorer may read (``inputs``: the model's input, for gradient methods)
READS = SCORER_READS


class NotFittedError(OODXError, RuntimeError):
    """A scorer that must be fitted was used before :meth:`Scorer.fit`."""


def _sync_fitted(module: nn.Module, incompatible_keys: Any) -> None:
    # after load_state_dict: the host-side flag follows the loaded buffer (one read, at load)
    module._fitted_host = bool(module.fitted)


class Scorer(nn.Module):
    """Maps model outputs to outlier scores (higher = more OOD).

    Classification outputs ``(B, C)`` (or ``(B, D)`` embeddings) give scores ``(B,)``;
    segmentation outputs ``(B, C, H, W)`` give ``(B, H, W)``. ``predict`` gives the class
    decision; the default is the argmax over dim 1 (logits). ``forward`` must be pure tensor
    code so the scorer exports with ``torch.export`` and to ONNX.

    ``head`` (keyword) is the classifier head, an ``nn.Module`` mapping what the scorer reads to
    logits, for methods that need one; the scorer keeps a frozen copy (``self.head``, in eval
    mode, ``requires_grad=False``, part of the state dict). Scorers with ``needs_fit`` learn from
    data with :meth:`fit`; see the module docstring.
    """

    #: the model output(s) the scorer reads, from :data:`READS`; a tuple for several
    reads: ClassVar[str | tuple[str, ...]] = "logits"
    #: whether :meth:`fit` must run before scoring
    needs_fit: ClassVar[bool] = False
    #: whether :meth:`fit` re-estimates state the scorer already holds (class means copied from
    #: a loss): it scores before fit too, and fit replaces that state with statistics of data
    refits: ClassVar[bool] = False
    #: whether :meth:`fit` needs labels ``y`` (class-conditional statistics)
    fit_needs_labels: ClassVar[bool] = False
    #: names of the buffers :meth:`fit` sets; loading a state dict resizes them to the saved shape
    fit_state: ClassVar[tuple[str, ...]] = ()
    #: fit accumulators (attribute names: tensors or numbers) summed over ranks before
    #: ``_fit_end`` when distributed; ClassStatistics and BoundedRows attributes sync on their own
    fit_sums: ClassVar[tuple[str, ...]] = ()
    #: fit accumulators (a tensor or a list of tensors ``(n, ...)``) concatenated over ranks
    fit_gathers: ClassVar[tuple[str, ...]] = ()
    #: fit accumulators (tensors) reduced element-wise by min / max over ranks
    fit_mins: ClassVar[tuple[str, ...]] = ()
    fit_maxes: ClassVar[tuple[str, ...]] = ()
    #: synchronise ``fit`` across ranks of a torch.distributed process group (set False to fit
    #: each rank on its own data; see ood_core.distributed)
    sync_dist: bool = True
    fitted: Tensor

    def __init__(self, *, head: nn.Module | None = None) -> None:
        super().__init__()
        if head is not None and not isinstance(head, nn.Module):
            raise TypeError(
                f"{type(self).__name__}: argument 'head' must be an nn.Module mapping the "
                f"scorer's input to logits, got {type(head).__name__}"
            )
        self.head = None if head is None else copy.deepcopy(head).requires_grad_(False).eval()
        if self.needs_fit:
            self.register_buffer("fitted", torch.tensor(False))
            self._fitted_host = False
            self.register_load_state_dict_post_hook(_sync_fitted)

    def train(self, mode: bool = True) -> Scorer:
        super().train(mode)
        if self.head is not None:
            self.head.eval()  # a frozen copy: dropout and batch norm stay in inference mode
        return self

    # -- fit protocol ----------------------------------------------------------------------

    def fit(self, x: Any, y: Tensor | None = None) -> Scorer:
        """Fit on ``x`` (a tensor, a dict of model outputs, or an iterable of batches ``x`` or
        ``(x, y)``) with optional labels ``y``; returns ``self``.

        Statistics accumulate batch by batch in float64, so memory does not grow with the
        number of samples. A scorer with neither ``needs_fit`` nor ``refits`` returns itself
        unchanged. Bad data (non-finite values, changing width, wrong labels, no samples) raises
        ``ValueError`` naming the argument and leaves the scorer unfitted (a ``refits`` scorer
        keeps its state).
        """
        if not (self.needs_fit or self.refits):
            return self
        owner = type(self).__name__
        self._set_fitted(False)
        device = next(self.buffers()).device  # a scorer that fits keeps its state in buffers
        shape: tuple[int, ...] | None = None
        seen = 0
        self._fit_begin()
        sync = should_sync(self)
        try:
            for i, (bx, by) in enumerate(_batches(owner, x, y)):
                bx, by = self._fit_batch(owner, i, bx, by, shape)
                shape = tuple(bx.shape[1:])
                seen += bx.shape[0]
                self._fit_update(bx.to(device=device, dtype=torch.float64), _to(by, device))
        finally:  # every rank learns whether all could fit, so none waits in a collective
            if sync:
                failed = _agree_on_failure(owner, sys.exc_info()[0] is not None)
        if sync:
            seen = failed if failed is not None else all_reduce_count(seen)
            if isinstance(seen, Exception):
                raise seen
        if seen == 0:
            raise ValueError(f"{owner}.fit: argument 'x' holds no samples")
        if sync:
            self._fit_sync()
        self._fit_end()
        self._set_fitted(True)
        return self

    def _set_fitted(self, flag: bool) -> None:
        if self.needs_fit:
            self.fitted.fill_(flag)
            self._fitted_host = flag

    def _fit_batch(
        self, owner: str, i: int, x: Any, y: Any, shape: tuple[int, ...] | None
    ) -> tuple[Tensor, Tensor | None]:
        """Validate batch ``i``: a finite float tensor ``(B, ...)`` of fixed width, labels ``(B,)``."""
        from ood_core.outputs import select_output

        where = f"{owner}.fit: argument 'x' (batch {i})"
        if isinstance(x, Mapping):
            x = select_output(x, self.reads, owner=owner)
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2:
            raise ValueError(f"{where} must be a float tensor (B, D, ...), got {_what(x)}")
        if shape is not None and tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"{where} has shape {tuple(x.shape)}; earlier batches had (B, "
                f"{', '.join(map(str, shape))})"
            )
        x = x.detach()
        if not _all_finite(x):
            raise ValueError(f"{where} holds NaN or infinite values; fit data must be finite")
        if y is None:
            if self.fit_needs_labels:
                raise ValueError(f"{owner}.fit: argument 'y' is required (class labels (B,))")
            return x, None
        if not isinstance(y, Tensor) or y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(
                f"{owner}.fit: argument 'y' (batch {i}) must be an integer tensor, got {_what(y)}"
            )
        if tuple(y.shape) != (x.shape[0],):
            raise ValueError(
                f"{owner}.fit: argument 'y' (batch {i}) must have shape ({x.shape[0]},) to match "
                f"'x', got {tuple(y.shape)}"
            )
        return x, y.detach()

    def _fit_begin(self) -> None:
        """Reset the accumulators before the first batch (override)."""

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        """Add one validated batch: ``x`` float64 on the scorer's device, ``y`` labels or None."""
        raise NotImplementedError(f"{type(self).__name__} sets needs_fit but has no _fit_update")

    def _fit_end(self) -> None:
        """Turn the accumulated statistics into the fitted buffers (override)."""

    def _fit_sync(self) -> None:
        """Combine the accumulators of every rank (distributed fits, before ``_fit_end``).

        :class:`~ood_core.statistics.ClassStatistics` attributes are all-reduced,
        :class:`~ood_core.bank.BoundedRows` attributes all-gathered in rank order, the
        attributes named in ``fit_sums`` summed and those in ``fit_gathers`` concatenated; every
        rank then holds what one process fitting on all ranks' data (in rank order) would hold.
        Override (calling ``super()``) for other accumulators.
        """
        from ood_core.distributed import sync_fit_accumulators

        sync_fit_accumulators(self)

    def _check_fitted(self) -> None:
        """Raise :class:`NotFittedError` if the scorer must be fitted and is not.

        Reads a host-side flag kept in step with the ``fitted`` buffer by :meth:`fit` and
        ``load_state_dict``: no host-device synchronisation, and nothing left in an exported or
        compiled graph.
        """
        if self.needs_fit and not self._fitted_host:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted: call scorer.fit(x) (a tensor or batches of "
                "training outputs) or load a fitted state_dict before scoring"
            )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):  # noqa: D401
        # fitted buffers take the saved shape (a fresh scorer does not know the data's width)
        for name in self.fit_state:
            saved = state_dict.get(prefix + name)
            own = self._buffers.get(name)
            if isinstance(saved, Tensor) and own is not None and own.shape != saved.shape:
                self._buffers[name] = own.new_empty(saved.shape)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @property
    def predicts(self) -> bool:
        """Whether :meth:`predict` is a class decision: the argmax of ``logits``, or a scorer's
        own rule (nearest class mean, its head). The base argmax of features or embeddings is
        none, so exporters take the model's logits instead (False)."""
        if not callable(getattr(type(self), "predict", None)):
            return False  # a scorer that disowns predict (a property raising AttributeError)
        return self.reads == "logits" or type(self).predict is not Scorer.predict

    def predict(self, output: Tensor) -> Tensor:
        """Class decision for ``output``: argmax over the class dimension (int64); a class
        decision only for logits (see :attr:`predicts`).

        NaN and ``+inf`` raise ``ValueError`` where value checks run (``-inf`` masks a class).
        """
        from ood_core.validation import check_float

        arg = self.reads if isinstance(self.reads, str) else "output"
        x = check_float(type(self).__name__, arg, output, masks=True)
        return x.argmax(dim=1)


def should_sync(owner: object) -> bool:
    """Whether ``owner`` synchronises now (see :mod:`ood_core.distributed`)."""
    from ood_core.distributed import should_sync as _should

    return _should(owner)


def all_reduce_count(n: int) -> int:
    """``n`` summed over the ranks."""
    from ood_core.distributed import all_reduce_int

    return all_reduce_int(n)


def _agree_on_failure(owner: str, failed_here: bool) -> Exception | None:
    """All-reduce a failure flag; a ValueError for ranks whose own batches were fine."""
    from ood_core.distributed import all_reduce_int

    failed = all_reduce_int(int(failed_here))
    if failed and not failed_here:
        return ValueError(
            f"{owner}.fit: fitting failed on {failed} other rank(s) (see their error); no rank "
            "is fitted"
        )
    return None


def _all_finite(x: Tensor) -> bool:
    """Whether every value is finite: a finite sum proves it (one pass, no bool copy); a sum that
    overflowed or met NaN/inf falls back to the exact element check."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def _what(x: object) -> str:
    if isinstance(x, Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return type(x).__name__


def _to(y: Tensor | None, device: torch.device) -> Tensor | None:
    return None if y is None else y.to(device)


def _batches(owner: str, x: Any, y: Tensor | None) -> Iterator[tuple[Any, Any]]:
    """``(x, y)`` pairs from a tensor / dict of outputs, or from an iterable of batches."""
    if isinstance(x, (Tensor, Mapping)):
        yield x, y
        return
    if isinstance(x, (str, bytes)) or not isinstance(x, Iterable):
        raise ValueError(
            f"{owner}.fit: argument 'x' must be a tensor, a dict of model outputs or an iterable "
            f"of batches, got {type(x).__name__}"
        )
    if y is not None:
        raise ValueError(
            f"{owner}.fit: argument 'y' must be None when 'x' is an iterable of batches; give "
            "(x, y) batches instead"
        )
    for i, batch in enumerate(x):
        if isinstance(batch, (Tensor, Mapping)):
            yield batch, None
        elif isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
            yield batch[0], (batch[1] if len(batch) == 2 else None)
        else:
            raise ValueError(
                f"{owner}.fit: batch {i} of argument 'x' must be a tensor or an (x, y) pair, got "
                f"{type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            )


__all__ = ["READS", "NotFittedError", "Scorer"]
