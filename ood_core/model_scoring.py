"""Scorers that run the model themselves: gradient and stochastic methods (``reads = "inputs"``).

ODIN, GradNorm, Monte-Carlo dropout and their kin are not functions of one model output: they
differentiate the model w.r.t. its input, its parameters or its activations, or run it several
times with dropout on. Their scorer takes the model (``create_scorer("odin", model=model)``) and
the raw inputs, runs in PyTorch only and is registered ``exportable=False`` (the exporter
refuses it, see :func:`ood_core.resolve.check_exportable`).

The model stays the caller's: it is not a submodule of the scorer (not in its ``state_dict``,
not moved by ``.to()``, not switched by ``.eval()``). While scoring, :func:`model_kept` puts it
in evaluation mode and restores afterwards every module's train/eval flag, every parameter's
``requires_grad`` and ``.grad``: scoring leaves no trace on the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ood_core.scoring import Scorer
from ood_core.validation import check_float, fail


def check_model(owner: str, model: Any, arg: str = "model") -> nn.Module:
    """``model`` must be an ``nn.Module`` (the network the scorer runs)."""
    if not isinstance(model, nn.Module):
        raise fail(owner, arg, "a torch.nn.Module mapping inputs to logits", model)
    return model


def model_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    """The dtype of the model's first floating parameter (``default`` without one)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return default


@contextlib.contextmanager
def model_kept(model: nn.Module, *, mode: str = "eval") -> Iterator[nn.Module]:
    """Run ``model`` in ``mode`` (``eval``; ``dropout``: eval but dropout layers in train mode;
    ``train``) with gradients enabled; restore every module's mode and every parameter's
    ``requires_grad`` and ``.grad``."""
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        model.train(mode == "train")
        if mode == "dropout":
            for m in model.modules():
                if isinstance(m, nn.modules.dropout._DropoutNd):
                    m.train()
        with torch.inference_mode(False), torch.enable_grad():
            yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag, grad in params:
            p.requires_grad_(flag)
            p.grad = grad


def per_sample_grads(
    model: nn.Module,
    x: Tensor,
    loss: Callable[[Tensor], Tensor],
    select: Callable[[str], bool] | None,
    owner: str,
    chunk: int = 32,
) -> Iterator[dict[str, Tensor]]:
    """Per-sample gradients ``d loss(f(x_i)) / d w`` of the selected parameters, by chunks.

    ``loss`` maps logits ``(1, C)`` of one sample to a scalar; ``select(name)`` picks the
    parameters ``w`` (``None``: all). ``torch.func.vmap`` over ``torch.func.grad``: one batched
    pass per chunk of at most ``chunk`` samples (memory grows with the chunk, not the batch).
    """
    from torch.func import functional_call, grad, vmap

    chosen = {n: p.detach() for n, p in model.named_parameters() if select is None or select(n)}
    if not chosen:
        raise fail(owner, "param_filter", "a filter that selects at least one parameter", "none")
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in chosen}
    fixed.update(dict(model.named_buffers()))

    def one(params: dict[str, Tensor], xi: Tensor) -> Tensor:
        return loss(functional_call(model, {**params, **fixed}, (xi[None],)))

    per_sample = vmap(grad(one), in_dims=(None, 0))
    for start in range(0, x.shape[0], chunk):
        yield per_sample(chosen, x[start : start + chunk])


def check_filter(owner: str, param_filter: Any) -> Callable[[str], bool] | None:
    """``param_filter`` must be ``None`` (all parameters) or a callable ``name -> bool``."""
    if param_filter is not None and not callable(param_filter):
        raise fail(
            owner, "param_filter", "None or a callable (parameter name) -> bool", param_filter
        )
    return param_filter


def grad_norms(
    model: nn.Module,
    x: Tensor,
    loss: Callable[[Tensor], Tensor],
    norm: Callable[[Tensor], Tensor],
    select: Callable[[str], bool] | None,
    owner: str,
    chunk: int = 32,
) -> Tensor:
    """``sum_w norm(d loss(f(x_i)) / d w)`` per sample ``(B,)``: ``norm`` maps a per-sample
    gradient ``(n, *w.shape)`` to ``(n,)`` (see :func:`per_sample_grads`)."""
    parts = [
        sum(norm(g.flatten(1)) for g in grads.values())
        for grads in per_sample_grads(model, x, loss, select, owner, chunk)
    ]
    return torch.cat(parts) if parts else x.new_zeros(0)


def input_step(
    x: Tensor, loss: Tensor, eps: float, norm_std: Sequence[float] | None, owner: str
) -> Tensor:
    """``x - eps * sign(d loss / d x) / std``: one signed gradient step that lowers ``loss``
    (ODIN's input preprocessing). ``norm_std`` (one per channel, dim 1) expresses ``eps`` in
    the unnormalised input scale."""
    (g,) = torch.autograd.grad(loss, x)
    step = g.sign()
    if norm_std:
        if len(norm_std) != x.shape[1]:
            raise fail(owner, "norm_std", f"{x.shape[1]} values, one per channel", len(norm_std))
        std = torch.tensor([float(v) for v in norm_std], dtype=x.dtype, device=x.device)
        step = step / std.view(1, -1, *([1] * (x.dim() - 2)))
    return x.detach() - eps * step


def model_inputs(owner: str, model: nn.Module, x: Any) -> Tensor:
    """Validated inputs ``(B, ...)`` (finite where value checks run), detached, in the model's
    dtype."""
    x = check_float(owner, "x", x)
    if x.dim() < 2:
        raise fail(owner, "x", "a batch of inputs (B, ...)", x)
    return x.detach().to(model_dtype(model, x.dtype))


def closed_scores(x: Tensor, scores: Tensor) -> Tensor:
    """``scores`` with ``+inf`` for samples whose input is not finite, and NaN/-inf made +inf:
    a sample the model cannot score is OOD, whatever a saturating model makes of it."""
    from ood_core.validation import fail_closed

    bad = ~torch.isfinite(x).flatten(1).all(1)
    bad = bad.view(-1, *([1] * (scores.dim() - 1)))
    return fail_closed(torch.where(bad, torch.full_like(scores, torch.inf), scores.detach()))


class ModelScorer(Scorer):
    """Base of scorers that run the model on raw inputs (gradient or stochastic methods).

    Subclasses implement :meth:`_score` on validated inputs cast to the model's dtype, inside
    :func:`model_kept`; :meth:`forward` adds input checks and fail-closed scores (a NaN score,
    or a sample with a non-finite input where value checks are off, scores ``+inf``). ``not_exportable_because`` is the exporter's reason to refuse.
    """

    reads = "inputs"
    #: why the exporter refuses the scorer (completes "cannot be exported: ...")
    not_exportable_because: ClassVar[str] = "it runs the model several times"
    #: the model's mode while scoring (see :func:`model_kept`)
    score_mode: str = "eval"
    model: nn.Module

    def __init__(self, model: Any, *, head: nn.Module | None = None) -> None:
        super().__init__(head=head)
        # the caller's model, not a submodule: no state_dict entry, no .to()/.eval() side effects
        object.__setattr__(self, "model", check_model(type(self).__name__, model))

    def forward(self, x: Tensor) -> Tensor:
        """Outlier scores of the inputs ``x`` ``(B, ...)`` (higher = more OOD)."""
        self._check_fitted()
        x = model_inputs(type(self).__name__, self.model, x)
        with model_kept(self.model, mode=self.score_mode):
            scores = self._score(x)
        return closed_scores(x, scores)

    def _score(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _score(x)")


__all__ = [
    "ModelScorer",
    "check_filter",
    "check_model",
    "closed_scores",
    "grad_norms",
    "input_step",
    "model_inputs",
    "model_dtype",
    "model_kept",
    "per_sample_grads",
]
