"""OOD detection metrics (AUROC, AUPR-IN, AUPR-OUT, FPR@TPR, ACC), streaming and vectorised.

Conventions (see ``docs/metrics.md``):

- ``scores`` are *outlier scores*: higher means more OOD.
- ``labels`` follow the project convention: an integer ``>= 0`` is an in-distribution (ID) class,
  any value ``< 0`` is OOD. OOD is the **positive** class.
- Segmentation inputs ``(B, H, W)`` are flattened; entries whose label equals ``void_label`` are
  ignored.

Importing this module never imports torch: tensors are accepted by duck typing
(``x.detach().cpu().numpy()``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["OODMetrics", "threshold_for_id_rate"]

_MODES = ("exact", "binned")
_DEFAULT_BINS = 2**20
_MIN_BITS = 10  # sign + 8 exponent bits of float32 + at least one mantissa bit
_MAX_BITS = 26
_CHUNK = 1 << 16  # samples per step of the exact computation (a few MB of temporaries)


def _to_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array (torch tensors via ``detach().cpu().numpy()``, without importing
    torch; bfloat16 tensors are widened to float32 first, numpy has no bfloat16)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):
        t = x.detach()
        if str(getattr(t, "dtype", "")) == "torch.bfloat16":
            t = t.float()
        return t.cpu().numpy()
    return np.asarray(x)


def _describe(x: np.ndarray) -> str:
    return f"an array of shape {tuple(x.shape)} and dtype {x.dtype}"


def _fail(owner: str, arg: str, expected: str, got: str) -> ValueError:
    return ValueError(f"{owner}: argument {arg!r} must be {expected}, got {got}")


def _check_scores(owner: str, arg: str, raw: Any) -> np.ndarray:
    x = _to_numpy(raw)
    if x.dtype.kind != "f":
        raise _fail(owner, arg, "floating-point outlier scores (higher = more OOD)", _describe(x))
    if x.size and np.isnan(x.min()):  # min propagates NaN: one pass, no temporary
        n_nan = int(np.count_nonzero(np.isnan(x)))
        raise _fail(owner, arg, "free of NaN", f"{n_nan} NaN value(s) in {_describe(x)}")
    return x


def _check_int(owner: str, arg: str, raw: Any, expected: str) -> np.ndarray:
    x = _to_numpy(raw)
    if x.dtype.kind not in "iu":
        raise _fail(owner, arg, expected, _describe(x))
    return x


def _rate_key(rate: float) -> str:
    return f"FPR{round(100 * rate)}TPR"


def _first_k_reaching(rate: float, n_pos: int) -> int:
    """Smallest integer ``k`` with ``k / n_pos >= rate`` in float64 (as sklearn's ``tps / P``)."""
    k = min(max(math.ceil(rate * n_pos), 1), n_pos)
    while k > 1 and (k - 1) / n_pos >= rate:  # a step or two at most: rounding of rate * n_pos
        k -= 1
    while k < n_pos and k / n_pos < rate:
        k += 1
    return k


def _counts_per_group(cum: np.ndarray) -> np.ndarray:
    """``diff`` of a cumulative count with a leading 0, without ``prepend``'s extra copies."""
    out = np.empty_like(cum)
    out[:1] = cum[:1]
    np.subtract(cum[1:], cum[:-1], out=out[1:])
    return out


def _curve_metrics(
    ood_le: np.ndarray, id_le: np.ndarray, rates: Sequence[float]
) -> dict[str, float]:
    """Metrics from cumulative counts per distinct score, **lowest score first**.

    ``ood_le[h]`` / ``id_le[h]`` are the numbers of OOD / ID samples scoring ``<=`` the ``h``-th
    smallest distinct score ``u_h`` (tied scores form one threshold), so ``ood_le[-1] = P`` and
    ``id_le[-1] = N``. With ``a_h`` / ``b_h`` the OOD / ID counts at ``u_h`` and the usual
    ``TP_h = #{OOD: s >= u_h} = P - ood_le[h-1]``, ``FP_h = N - id_le[h-1]``:

    - ``AUROC = sum_h a_h (id_le[h-1] + id_le[h]) / (2 P N)`` (trapezoidal ROC area);
    - ``AUPR-OUT = sum_h (a_h / P) * TP_h / (TP_h + FP_h)`` (average precision, OOD positive);
    - ``AUPR-IN = sum_h (b_h / N) * id_le[h] / (id_le[h] + ood_le[h])`` (ID positive, ``-s``);
    - ``FPR{k}TPR = FP_h* / N`` at the largest ``u_h*`` with ``TP_h* / P >= rate``.
    """
    n_pos = int(ood_le[-1])
    n_neg = int(id_le[-1])
    ol = ood_le.astype(np.float64)
    il = id_le.astype(np.float64)
    a = _counts_per_group(ol)
    b = _counts_per_group(il)
    t = np.multiply(il, 2.0)
    t -= b  # id_le[h] + id_le[h-1]
    auroc = float(np.dot(a, t) / (2.0 * n_pos * n_neg))
    np.add(ol, il, out=t)
    np.divide(il, t, out=t)  # precision with ID positive at threshold "s <= u_h"
    aupr_in = float(np.dot(b, t) / n_neg)
    u = np.add(ol, il)
    np.subtract(u, a, out=u)
    u -= b
    np.subtract(n_pos + n_neg, u, out=u)  # TP_h + FP_h
    np.subtract(a, ol, out=t)
    t += n_pos  # TP_h
    t /= u
    aupr_out = float(np.dot(a, t) / n_pos)
    out: dict[str, float] = {"AUROC": auroc, "AUPR-IN": aupr_in, "AUPR-OUT": aupr_out}
    for rate in rates:
        # first ROC point from the top with TP/P >= rate: the largest h with TP_h >= k
        k = _first_k_reaching(rate, n_pos)
        h = int(np.searchsorted(ood_le, n_pos - k, side="right"))
        fp = n_neg - (int(id_le[h - 1]) if h else 0)
        out[_rate_key(rate)] = fp / n_neg
    return out


def _exact_metrics(s_id: np.ndarray, s_ood: np.ndarray, rates: Sequence[float]) -> dict[str, float]:
    """The metrics of :func:`_curve_metrics` from the two **sorted** score arrays, per sample.

    Every sum over thresholds ``u_h`` is a sum over the samples at ``u_h``, so each OOD sample
    ``u`` adds ``(#{ID < u} + #{ID <= u}) / (2 P N)`` to AUROC and ``TP/(TP + FP) / P`` to
    AUPR-OUT (``TP = #{OOD >= u}``, ``FP = #{ID >= u}``), and each ID sample ``v`` adds
    ``#{ID <= v} / (#{ID <= v} + #{OOD <= v}) / N`` to AUPR-IN. Counts come from
    ``searchsorted`` on the sorted arrays, in chunks of :data:`_CHUNK` samples: no merged copy,
    a fixed working set (no temporary grows with the number of samples).
    """
    n_pos, n_neg = s_ood.size, s_id.size
    auroc2 = aupr_out = aupr_in = 0.0
    for lo in range(0, n_pos, _CHUNK):
        u = s_ood[lo : lo + _CHUNK]
        id_lt = np.searchsorted(s_id, u, side="left").astype(np.float64)
        auroc2 += float(id_lt.sum()) + float(np.searchsorted(s_id, u, side="right").sum())
        tp = n_pos - np.searchsorted(s_ood, u, side="left").astype(np.float64)
        aupr_out += float((tp / (tp + (n_neg - id_lt))).sum())
    for lo in range(0, n_neg, _CHUNK):
        v = s_id[lo : lo + _CHUNK]
        id_le = np.searchsorted(s_id, v, side="right").astype(np.float64)
        aupr_in += float((id_le / (id_le + np.searchsorted(s_ood, v, side="right"))).sum())
    out = {
        "AUROC": auroc2 / (2.0 * n_pos * n_neg),
        "AUPR-IN": aupr_in / n_neg,
        "AUPR-OUT": aupr_out / n_pos,
    }
    for rate in rates:  # the largest threshold flagging >= k OOD samples is the k-th largest
        k = _first_k_reaching(rate, n_pos)
        fp = n_neg - int(np.searchsorted(s_id, s_ood[n_pos - k], side="left"))
        out[_rate_key(rate)] = fp / n_neg
    return out


def _orderable_bins(scores: np.ndarray, bits: int) -> np.ndarray:
    """Monotone bin index in ``[0, 2**bits)`` of each float64 score (see :class:`OODMetrics`).

    ``v = float32(s)`` is mapped to its order-preserving 32-bit key (IEEE-754 bit pattern,
    sign-flipped) and the key's top ``bits`` bits are the bin: a bin holds the values of ``v``
    sharing sign, exponent and leading ``bits - 9`` mantissa bits. The map is fixed (it does not
    depend on the data), so the result does not depend on the order of the samples.
    """
    with np.errstate(over="ignore"):
        v = scores.astype(np.float32)  # |s| > 3.4e38 becomes +-inf
    v += np.float32(0.0)  # -0.0 -> +0.0, so the two zeros share a bin
    u = v.view(np.uint32)
    key = np.where(u >> np.uint32(31), ~u, u | np.uint32(0x80000000))
    return (key >> np.uint32(32 - bits)).astype(np.intp)


class OODMetrics:
    """Streaming OOD detection metrics with OOD as the positive class.

    Feed batches with :meth:`update`, read the metrics with :meth:`compute`. With ``P`` OOD
    samples, ``N`` ID samples and, for each distinct score threshold ``t`` (ties form one
    threshold), ``TP(t) = #{OOD: s >= t}`` and ``FP(t) = #{ID: s >= t}``:

    - ``AUROC``: area under the ROC curve ``(FP/N, TP/P)`` by the trapezoidal rule, equal to
      ``P(s_ood > s_id) + 1/2 P(s_ood = s_id)`` (sklearn ``roc_auc_score``).
    - ``AUPR-OUT``: average precision with OOD positive,
      ``AP = sum_t (R(t) - R(t_prev)) * Prec(t)``, ``R = TP/P``, ``Prec = TP/(TP+FP)``:
      step-wise, no interpolation (sklearn ``average_precision_score``).
    - ``AUPR-IN``: the same with ID positive and the scores negated.
    - ``FPR{k}TPR`` (``k = round(100 * rate)``) for each ``rate`` in ``fpr_at``: ``FP(t*)/N``
      at the first ROC point, walking from the highest threshold down, whose ``TP/P >= rate``,
      i.e. the largest threshold that flags at least ``rate`` of the OOD samples. No
      interpolation between ROC points (sklearn ``roc_curve(..., drop_intermediate=False)``).
    - ``ACC``: when predictions were given, ``mean(prediction == label)`` over ID samples only.

    ``mode="exact"`` keeps every score as float64 in one list per class (8 bytes a sample, the
    class is implied) and matches sklearn to rounding; :meth:`compute` sorts each class once
    (merging its batches needs 8 more bytes a sample of that class, once) and then works in
    chunks (a few MB whatever the number of samples). ``mode="binned"`` keeps two fixed
    histograms of ``bins`` int64 counters (``bins`` a power of two, ``2**10 .. 2**26``; 16 MiB
    for the default ``2**20``): memory does not grow with the data. The bin of a score ``s`` is
    the top ``log2(bins)`` bits of the order-preserving bit pattern of ``float32(s)``: a fixed
    monotone map (the result does not depend on the order of the samples), so two scores share
    a bin only if they have the same sign and ``|a - b| < 2**-(log2(bins) - 10) * max(|a|, |b|)``
    (``~9.8e-4`` relative by default), or both are below ``1.2e-38`` in magnitude, or both beyond
    float32 range (``3.4e38``, they tie with ``inf``). Samples sharing a bin count as tied, so
    ``|AUROC_binned - AUROC_exact| <= 1/2 * fraction of (OOD, ID) pairs sharing a bin without
    an exact tie``; distinct scores in distinct bins give exactly the exact-mode metrics.
    Resolution is relative to ``|s|``: scores clustered far from 0 (``1000 +- 1``) lose it;
    ``offset=c`` (a constant fixed in advance, never taken from the data) bins ``s - c``
    instead, and every statement above holds for ``s - c``.

    Distributed: when a torch.distributed process group with more than one rank is running and
    ``sync_on_compute`` is true (default), :meth:`compute` combines every rank's samples (exact:
    scores all-gathered, unequal counts allowed; binned: histograms all-reduced), so every rank
    gets the metrics of all samples. It is a collective: call it on every rank. Each rank's own
    state is unchanged; ``OODX_DISTRIBUTED_SYNC=0`` turns it off everywhere.
    """

    def __init__(
        self,
        fpr_at: float | Sequence[float] = 0.95,
        void_label: int | None = None,
        mode: str = "exact",
        bins: int = _DEFAULT_BINS,
        offset: float = 0.0,
        sync_on_compute: bool = True,
    ) -> None:
        owner = "OODMetrics"
        self.sync_on_compute = bool(sync_on_compute)
        scalar = (int, float, np.integer, np.floating)
        rates = [fpr_at] if isinstance(fpr_at, scalar) else list(fpr_at)
        if not rates:
            raise _fail(owner, "fpr_at", "a rate or a non-empty sequence of rates", "[]")
        keys: set[str] = set()
        for rate in rates:
            if isinstance(rate, bool) or not isinstance(rate, scalar):
                raise _fail(owner, "fpr_at", "rates in (0, 1]", repr(rate))
            if not 0.0 < float(rate) <= 1.0:
                raise _fail(owner, "fpr_at", "rates in (0, 1]", repr(rate))
            key = _rate_key(float(rate))
            if key in keys:
                raise _fail(owner, "fpr_at", f"rates with distinct keys ({key} twice)", repr(rates))
            keys.add(key)
        self.fpr_at: tuple[float, ...] = tuple(float(r) for r in rates)
        if void_label is not None and (
            isinstance(void_label, bool) or not isinstance(void_label, (int, np.integer))
        ):
            raise _fail(owner, "void_label", "an int or None", repr(void_label))
        self.void_label = None if void_label is None else int(void_label)
        if mode not in _MODES:
            raise _fail(owner, "mode", f"one of {_MODES}", repr(mode))
        self.mode = mode
        if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)):
            raise _fail(owner, "bins", "an int", repr(bins))
        bits = int(bins).bit_length() - 1
        if bins < 1 or 1 << bits != bins or not _MIN_BITS <= bits <= _MAX_BITS:
            raise _fail(
                owner, "bins", f"a power of two from 2**{_MIN_BITS} to 2**{_MAX_BITS}", repr(bins)
            )
        self.bins = int(bins)
        self._bits = bits
        if isinstance(offset, bool) or not isinstance(
            offset, (int, float, np.integer, np.floating)
        ):
            raise _fail(owner, "offset", "a finite number", repr(offset))
        if not math.isfinite(float(offset)):
            raise _fail(owner, "offset", "a finite number", repr(offset))
        self.offset = float(offset)
        self.reset()

    def reset(self) -> None:
        """Forget every sample seen so far (the configuration is kept)."""
        self._id_scores: list[np.ndarray] = []  # exact mode: float64 scores per class
        self._ood_scores: list[np.ndarray] = []
        self._id_sorted = self._ood_sorted = False
        self._hist: np.ndarray | None = None  # (bins, 2) int64: [:, 0] ID, [:, 1] OOD counts
        self._with_predictions: bool | None = None
        self._correct = 0
        self._n_id_predicted = 0

    def update(self, scores: Any, labels: Any, predictions: Any | None = None) -> None:
        """Add a batch: outlier ``scores`` and ``labels`` (``>= 0`` ID, ``< 0`` OOD) of one shape.

        ``predictions`` (class indices, same shape) enable ``ACC``; give them in every update or
        in none. Numpy arrays and torch tensors (any device) are accepted.
        """
        owner = "OODMetrics.update"
        s = _check_scores(owner, "scores", scores)
        y = _check_int(owner, "labels", labels, "integer labels (>= 0 ID class, < 0 OOD)")
        if y.shape != s.shape:
            raise _fail(owner, "labels", f"of the shape of 'scores' {tuple(s.shape)}", _describe(y))
        p = None
        if predictions is not None:
            p = _check_int(owner, "predictions", predictions, "integer class indices")
            if p.shape != y.shape:
                raise _fail(
                    owner, "predictions", f"of the shape of 'labels' {tuple(y.shape)}", _describe(p)
                )
        with_predictions = p is not None
        if self._with_predictions is None:
            self._with_predictions = with_predictions
        elif self._with_predictions != with_predictions:
            had = "with" if self._with_predictions else "without"
            raise _fail(
                owner,
                "predictions",
                f"given in every update or in none (earlier updates came {had} them)",
                "None" if p is None else _describe(p),
            )

        s = s.reshape(-1)
        y = y.reshape(-1)
        if self.void_label is not None:
            keep = y != self.void_label
            if not keep.all():
                s, y = s[keep], y[keep]
                if p is not None:
                    p = p.reshape(-1)[keep]
        is_ood = y < 0
        if p is not None:
            is_id = ~is_ood
            self._correct += int(np.count_nonzero(p.reshape(-1)[is_id] == y[is_id]))
            self._n_id_predicted += int(np.count_nonzero(is_id))
        if not s.size:
            return
        s = s.astype(np.float64, copy=False)
        if self.mode == "exact":  # boolean indexing copies: the caller's buffer is not kept
            for which, mask in (("ood", is_ood), ("id", ~is_ood)):
                part = s[mask]
                if part.size:
                    getattr(self, f"_{which}_scores").append(part)
                    setattr(self, f"_{which}_sorted", False)
            return
        if self._hist is None:
            self._hist = np.zeros((self.bins, 2), dtype=np.int64)
        with np.errstate(over="ignore"):  # beyond float64 range: ties with inf, as documented
            idx = _orderable_bins(s - self.offset if self.offset else s, self._bits)
        counts = np.bincount(2 * idx + is_ood, minlength=2 * self.bins)
        self._hist += counts.reshape(self.bins, 2)

    def _sorted_exact(self, which: str) -> np.ndarray:
        """All stored scores of one class (``"ood"`` / ``"id"``), concatenated and sorted once."""
        parts: list[np.ndarray] = getattr(self, f"_{which}_scores")
        sorted_flag = f"_{which}_sorted"
        if not parts:
            return np.zeros(0, np.float64)
        if len(parts) > 1 or not getattr(self, sorted_flag):
            merged = np.concatenate(parts) if len(parts) > 1 else parts[0]  # owned: sort in place
            merged.sort()
            parts[:] = [merged]
            setattr(self, sorted_flag, True)
        return parts[0]

    def _binned_counts(self, hist: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(ood_le, id_le)`` of a histogram: counts ``<=`` each non-empty bin, lowest first
        (see :func:`_curve_metrics`); ``([0], [0])`` before any sample."""
        if hist is None:
            return np.zeros(1, np.int64), np.zeros(1, np.int64)
        hist = hist[hist.any(axis=1)]
        if not hist.size:
            return np.zeros(1, np.int64), np.zeros(1, np.int64)
        return np.cumsum(hist[:, 1]), np.cumsum(hist[:, 0])

    def compute(self) -> dict[str, float]:
        """The metrics over every sample seen since the last :meth:`reset` (see the class doc).

        Raises ``ValueError`` unless both ID and OOD samples were seen.
        """
        sync = self.sync_on_compute and _distributed()
        if self.mode == "binned":
            hist = _sync_histogram(self._hist, self.bins) if sync else self._hist
            ood_le, id_le = self._binned_counts(hist)
            n_ood, n_id = int(ood_le[-1]), int(id_le[-1])
        else:
            s_id, s_ood = self._sorted_exact("id"), self._sorted_exact("ood")
            if sync:
                s_id, s_ood = np.sort(_gather_scores(s_id)), np.sort(_gather_scores(s_ood))
            n_ood, n_id = s_ood.size, s_id.size
        correct, n_predicted = self._correct, self._n_id_predicted
        with_predictions = bool(self._with_predictions)
        if sync:
            correct, n_predicted, with_predictions = _sum_ints(
                correct, n_predicted, int(with_predictions)
            )
        if n_ood == 0 or n_id == 0:
            void = "" if self.void_label is None else f" (label {self.void_label} ignored as void)"
            raise ValueError(
                "OODMetrics.compute: needs both in-distribution samples (label >= 0) and OOD "
                f"samples (label < 0) to rank, got {n_id} ID and {n_ood} OOD samples{void}; "
                "AUROC, AUPR and FPR@TPR are undefined otherwise"
            )
        if self.mode == "binned":
            out = _curve_metrics(ood_le, id_le, self.fpr_at)
        else:
            out = _exact_metrics(s_id, s_ood, self.fpr_at)
        if with_predictions:
            out["ACC"] = correct / max(n_predicted, 1)
        return out

    def __repr__(self) -> str:
        rates = self.fpr_at[0] if len(self.fpr_at) == 1 else list(self.fpr_at)
        return (
            f"OODMetrics(fpr_at={rates!r}, void_label={self.void_label!r}, mode={self.mode!r}, "
            f"bins={self.bins}, offset={self.offset!r})"
        )


def _distributed() -> bool:
    """A process group with more than one rank runs (torch is not imported to find out)."""
    import sys

    if "torch" not in sys.modules:
        return False
    from ood_core.distributed import should_sync

    return should_sync()


def _gather_scores(scores: np.ndarray) -> np.ndarray:
    """Float64 scores of every rank concatenated (lengths may differ)."""
    import torch

    from ood_core.distributed import _device, all_gather_cat

    local = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float64)).to(_device())
    return all_gather_cat(local).cpu().numpy()


def _sync_histogram(hist: np.ndarray | None, bins: int) -> np.ndarray:
    """The ``(bins, 2)`` histograms of every rank summed."""
    import torch

    from ood_core.distributed import _device, all_reduce_sum

    local = np.zeros((bins, 2), np.int64) if hist is None else hist
    (total,) = all_reduce_sum(torch.from_numpy(local).to(_device()))
    return total.cpu().numpy()


def _sum_ints(*values: int) -> tuple[int, ...]:
    import torch

    from ood_core.distributed import _device, all_reduce_sum

    (total,) = all_reduce_sum(torch.tensor(values, dtype=torch.int64, device=_device()))
    return tuple(int(v) for v in total.tolist())


def threshold_for_id_rate(id_scores: Any, keep: float = 0.95) -> float:
    """The outlier-score threshold that keeps a fraction ``keep`` of the given ID scores.

    With ``n`` ID scores sorted ascending ``s_(1) <= ... <= s_(n)``, returns
    ``t = s_(k)``, ``k = ceil(keep * n)``: the smallest score such that
    ``#{s <= t} / n >= keep``. Scores ``> t`` are flagged OOD, so at most ``1 - keep`` of these
    ID scores are flagged (exactly that fraction when ``keep * n`` is an integer and there are
    no ties at ``t``). No interpolation (numpy ``quantile(..., method="inverted_cdf")``).
    """
    owner = "threshold_for_id_rate"
    s = _check_scores(owner, "id_scores", id_scores).reshape(-1)
    if not s.size:
        raise _fail(owner, "id_scores", "a non-empty array of ID scores", _describe(s))
    if isinstance(keep, bool) or not isinstance(keep, (int, float, np.integer, np.floating)):
        raise _fail(owner, "keep", "a fraction in (0, 1]", repr(keep))
    if not 0.0 < float(keep) <= 1.0:
        raise _fail(owner, "keep", "a fraction in (0, 1]", repr(keep))
    n = s.size
    # the relative slack absorbs rounding in keep * n (0.07 * 100 = 7.000000000000001)
    k = min(max(math.ceil(float(keep) * n * (1.0 - 1e-12)), 1), n)
    return float(np.partition(s.astype(np.float64), k - 1)[k - 1])
