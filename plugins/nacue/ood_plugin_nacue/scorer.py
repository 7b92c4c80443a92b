"""NAC-UE: neuron activation coverage (Liu, Lou, Li, Chen, Zhao, ICLR 2024)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.model_scoring import ModelScorer, model_kept
from ood_core.validation import check_positive_int, fail

#: neuron states are clamped to ``[EPS, 1 - EPS]``, the end points of the bin edges
EPS = 1e-6


def reduce_layer(z: Tensor) -> Tensor:
    """A layer's ``(B, ...)`` tensor as ``(B, N)`` neurons: ``(B, N)`` as is, the spatial mean
    of ``(B, C, H, W)`` maps (one neuron per channel), anything else flattened."""
    if z.dim() == 2:
        return z
    if z.dim() == 4:
        return z.mean(dim=(2, 3))
    return z.flatten(1)


def geometric_edges(m: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``2 (m // 2) + 1`` bin edges on ``[EPS, 1 - EPS]``, symmetric about 1/2: ``m // 2``
    log-spaced intervals from ``EPS`` to ``1/2`` and their mirror images (dense near 0 and 1).

    The grid is float32 whatever ``dtype``, as in pytorch-ood 0.4.0, so states bin alike in
    both: its middle edge is ``0.5 - 2**-25``, so a state of exactly 1/2 (a neuron whose
    output or gradient is 0) falls in the bin above the middle.
    """
    f32 = torch.float32
    lower = torch.logspace(math.log10(EPS), math.log10(0.5), m // 2 + 1, dtype=f32, device=device)
    return torch.cat([lower, 1 - lower.flip(0)[1:]]).to(dtype)


def bin_states(states: Tensor, m: int) -> Tensor:
    """The bin ``k`` in ``0..m-1`` of each state: ``e_k < s <= e_{k+1}`` for the
    :func:`geometric_edges` ``e`` (states clamped to ``[EPS, 1 - EPS]``; an odd ``m`` leaves
    the last bin empty, as in pytorch-ood 0.4.0)."""
    edges = geometric_edges(m, states.dtype, states.device)
    return (torch.bucketize(states.clamp(EPS, 1 - EPS), edges) - 1).clamp(0, m - 1)


def _positive(owner: str, arg: str, value: Any) -> float:
    v = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else -1.0
    if not 0 < v < math.inf:
        raise fail(owner, arg, "a finite number > 0 (one, or one per layer)", repr(value))
    return v


def _bins(owner: str, arg: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise fail(owner, arg, "an integer >= 2 (one, or one per layer)", repr(value))
    return value


def per_layer(owner: str, arg: str, value: Any, n: int, check: Callable[..., Any]) -> list[Any]:
    """``value`` (one for all layers, or a list/tuple of ``n``) checked by ``check``."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise fail(owner, arg, f"one value or {n} (one per layer)", f"{len(values)} values")
    return [check(owner, arg, v) for v in values]


def check_layers(owner: str, model: nn.Module, layers: Any) -> list[nn.Module]:
    """``layers``: a non-empty sequence of distinct submodules of ``model``."""
    if isinstance(layers, nn.Module) or not isinstance(layers, Sequence) or not layers:
        raise fail(owner, "layers", "a non-empty list of submodules of the model", layers)
    inside = {id(m) for m in model.modules()}
    for i, layer in enumerate(layers):
        if not isinstance(layer, nn.Module) or id(layer) not in inside:
            raise fail(owner, "layers", "submodules of the model", f"{type(layer).__name__} at {i}")
    if len({id(m) for m in layers}) != len(layers):
        raise fail(owner, "layers", "distinct modules", "a module listed twice")
    return list(layers)


class NACUE(ModelScorer):
    """``-sum_l 1/N_l sum_n min(O_l(n, bin(s_n(x))) / O*_l, 1)``: negated neuron coverage.

    Liu, Lou, Li, Chen, Zhao, "Neuron Activation Coverage: Rethinking Out-of-distribution
    Detection and Generalization", ICLR 2024, eqs. (3)-(7): the state of neuron ``n`` of layer
    ``l`` is ``s_n = sigmoid(alpha_l * r(z * dKL/dz)_n)``, ``z`` the layer's output, ``KL`` the
    divergence of the softmax from the uniform distribution (its gradient taken as that of
    ``-1/C sum_c log softmax_c``), ``r`` the reduction to ``(B, N)`` (:func:`reduce_layer` or
    ``feature_reduce``). ``fit`` counts in float64 how often ID inputs put each neuron's state in
    each of ``m_bins`` histogram bins (``O_l``, ``(N_l, M_l)`` per layer: memory independent of
    the data); a sample's coverage is the mean over neurons of ``min(O / O*, 1)`` at its own
    states, summed over layers; negated (higher = more OOD). Keywords as pytorch-ood 0.4.0's
    ``NACUE`` (per-layer values pair with ``layers`` in the given order; ``device`` is accepted
    and unused: inputs go to the model's device). Runs the model in PyTorch (not exportable).
    """

    needs_fit = True
    not_exportable_because = "it needs the gradient of the loss w.r.t. hooked layers' outputs"
    fit_sums = ("_acc",)

    def __init__(
        self,
        model: Any,
        layers: Sequence[nn.Module],
        m_bins: int | Sequence[int] = 50,
        alpha: float | Sequence[float] = 100.0,
        o_star: int | Sequence[int] = 50,
        feature_reduce: Callable[[Tensor], Tensor] | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(model)
        owner = type(self).__name__
        self.layers = check_layers(owner, self.model, layers)
        n = len(self.layers)
        self.m_bins = per_layer(owner, "m_bins", m_bins, n, _bins)
        self.alpha = per_layer(owner, "alpha", alpha, n, _positive)
        self.o_star = per_layer(owner, "o_star", o_star, n, check_positive_int)
        if feature_reduce is not None and not callable(feature_reduce):
            raise fail(
                owner, "feature_reduce", "None or a callable (B, ...) -> (B, N)", feature_reduce
            )
        self.feature_reduce = feature_reduce or reduce_layer
        self.device = device
        #: the per-layer histograms ``(N_l, M_l)`` fit sets
        self.fit_state = tuple(f"counts_{i}" for i in range(n))
        for name, m in zip(self.fit_state, self.m_bins):
            self.register_buffer(name, torch.zeros(0, m, dtype=torch.float64))
        self._acc: Tensor | None = None
        self._widths: list[int] | None = None

    def _run(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits of ``x`` and each hooked layer's output, in the order of ``layers``."""
        owner = type(self).__name__
        seen: list[list[Any]] = [[] for _ in self.layers]

        def keep(i: int, module: nn.Module, inputs: Any, output: Any) -> None:
            seen[i].append(output)

        handles = [m.register_forward_hook(partial(keep, i)) for i, m in enumerate(self.layers)]
        try:
            logits = self.model(x.detach().requires_grad_())
        finally:
            for handle in handles:
                handle.remove()
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            raise fail(owner, "model", "a model returning logits (B, C)", logits)
        for i, outs in enumerate(seen):
            if len(outs) != 1 or not isinstance(outs[0], Tensor):
                got = f"layer {i} ran {len(outs)} time(s)" if len(outs) != 1 else outs[0]
                raise fail(
                    owner, "layers", "layers that run once per forward, output a tensor", got
                )
        return logits, [outs[0] for outs in seen]

    def _states(self, x: Tensor) -> list[Tensor]:
        """Bin indices ``(B, N_l)`` of the neuron states ``sigmoid(alpha_l r(z_l dKL/dz_l))``."""
        owner = type(self).__name__
        logits, outputs = self._run(x)
        loss = -logits.log_softmax(dim=1).mean(dim=1).sum()  # samples independent: per-sample grads
        tracked = [i for i, z in enumerate(outputs) if z.requires_grad]  # others: no gradient
        wanted = [outputs[i] for i in tracked]
        found = torch.autograd.grad(loss, wanted, allow_unused=True) if wanted else ()
        grads = dict(zip(tracked, found))
        bins = []
        for i, z in enumerate(outputs):
            g = grads.get(i)
            if g is None:
                raise fail(
                    owner, "layers", "layers the logits depend on", f"layer {i}: no gradient"
                )
            r = self.feature_reduce(z.detach() * g)
            if not isinstance(r, Tensor) or r.dim() != 2 or r.shape[0] != x.shape[0]:
                raise fail(owner, "feature_reduce", f"a map to ({x.shape[0]}, N)", r)
            r = r.to(torch.promote_types(r.dtype, torch.float32))
            bins.append(bin_states(torch.sigmoid(self.alpha[i] * r), self.m_bins[i]))
        return bins

    def _model_device(self, x: Tensor) -> Tensor:
        p = next(self.model.parameters(), None)
        return x if p is None else x.to(p.device)

    def _fit_begin(self) -> None:
        self._acc, self._widths = None, None

    def _fit_update(self, x: Tensor, y: Tensor | None) -> None:
        """Add the batch's state counts; ``x`` float64 inputs (cast to the model's dtype)."""
        from ood_core.model_scoring import model_dtype

        x = self._model_device(x).to(model_dtype(self.model, torch.float32))
        with model_kept(self.model):
            bins = self._states(x)
        widths = [b.shape[1] for b in bins]
        if self._acc is None:
            self._alloc(widths)
        elif widths != self._widths:
            raise fail(
                type(self).__name__, "x", f"inputs giving layer widths {self._widths}", widths
            )
        flat, offset = [], 0
        for b, n, m in zip(bins, widths, self.m_bins):
            flat.append((b + offset + m * torch.arange(n, device=b.device)).flatten())
            offset += n * m
        hits = torch.bincount(torch.cat(flat).to(self._acc.device), minlength=self._acc.numel())
        self._acc += hits.to(torch.float64)

    def _alloc(self, widths: list[int]) -> None:
        self._widths = widths
        size = sum(n * m for n, m in zip(widths, self.m_bins))
        self._acc = torch.zeros(size, dtype=torch.float64, device=self.fitted.device)

    def _fit_sync(self) -> None:
        """A rank that saw no batch learns the layer widths, then the counts are summed."""
        from ood_core.distributed import all_reduce_max

        widths = [all_reduce_max(w) for w in (self._widths or [0] * len(self.layers))]
        if self._acc is None:
            self._alloc(widths)
        super()._fit_sync()

    def _fit_end(self) -> None:
        offset = 0
        for name, n, m in zip(self.fit_state, self._widths, self.m_bins):
            setattr(self, name, self._acc[offset : offset + n * m].view(n, m).clone())
            offset += n * m
        self._acc = None

    def _score(self, x: Tensor) -> Tensor:
        owner = type(self).__name__
        coverage = x.new_zeros(x.shape[0], dtype=torch.float64)
        for i, idx in enumerate(self._states(self._model_device(x))):
            counts = getattr(self, self.fit_state[i])
            if idx.shape[1] != counts.shape[0]:
                expected = f"inputs giving {counts.shape[0]} neurons in layer {i} (as in fit)"
                raise fail(owner, "x", expected, f"{idx.shape[1]} neurons")
            hits = counts.to(idx.device).gather(1, idx.t()).t().to(coverage.device)
            coverage = coverage + (hits / self.o_star[i]).clamp(max=1.0).mean(dim=1)
        return (-coverage).to(x.dtype)
