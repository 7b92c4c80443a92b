"""The conformance checks: each takes a case and raises ``AssertionError`` when the rule fails.

Losses follow DESIGN.md's loss rules (shapes, dtypes, empty/all-ID/all-OOD batches, bad input,
device moves, persistent state, ``torch.compile(fullgraph=True)``, a standalone scorer);
scorers its scorer rules (shapes, dtypes, large inputs, state, compile, ``torch.export`` at
several batch sizes).
"""

from __future__ import annotations

import copy
import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ood_core.registry import get_info, get_registry
from ood_core.testing.cases import InputSpec, LossCase, ScorerCase, default_inputs, scorer_input
from ood_core.testing.contract import check_loss_config, check_loss_roles, check_scorer_fit

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: backend for the compile checks: "eager" checks graph capture (fullgraph) cheaply; set
#: OODX_COMPILE_BACKEND=inductor to also generate and run code.
COMPILE_BACKEND = os.environ.get("OODX_COMPILE_BACKEND", "eager")


class NotApplicable(Exception):
    """Raised by a check that does not apply to a case (the runner reports it as skipped)."""


# ------------------------------------------------------------------------------------------
# helpers


def _skip(case: LossCase | ScorerCase, check: str) -> None:
    if check in case.skip:
        raise NotApplicable(f"{case}: {check} skipped: {case.skip[check]}")


def _loss_info(case: LossCase):
    return get_info("loss", case.name)


def _build_loss(case: LossCase, seed: int = 0) -> nn.Module:
    from ood_core.registry import create_loss

    torch.manual_seed(seed)
    loss = create_loss(case.name, **case.kwargs)
    assert isinstance(loss, nn.Module), f"{case}: create_loss must return a torch.nn.Module"
    return loss


def _spec(case: LossCase | ScorerCase, **kw: Any) -> InputSpec:
    base = dict(batch=6, num_classes=case.num_classes, dim=case.dim)
    base.update(kw)
    return InputSpec(**base)


def _loss_inputs(case: LossCase, spec: InputSpec) -> tuple[Any, ...]:
    if case.make_inputs is not None:
        return tuple(case.make_inputs(spec))
    return default_inputs(spec, _loss_info(case).inputs)


def _tasks(case: LossCase | ScorerCase, registered: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(case.tasks or registered)


def _float_inputs(args: tuple[Any, ...]) -> list[Tensor]:
    return [a for a in args if isinstance(a, Tensor) and a.is_floating_point()]


def _call(fn: Callable[..., Any], args: tuple[Any, ...], what: str) -> Any:
    """Call ``fn(*args)``; an exception becomes an AssertionError saying which case failed."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any exception is the failure we report
        raise AssertionError(f"{what}: forward raised {type(exc).__name__}: {exc}") from exc


def _assert_finite(value: Tensor, what: str) -> None:
    assert isinstance(value, Tensor), f"{what}: expected a tensor, got {type(value).__name__}"
    assert value.is_floating_point(), f"{what}: expected a floating tensor, got {value.dtype}"
    bad = ~torch.isfinite(value.detach())
    assert not bool(bad.any()), f"{what}: {int(bad.sum())} non-finite value(s) in {value.detach()}"


def _backward(value: Tensor, args: tuple[Any, ...], loss: nn.Module, what: str) -> None:
    leaves = [a for a in _float_inputs(args) if a.requires_grad]
    leaves += [p for p in loss.parameters() if p.requires_grad]
    assert value.requires_grad, (
        f"{what}: the result is detached from the graph (inputs require grad but the loss does not)"
    )
    grads = torch.autograd.grad(value.sum(), leaves, allow_unused=True)
    for leaf, grad in zip(leaves, grads):
        if grad is not None:
            _assert_finite(grad.float(), f"{what}: gradient w.r.t. a {tuple(leaf.shape)} input")


def _close(a: Tensor, b: Tensor, case: LossCase | ScorerCase, what: str) -> None:
    torch.testing.assert_close(
        a.detach().double(),
        b.detach().double(),
        atol=case.atol,
        rtol=case.rtol,
        msg=lambda m: f"{case}: {what}: {m}",
    )


def _plugin_module(plugin: str) -> str:
    return get_registry().plugins[plugin].module


def _assert_light_import(module: str, target_module: str, what: str) -> None:
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"heavy = [m for m in ('torch', {target_module!r}) if m in sys.modules]; "
        "print(','.join(heavy)); sys.exit(3 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (
        f"{what}: importing the plugin module {module!r} must not import torch or the method's "
        f"code ({target_module}); it imported: {proc.stdout.strip() or proc.stderr.strip()}"
    )


def _check_metadata(info: Any, case: LossCase | ScorerCase) -> type:
    assert info.summary.strip(), f"{case}: registration needs a summary"
    obj = info.load()
    assert isinstance(obj, type) and issubclass(obj, nn.Module), (
        f"{case}: target {info.target} must be a torch.nn.Module subclass, got {obj!r}"
    )
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{case}: {obj.__name__} needs a docstring (one line, formula, paper)"
    return obj


class _HostSyncDetector:
    """Records ATen ops that read tensor values on the host or make shapes depend on data.

    On a GPU each of them is a host-device synchronisation (``.item()``, ``bool(t)``,
    ``nonzero``, boolean-mask indexing, ``unique``, ``masked_select``); on the CPU they are the
    same ops, so this check finds on any machine what ``torch.cuda.set_sync_debug_mode`` would
    find on a GPU.
    """

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        aten = torch.ops.aten
        sync_ops = {
            aten._local_scalar_dense.default,
            aten.nonzero.default,
            aten.nonzero_static.default,
            aten.masked_select.default,
            aten._unique2.default,
            aten.unique_dim.default,
            aten.unique_consecutive.default,
            aten.repeat_interleave.Tensor,
        }
        found: list[str] = []
        self.found = found

        def has_bool_index(indices: Any) -> bool:
            return any(isinstance(i, Tensor) and i.dtype == torch.bool for i in indices or ())

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                packet = func.overloadpacket
                if func in sync_ops or (
                    packet in (aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_)
                    and len(args) > 1
                    and has_bool_index(args[1])
                ):
                    found.append(str(func))
                return func(*args, **(kwargs or {}))

        self.mode = Mode()

    def __enter__(self) -> _HostSyncDetector:
        from ood_core.validation import set_value_checks

        set_value_checks("never")  # value checks are off on accelerators by default, too
        self.mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        from ood_core.validation import set_value_checks

        self.mode.__exit__(*exc)
        set_value_checks("auto")

    def assert_none(self, what: str) -> None:
        assert not self.found, (
            f"{what}: ops that synchronise host and device / make shapes data-dependent: "
            f"{sorted(set(self.found))} (use masks and torch.where instead of boolean indexing, "
            "and keep tensor values off the host)"
        )


# ------------------------------------------------------------------------------------------
# loss checks


def check_loss_registration(case: LossCase) -> None:
    """Metadata is complete, the target is a documented nn.Module, the natural scorer exists."""
    info = _loss_info(case)
    _check_metadata(info, case)
    if info.scorer:
        get_info("scorer", info.scorer)  # raises UnknownNameError naming the alternatives
    sig = inspect.signature(info.load().forward)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    assert len(params) >= len(info.inputs) or any(p.kind is p.VAR_POSITIONAL for p in params), (
        f"{case}: registered inputs {info.inputs} do not fit forward{sig}"
    )


def check_loss_lazy_import(case: LossCase) -> None:
    """The plugin's entry-point module imports neither torch nor the loss's module."""
    info = _loss_info(case)
    _assert_light_import(_plugin_module(info.plugin), info.target.split(":")[0], str(case))


def check_loss_forward(case: LossCase) -> None:
    """Mean reduction gives a finite scalar with gradients, for every registered task."""
    for task in _tasks(case, _loss_info(case).tasks):
        loss = _build_loss(case)
        args = _loss_inputs(case, _spec(case, task=task))
        what = f"{case} ({task})"
        out = _call(loss, args, what)
        _assert_finite(out, what)
        assert out.dim() == 0, f"{what}: expected a scalar loss, got shape {tuple(out.shape)}"
        _backward(out, args, loss, what)


def check_loss_dtypes(case: LossCase) -> None:
    """fp16, bf16, fp32 and fp64 inputs give a finite loss and finite gradients."""
    for dtype in DTYPES:
        loss = _build_loss(case)
        args = _loss_inputs(case, _spec(case, dtype=dtype))
        what = f"{case} ({dtype})"
        out = _call(loss, args, what)
        _assert_finite(out, what)
        _backward(out, args, loss, what)


def check_loss_batches(case: LossCase) -> None:
    """Empty, all-ID and all-OOD batches give a finite value with the graph kept."""
    for task in _tasks(case, _loss_info(case).tasks):
        for mode in ("empty", "id", "ood"):
            loss = _build_loss(case)
            args = _loss_inputs(case, _spec(case, task=task, mode=mode))
            what = f"{case} ({task}, {mode} batch)"
            out = _call(loss, args, what)
            _assert_finite(out, what)
            _backward(out, args, loss, what)


def _expect_value_error(
    loss: nn.Module, args: tuple[Any, ...], names: set[str], arg_names: set[str], what: str
) -> None:
    try:
        loss(*args)
    except ValueError as exc:
        message = str(exc)
        assert any(n in message for n in names), (
            f"{what}: the ValueError must name the loss ({' or '.join(sorted(names))}): {message}"
        )
        assert any(a in message for a in arg_names), (
            f"{what}: the ValueError must name the argument ({' or '.join(sorted(arg_names))}): "
            f"{message}"
        )
        return
    except Exception as exc:  # noqa: BLE001 - the wrong kind of error is the failure we report
        raise AssertionError(
            f"{what}: expected a ValueError naming the loss and the argument, got "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError(f"{what}: bad input was accepted silently")


def _arg_names(module: nn.Module, info: Any, i: int, method: str = "forward") -> set[str]:
    """Names the ``i``-th argument of ``module.<method>`` goes by: parameter name, registered role."""
    params = [p.name for p in inspect.signature(getattr(module, method)).parameters.values()]
    out = {params[i]} if i < len(params) else set()
    reads = getattr(info, "reads", None)
    inputs = getattr(info, "inputs", None) or (reads if isinstance(reads, tuple) else (reads,))
    if i < len(inputs) and inputs[i]:
        out.add(inputs[i])
    return out


def _int_inputs(args: tuple[Any, ...]) -> list[int]:
    return [
        i
        for i, a in enumerate(args)
        if isinstance(a, Tensor) and not a.is_floating_point() and a.dtype != torch.bool
    ]


def check_loss_bad_input(case: LossCase) -> None:
    """Wrong rank, mismatched batch, target >= C, float target and NaN raise a clear ValueError."""
    info = _loss_info(case)
    loss = _build_loss(case)
    args = _loss_inputs(case, _spec(case))
    names = {info.name, type(loss).__name__}

    def arg_names(i: int) -> set[str]:
        return _arg_names(loss, info, i)

    floats = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.is_floating_point()]
    ints = _int_inputs(args)
    mutations: list[tuple[str, int, Callable[[Tensor], Tensor]]] = []
    if floats:
        i = floats[0]
        mutations.append(("wrong rank", i, lambda x: x.detach()[..., None].requires_grad_()))

        def with_nan(x: Tensor) -> Tensor:
            y = x.detach().clone()
            y.view(-1)[0] = float("nan")
            return y.requires_grad_()

        mutations.append(("NaN", i, with_nan))
    if ints:
        j = ints[0]
        mutations.append(("mismatched batch", j, lambda t: t[:-1]))
        if "target_range" not in case.skip:
            mutations.append(
                ("target >= C", j, lambda t: torch.where(t >= 0, t, 0).fill_(case.num_classes))
            )
        mutations.append(("float target", j, lambda t: t.float()))
    assert mutations, f"{case}: no tensor inputs to corrupt; give the case make_inputs"
    for label, index, mutate in mutations:
        bad = list(args)
        bad[index] = mutate(args[index])
        allowed = arg_names(index)
        if label == "mismatched batch":
            allowed = set().union(*(arg_names(i) for i in range(len(args))))
        _expect_value_error(loss, tuple(bad), names, allowed, f"{case} ({label})")


def _with_value(x: Tensor, value: float, where: str) -> Tensor:
    """A copy of ``x`` (requiring grad) with ``value`` at its first or last element."""
    y = x.detach().clone()
    y.view(-1)[0 if where == "first" else -1] = value
    return y.requires_grad_(x.requires_grad)


def _value_error_or_finite(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    names: set[str],
    arg_names: set[str],
    what: str,
    leaves: tuple[Any, ...] | None = None,
) -> Tensor | None:
    """``fn(*args)`` must raise a ValueError naming the owner and the argument, or be finite.

    Returns the result when it is finite (gradients w.r.t. ``leaves`` checked too, for losses),
    ``None`` when it raised the right error.
    """
    try:
        out = fn(*args)
    except ValueError as exc:
        message = str(exc)
        assert any(n in message for n in names) and any(a in message for a in arg_names), (
            f"{what}: the ValueError must name the owner ({' or '.join(sorted(names))}) and the "
            f"argument ({' or '.join(sorted(arg_names))}): {message}"
        )
        return None
    except Exception as exc:  # noqa: BLE001 - the wrong kind of error is the failure we report
        raise AssertionError(
            f"{what}: expected a ValueError naming the argument or a finite result, got "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    _assert_finite(out, f"{what} (no ValueError, so the result must be finite)")
    if leaves is not None and out.requires_grad:
        _backward(out, args, leaves[0], what)
    return out


def check_loss_non_finite(case: LossCase) -> None:
    """+inf/-inf in any float input (eager, CPU): a ValueError naming it, or a finite loss.

    A finite loss must have finite gradients (``-inf`` logits may mask a class). NaN is
    covered by ``check_loss_bad_input``.
    """
    info = _loss_info(case)
    args = _loss_inputs(case, _spec(case))
    for i, x in enumerate(args):
        if not (isinstance(x, Tensor) and x.is_floating_point()):
            continue
        for value in (float("inf"), float("-inf")):
            for where in ("first", "last"):
                loss = _build_loss(case)
                bad = list(args)
                bad[i] = _with_value(x, value, where)
                _value_error_or_finite(
                    loss,
                    tuple(bad),
                    {info.name, type(loss).__name__},
                    _arg_names(loss, info, i),
                    f"{case} ({value} at the {where} entry of argument {i})",
                    leaves=(loss,),
                )


def check_loss_integer_targets(case: LossCase) -> None:
    """Targets of every integer dtype (int8/16/32, uint8 without outliers) work like int64."""
    for mode, dtypes in (
        ("mixed", (torch.int8, torch.int16, torch.int32)),
        ("id", (torch.uint8,)),
    ):
        args = _loss_inputs(case, _spec(case, mode=mode))
        ints = _int_inputs(args)
        if not ints:
            raise NotApplicable(f"{case}: no integer forward argument")
        torch.manual_seed(9)
        expected = _call(_build_loss(case), args, f"{case} (int64 targets)")
        for dtype in dtypes:
            cast = tuple(a.to(dtype) if i in ints else a for i, a in enumerate(args))
            torch.manual_seed(9)
            out = _call(_build_loss(case), cast, f"{case} ({dtype} targets)")
            _assert_finite(out, f"{case} ({dtype} targets)")
            if case.deterministic:
                _close(out, expected, case, f"result with {dtype} targets")


def check_loss_zero_classes(case: LossCase) -> None:
    """A float input with 0 entries in dim 1 (no classes or features) raises a clear ValueError."""
    info = _loss_info(case)
    loss = _build_loss(case)
    args = _loss_inputs(case, _spec(case))
    for i, x in enumerate(args):
        if isinstance(x, Tensor) and x.is_floating_point() and x.dim() >= 2:
            bad = list(args)
            bad[i] = x.detach()[:, :0].requires_grad_()
            _expect_value_error(
                loss,
                tuple(bad),
                {info.name, type(loss).__name__},
                _arg_names(loss, info, i),
                f"{case} (0 entries in dim 1 of argument {i})",
            )
            return
    raise NotApplicable(f"{case}: no float forward argument of rank >= 2")


def _train_steps(loss: nn.Module, case: LossCase, steps: int = 2) -> None:
    loss.train()
    for step in range(steps):
        args = _loss_inputs(case, _spec(case, seed=100 + step))
        out = loss(*args)
        out.backward()


def check_loss_state_dict(case: LossCase) -> None:
    """All state is persistent: a fresh instance loading the state dict behaves the same."""
    trained = _build_loss(case, seed=0)
    _train_steps(trained, case)
    state = trained.state_dict()
    for name, _ in trained.named_buffers():
        assert name in state, (
            f"{case}: buffer {name!r} is not in state_dict (register it with persistent=True) "
            "so it is lost on save/load"
        )
    fresh = _build_loss(case, seed=1)
    fresh.load_state_dict(state, strict=True)
    copied = copy.deepcopy(trained)
    args = _loss_inputs(case, _spec(case, seed=7))
    for module in (trained, fresh, copied):
        module.eval()
    with torch.no_grad():
        torch.manual_seed(3)
        a = trained(*args)
        torch.manual_seed(3)
        b = fresh(*args)
        torch.manual_seed(3)
        c = copied(*args)
    _assert_finite(b, f"{case} after load_state_dict")
    if case.deterministic:
        _close(a, b, case, "result after load_state_dict")
        _close(a, c, case, "result of a deepcopy")


def check_loss_device_move(case: LossCase) -> None:
    """``.to(float64)`` (and ``.to("cuda")`` when present) moves all state; forward still works."""
    targets: list[tuple[str, torch.dtype]] = [("cpu", torch.float64)]
    if torch.cuda.is_available():
        targets.append(("cuda", torch.float32))
    for device, dtype in targets:
        loss = _build_loss(case).to(device=device, dtype=dtype)
        for name, t in list(loss.named_parameters()) + list(loss.named_buffers()):
            assert t.device.type == device, (
                f"{case}: {name} stayed on {t.device} after .to({device})"
            )
        args = _loss_inputs(case, _spec(case, dtype=dtype, device=device))
        out = loss(*args)
        _assert_finite(out.cpu(), f"{case} on {device}/{dtype}")
        assert out.device.type == device, f"{case}: result on {out.device}, expected {device}"


def check_loss_compile(case: LossCase) -> None:
    """``torch.compile(fullgraph=True)`` captures forward in one graph and matches eager."""
    import torch._dynamo

    eager = _build_loss(case)
    eager.train()
    compiled_module = copy.deepcopy(eager)
    torch._dynamo.reset()
    compiled = torch.compile(compiled_module, fullgraph=True, backend=COMPILE_BACKEND)
    args = _loss_inputs(case, _spec(case))
    args_c = tuple(
        a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, Tensor) else a
        for a in args
    )
    torch.manual_seed(5)
    expected = eager(*args)
    torch.manual_seed(5)
    try:
        got = compiled(*args_c)
    except Exception as exc:  # noqa: BLE001 - report dynamo's reason
        raise AssertionError(
            f"{case}: torch.compile(fullgraph=True, backend={COMPILE_BACKEND!r}) failed: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    _assert_finite(got, f"{case} compiled")
    _backward(got, args_c, compiled_module, f"{case} compiled")
    if case.deterministic:
        _close(got, expected, case, "compiled result")
        for (name, a), (_, b) in zip(eager.named_buffers(), compiled_module.named_buffers()):
            if a.is_floating_point():
                _close(a, b, case, f"buffer {name} after a compiled step")


def check_loss_no_sync(case: LossCase) -> None:
    """Forward and backward (train and eval mode) cause no host-device synchronisation."""
    for task in _tasks(case, _loss_info(case).tasks):
        loss = _build_loss(case)
        for mode in ("train", "eval"):
            loss.train(mode == "train")
            args = _loss_inputs(case, _spec(case, task=task))
            with _HostSyncDetector() as detector:
                out = loss(*args)
                if out.requires_grad:
                    out.backward()
            detector.assert_none(f"{case} ({task}, {mode} mode)")


def check_loss_scorer(case: LossCase) -> None:
    """``loss.scorer()`` returns a standalone scorer module whose scores are finite and ``(B,)``."""
    info = _loss_info(case)
    loss = _build_loss(case)
    _train_steps(loss, case, steps=1)
    assert hasattr(loss, "scorer"), f"{case}: a loss must offer scorer()"
    scorer = loss.scorer()
    assert isinstance(scorer, nn.Module), f"{case}: scorer() must return an nn.Module"
    reads = get_info("scorer", info.scorer).reads if info.scorer else "logits"
    x = _scorer_input(reads, _spec(case))
    scores = scorer.eval()(x)
    _assert_finite(scores, f"{case}: scorer() output")
    assert tuple(scores.shape) == (x.shape[0],), f"{case}: scores shape {tuple(scores.shape)}"
    state = {k: v.clone() for k, v in loss.state_dict().items()}
    with torch.no_grad():
        for p in loss.parameters():
            p.add_(1.0)
    after = scorer(x)
    for k, v in loss.state_dict().items():
        v.copy_(state[k])
    _close(after, scores, case, "scorer() must hold a copy of the state, not a view of the loss")


LOSS_CHECKS: tuple[Callable[[LossCase], None], ...] = (
    check_loss_registration,
    check_loss_roles,
    check_loss_config,
    check_loss_lazy_import,
    check_loss_forward,
    check_loss_dtypes,
    check_loss_batches,
    check_loss_bad_input,
    check_loss_non_finite,
    check_loss_integer_targets,
    check_loss_zero_classes,
    check_loss_state_dict,
    check_loss_device_move,
    check_loss_compile,
    check_loss_no_sync,
    check_loss_scorer,
)


# ------------------------------------------------------------------------------------------
# scorer checks


def _scorer_input(reads: Any, spec: InputSpec, case: ScorerCase | None = None) -> Any:
    """The forward argument for ``spec``: the case's ``make_inputs`` or :func:`scorer_input`."""
    if case is not None and case.make_inputs is not None:
        return _tmap(lambda t: t.detach(), case.make_inputs(spec))
    return scorer_input(spec, reads)


def _tmap(fn: Callable[[Tensor], Tensor], x: Any) -> Any:
    """``fn`` applied to ``x``, or to each tensor of a tuple/list ``x`` (a multi-layer input)."""
    return type(x)(fn(t) for t in x) if isinstance(x, (tuple, list)) else fn(x)


def _first(x: Any) -> Tensor:
    """The (first) tensor of a scorer input."""
    return x[0] if isinstance(x, (tuple, list)) else x


def _score_shape(x: Any, task: str) -> tuple[int, ...]:
    """Scores are ``(B,)`` for classification, ``(B, H, W)`` for segmentation."""
    t = _first(x)
    return (t.shape[0],) if task == "classification" else (t.shape[0], *t.shape[2:])


def _with_first(x: Any, value: float, where: str) -> Any:
    """:func:`_with_value` on the (first) tensor of a scorer input."""
    if isinstance(x, (tuple, list)):
        return type(x)((_with_value(x[0], value, where), *x[1:]))
    return _with_value(x, value, where)


def _scorer_info(case: ScorerCase):
    return get_info("scorer", case.name)


def _build_scorer(case: ScorerCase, seed: int = 0) -> nn.Module:
    from ood_core.registry import create_scorer

    torch.manual_seed(seed)
    if case.from_loss is not None:
        loss = _build_loss(case.from_loss, seed=seed)
        _train_steps(loss, case.from_loss, steps=1)
        scorer = loss.scorer()
    else:
        scorer = create_scorer(case.name, **case.kwargs)
    if case.fit is not None:
        case.fit(scorer, _spec(case, seed=seed + 50))
    assert isinstance(scorer, nn.Module), f"{case}: a scorer must be an nn.Module"
    return scorer.eval()


def check_scorer_registration(case: ScorerCase) -> None:
    """Metadata is complete and the target is a documented nn.Module."""
    info = _scorer_info(case)
    _check_metadata(info, case)
    if info.needs_fit:
        assert hasattr(info.load(), "fit"), f"{case}: needs_fit=True but the scorer has no fit()"


def check_scorer_lazy_import(case: ScorerCase) -> None:
    """The plugin's entry-point module imports neither torch nor the scorer's module."""
    info = _scorer_info(case)
    _assert_light_import(_plugin_module(info.plugin), info.target.split(":")[0], str(case))


def check_scorer_forward(case: ScorerCase) -> None:
    """Scores are ``(B,)`` (``(B, H, W)`` for segmentation), finite; ``predict`` gives int64."""
    info = _scorer_info(case)
    for task in _tasks(case, info.tasks):
        scorer = _build_scorer(case)
        spec = _spec(case, task=task)
        x = _scorer_input(info.reads, spec, case)
        scores = scorer(x)
        expected = _score_shape(x, task)
        what = f"{case} ({task})"
        _assert_finite(scores, what)
        assert tuple(scores.shape) == expected, (
            f"{what}: scores shape {tuple(scores.shape)}, expected {expected}"
        )
        if hasattr(scorer, "predict"):
            pred = scorer.predict(x)
            assert pred.dtype == torch.int64, f"{what}: predict() must give int64, got {pred.dtype}"
            assert tuple(pred.shape) == expected, f"{what}: predict() shape {tuple(pred.shape)}"
        empty = scorer(_tmap(lambda t: t[:0], x))
        assert tuple(empty.shape) == (0, *expected[1:]), (
            f"{what}: empty batch gives {tuple(empty.shape)}"
        )


def check_scorer_dtypes(case: ScorerCase) -> None:
    """fp16, bf16, fp32 and fp64 outputs give finite scores."""
    info = _scorer_info(case)
    scorer = _build_scorer(case)
    for dtype in DTYPES:
        x = _scorer_input(info.reads, _spec(case, dtype=dtype), case)
        _assert_finite(_call(scorer, (x,), f"{case} ({dtype})"), f"{case} ({dtype})")


def check_scorer_extremes(case: ScorerCase) -> None:
    """Large-magnitude outputs (|x| = 1e4 in fp32) give finite scores, in the same order."""
    info = _scorer_info(case)
    scorer = _build_scorer(case)
    x = _scorer_input(info.reads, _spec(case), case)
    for scale in (1e4, -1e4):
        scaled = _tmap(lambda t, s=scale: t * s, x)
        _assert_finite(scorer(scaled), f"{case} (inputs scaled by {scale:g})")


def check_scorer_non_finite(case: ScorerCase) -> None:
    """NaN/+inf raise a ValueError naming the argument (eager, CPU); without checks, fail closed.

    ``-inf`` (which may mask a class) gives a ValueError or finite scores. With value checks off
    (as in a compiled or exported scorer) a sample holding NaN or +inf must score NaN, +inf or at
    least the largest clean score, and ``-inf`` must never give a ``-inf`` score. ``predict``
    rejects NaN too.
    """
    from ood_core.validation import set_value_checks

    info = _scorer_info(case)
    scorer = _build_scorer(case)
    x = _scorer_input(info.reads, _spec(case), case)
    names = {info.name, type(scorer).__name__}
    args = _arg_names(scorer, info, 0)
    clean = scorer(x)
    for value in (float("nan"), float("inf"), float("-inf")):
        bad = _with_first(x, value, "first")
        what = f"{case} ({value} in the input)"
        if value != value or value > 0:
            _expect_value_error(scorer, (bad,), names, args, what)
        else:
            _value_error_or_finite(scorer, (bad,), names, args, what)
        set_value_checks("never")
        try:
            got = scorer(bad).detach()[0]
        finally:
            set_value_checks("auto")
        closed = bool(torch.isnan(got) | (got == float("inf")) | (got >= clean.max()))
        assert got != float("-inf") and (value < 0 or closed), (
            f"{what}, value checks off: the sample scores {float(got)}, below the clean maximum "
            f"{float(clean.max())}; a non-finite input must score NaN or +inf (fail closed)"
        )
    if hasattr(scorer, "predict"):
        bad = _with_first(x, float("nan"), "first")
        _expect_value_error(
            scorer.predict,
            (bad,),
            names,
            _arg_names(scorer, info, 0, "predict") | args,
            f"{case} (predict with NaN)",
        )


def check_scorer_zero_classes(case: ScorerCase) -> None:
    """An output with 0 entries in dim 1 (no classes or features) raises a clear ValueError."""
    info = _scorer_info(case)
    scorer = _build_scorer(case)
    x = _scorer_input(info.reads, _spec(case), case)
    _expect_value_error(
        scorer,
        (_tmap(lambda t: t[:, :0], x),),
        {info.name, type(scorer).__name__},
        _arg_names(scorer, info, 0),
        f"{case} (0 entries in dim 1)",
    )


def check_scorer_temperature(case: ScorerCase) -> None:
    """A scorer with a ``temperature`` rejects ``T <= 0`` and non-finite ``T`` (ValueError)."""
    from ood_core.registry import create_scorer

    info = _scorer_info(case)
    params = inspect.signature(info.load().__init__).parameters
    if "temperature" not in params or case.from_loss is not None:
        raise NotApplicable(f"{case}: no temperature keyword")
    for bad in (0, 0.0, -1.0, float("nan"), float("inf")):
        try:
            create_scorer(case.name, **{**case.kwargs, "temperature": bad})
        except ValueError as exc:
            assert "temperature" in str(exc), f"{case}: the error must name 'temperature': {exc}"
        else:
            raise AssertionError(f"{case}: temperature={bad!r} was accepted")


def check_scorer_state_dict(case: ScorerCase) -> None:
    """All scorer state is persistent: a fresh scorer loading the state dict scores the same."""
    info = _scorer_info(case)
    scorer = _build_scorer(case, seed=0)
    state = scorer.state_dict()
    for name, _ in scorer.named_buffers():
        assert name in state, f"{case}: buffer {name!r} is not persistent"
    other = _build_scorer(case, seed=1)
    other.load_state_dict(state, strict=True)
    x = _scorer_input(info.reads, _spec(case), case)
    _close(other(x), scorer(x), case, "scores after load_state_dict")
    _close(copy.deepcopy(scorer)(x), scorer(x), case, "scores of a deepcopy")


def _exportable(info: Any, case: ScorerCase, check: str) -> None:
    """NotApplicable for a scorer registered ``exportable=False`` (it runs in PyTorch only)."""
    if not info.exportable:
        raise NotApplicable(
            f"{case}: {check} skipped: registered exportable=False (runs the model in PyTorch; "
            "check_scorer_export_refused covers it)"
        )


def check_scorer_compile(case: ScorerCase) -> None:
    """``torch.compile(fullgraph=True)`` captures the scorer and matches eager."""
    import torch._dynamo

    info = _scorer_info(case)
    _exportable(info, case, "check_scorer_compile")
    scorer = _build_scorer(case)
    torch._dynamo.reset()
    compiled = torch.compile(copy.deepcopy(scorer), fullgraph=True, backend=COMPILE_BACKEND)
    x = _scorer_input(info.reads, _spec(case), case)
    _close(compiled(x), scorer(x), case, "compiled scores")


def check_scorer_no_sync(case: ScorerCase) -> None:
    """Scoring (and ``predict``) cause no host-device synchronisation."""
    info = _scorer_info(case)
    for task in _tasks(case, info.tasks):
        scorer = _build_scorer(case)
        x = _scorer_input(info.reads, _spec(case, task=task), case)
        with _HostSyncDetector() as detector:
            scorer(x)
            if hasattr(scorer, "predict"):
                scorer.predict(x)
        detector.assert_none(f"{case} ({task})")


def check_scorer_export(case: ScorerCase) -> None:
    """``torch.export`` with a dynamic batch (traced at 2) matches eager at batch 1, 3 and 9."""
    from torch.export import Dim, export

    info = _scorer_info(case)
    _exportable(info, case, "check_scorer_export")
    for task in _tasks(case, info.tasks):
        scorer = _build_scorer(case)
        x2 = _scorer_input(info.reads, _spec(case, task=task, batch=2), case)
        batch_dim = {0: Dim("batch", min=1, max=1 << 16)}
        dynamic = type(x2)(batch_dim for _ in x2) if isinstance(x2, (tuple, list)) else batch_dim
        try:
            program = export(scorer, (x2,), dynamic_shapes=(dynamic,))
        except Exception as exc:  # noqa: BLE001 - report the exporter's reason
            raise AssertionError(
                f"{case} ({task}): torch.export failed: {type(exc).__name__}: {exc}"
            ) from exc
        module = program.module()
        for batch in (1, 3, 9):
            x = _scorer_input(info.reads, _spec(case, task=task, batch=batch, seed=batch), case)
            _close(module(x), scorer(x), case, f"exported scores at batch {batch} ({task})")
        g = torch.Generator().manual_seed(11)
        perturbed = module(
            _tmap(lambda t, g=g: t * 1.7 + torch.randn(t.shape, generator=g, dtype=t.dtype), x)
        )
        assert not torch.equal(perturbed, module(x)), (
            f"{case}: exported scores do not depend on the input (constant-folded?)"
        )


def check_scorer_export_refused(case: ScorerCase) -> None:
    """The exporter's resolve step passes an exportable scorer; one registered
    ``exportable=False`` must read ``inputs`` and is refused with one line naming exportable
    alternatives."""
    from ood_core.resolve import ResolveError, check_exportable

    info = _scorer_info(case)
    if info.exportable:
        check_exportable(info, None)  # must not raise
        return
    assert info.reads == "inputs", (
        f"{case}: an exportable=False scorer runs the model, so it must read 'inputs', not "
        f"{info.reads!r}"
    )
    try:
        check_exportable(info, ("logits",))
    except ResolveError as exc:
        line = str(exc)
        exportable = [i.name for i in get_registry().items("scorer") if i.exportable]
        assert "\n" not in line and info.name in line and "PyTorch" in line, (
            f"{case}: the refusal must be one line naming the scorer and saying it runs in "
            f"PyTorch: {line}"
        )
        named = [n for n in exportable if n in line]
        assert named or not exportable, f"{case}: the refusal names no exportable alternative"
        return
    raise AssertionError(f"{case}: exportable=False but ood_core.resolve does not refuse it")


def check_scorer_model_kept(case: ScorerCase) -> None:
    """A scorer that runs the model (reads ``inputs``) leaves it as it was: every module's
    train/eval mode, every parameter's ``requires_grad``, no ``.grad`` written, same weights."""
    info = _scorer_info(case)
    scorer = _build_scorer(case)
    model = getattr(scorer, "model", None)
    if info.reads != "inputs":
        return  # it reads model outputs: there is no model to disturb
    assert isinstance(model, nn.Module), f"{case}: reads 'inputs' but holds no .model module"
    saved = (
        [(m, m.training) for m in model.modules()],
        [(p, p.requires_grad) for p in model.parameters()],
    )
    try:
        _check_model_kept(case, info, scorer, model)
    finally:  # the case's model is shared with the other checks: give it back as it came
        for m, mode in saved[0]:
            m.training = mode
        for p, flag in saved[1]:
            p.requires_grad_(flag)


def _check_model_kept(case: ScorerCase, info: Any, scorer: nn.Module, model: nn.Module) -> None:
    model.train()
    children = list(model.children())
    if children:
        children[0].eval()  # a mixed state, so restoring one global flag is not enough
    params = list(model.parameters())
    if params:
        params[0].requires_grad_(False)
    before = [(m.training) for m in model.modules()]
    flags = [p.requires_grad for p in params]
    weights = [p.detach().clone() for p in params]
    x = _scorer_input(info.reads, _spec(case)).requires_grad_(False)
    scorer(x)
    assert [m.training for m in model.modules()] == before, f"{case}: module modes changed"
    assert [p.requires_grad for p in params] == flags, f"{case}: requires_grad changed"
    assert all(p.grad is None for p in params), f"{case}: scoring left .grad on parameters"
    for p, w in zip(params, weights):
        assert torch.equal(p.detach(), w), f"{case}: scoring changed the model's weights"
    assert x.grad is None and not x.requires_grad, f"{case}: scoring changed the input tensor"


SCORER_CHECKS: tuple[Callable[[ScorerCase], None], ...] = (
    check_scorer_registration,
    check_scorer_lazy_import,
    check_scorer_forward,
    check_scorer_dtypes,
    check_scorer_extremes,
    check_scorer_non_finite,
    check_scorer_zero_classes,
    check_scorer_temperature,
    check_scorer_state_dict,
    check_scorer_fit,
    check_scorer_compile,
    check_scorer_no_sync,
    check_scorer_export,
    check_scorer_export_refused,
    check_scorer_model_kept,
)


def checks_for(case: LossCase | ScorerCase) -> tuple[Callable[[Any], None], ...]:
    """The checks that apply to ``case``."""
    return LOSS_CHECKS if isinstance(case, LossCase) else SCORER_CHECKS


def run_check(check: Callable[[Any], None], case: LossCase | ScorerCase) -> None:
    """Run one check on one case, honouring the case's ``skip`` entries."""
    _skip(case, check.__name__)
    check(case)
