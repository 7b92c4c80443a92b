"""Base class of losses: the constructor call recorded, forward's roles declared once, a scorer.

A plugin's loss derives from :class:`Loss` and states two facts as class attributes::

    class MyLoss(Loss):
        roles = {"logits": "logits", "target": "target"}   # forward parameter -> role

        def __init__(self, n_classes: int, alpha: float = 1.0) -> None: ...
        def forward(self, logits, target): ...
        def scorer(self): ...                               # the natural scorer, with state

Everything else is derived: :meth:`Loss.get_config` comes from the constructor call (no
attribute guessing), the roles are checked against ``forward``'s signature when the class is
created, and :func:`registration_of` finds the loss's registration by comparing its
``module:qualname`` with registered targets (no plugin is imported). Nothing here runs per
forward call.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import types
from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

#: what a forward parameter may be: a model output, what a loss derives from one, or the target
ROLES = ("logits", "embedding", "distances", "features", "confidence", "target")
#: which model output feeds a role; ``distances`` are ``loss.distance(embedding)``, and the
#: confidence is read from the model's logits output (an extra column or head)
ROLE_OUTPUT = {
    "logits": "logits",
    "embedding": "embedding",
    "distances": "embedding",
    "features": "features",
    "confidence": "logits",
}


class _NotRecordable:
    """Marks a constructor argument :meth:`Loss.get_config` cannot write to JSON."""

    def __init__(self, value: Any) -> None:
        self.type_name = type(value).__name__

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


def _record(value: Any) -> tuple[Any, bool]:
    """``(json_value, from_state)``: JSON values pass, modules/tensors become ``None``."""
    if value is None or isinstance(value, (bool, str)):
        return value, False
    if isinstance(value, Tensor):
        if value.dim() == 0 and not value.requires_grad:
            return value.item(), False
        return None, True
    if isinstance(value, nn.Module):
        return None, True
    if isinstance(value, numbers.Integral):
        return int(value), False
    if isinstance(value, numbers.Real):
        return float(value), False
    if isinstance(value, (tuple, list)):
        items = [_record(v) for v in value]
        if any(s for _, s in items):
            return _NotRecordable(value), False
        return [v for v, _ in items], False
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        items = {k: _record(v) for k, v in value.items()}
        if any(s for _, s in items.values()):
            return _NotRecordable(value), False
        return {k: v for k, (v, _) in items.items()}, False
    return _NotRecordable(value), False


def _wrap_init(init: Any) -> Any:
    """``init`` recording its bound arguments when it is the outermost constructor call."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Loss, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self).__init__ is not __init__:
            return  # a super().__init__(...) call: the subclass's call is the record
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        config: dict[str, Any] = {}
        from_state: list[str] = []
        for name, value in list(bound.arguments.items())[1:]:
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                pairs = list(value.items())
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                pairs = [(f"*{name}", _NotRecordable(value))] if value else []
            else:
                pairs = [(name, value)]
            for key, item in pairs:
                config[key], is_state = _record(item)
                if is_state:
                    from_state.append(key)
        object.__setattr__(self, "_loss_config", config)
        object.__setattr__(self, "_loss_config_from_state", tuple(from_state))

    __init__._loss_records_config = True  # type: ignore[attr-defined]
    return __init__


def _check_roles(cls: type) -> None:
    """Raise ``TypeError`` unless ``cls.roles`` names forward's leading parameters with roles."""
    forward = cls.forward
    if forward is nn.Module.forward:  # abstract intermediate class without a forward
        return
    owner = f"{cls.__module__}.{cls.__qualname__}"
    roles = cls.__dict__.get("roles", getattr(cls, "roles", None))
    if not isinstance(roles, Mapping) or not roles:
        raise TypeError(
            f"{owner}: a Loss must declare the roles of forward's parameters as a class "
            f'attribute, e.g. roles = {{"logits": "logits", "target": "target"}} '
            f"(roles: {', '.join(ROLES)}), got {roles!r}"
        )
    params = list(inspect.signature(forward).parameters.values())[1:]
    names = [p.name for p in params]
    keys = list(roles)
    if names[: len(keys)] != keys:
        raise TypeError(
            f"{owner}: roles must name forward's parameters in order: forward takes {names}, "
            f"roles name {keys}"
        )
    unknown = {k: v for k, v in roles.items() if v not in ROLES}
    if unknown:
        raise TypeError(f"{owner}: unknown role(s) {unknown}; roles are {', '.join(ROLES)}")
    rest = [p.name for p in params[len(keys) :] if p.default is inspect.Parameter.empty]
    bad_kind = [p.name for p in params if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if rest or bad_kind:
        raise TypeError(
            f"{owner}: forward parameter(s) {rest or bad_kind} have no role; parameters after "
            "the roles must have defaults (they are not fed from model outputs), and *args/"
            "**kwargs cannot have roles"
        )


class Loss(nn.Module):
    """A training loss: an ``nn.Module`` whose forward takes model outputs and targets.

    Subclasses declare ``roles`` (forward parameter name -> role, in forward's order; roles
    are :data:`ROLES`; parameters after them must have defaults) and implement ``forward`` and
    :meth:`scorer`. The class is checked when it is created: a wrong ``roles`` is a
    ``TypeError`` naming the class. The outermost constructor call is recorded for
    :meth:`get_config`.
    """

    #: forward parameter name -> role (one of :data:`ROLES`), in forward's order
    roles: ClassVar[Mapping[str, str]] = types.MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_loss_records_config", False):
            cls.__init__ = _wrap_init(init)  # type: ignore[method-assign]
        if "roles" in cls.__dict__:
            cls.roles = types.MappingProxyType(dict(cls.__dict__["roles"]))
        _check_roles(cls)

    @classmethod
    def input_roles(cls) -> tuple[str, ...]:
        """The roles of forward's parameters in order (what the registration's ``inputs`` say)."""
        return tuple(cls.roles.values())

    def get_config(self) -> dict[str, Any]:
        """Constructor keywords of the call that built this loss, defaults applied (JSON values).

        ``type(loss)(**loss.get_config())`` builds a loss of the same shape, and
        ``load_state_dict(loss.state_dict())`` then restores its values. Module and tensor
        arguments are recorded as ``None`` (their values live in the state dict), with the
        keywords of :meth:`config_for_state` merged in so the constructor can build them again;
        other non-JSON arguments (callables, objects) make this raise ``TypeError``.
        """
        owner = type(self).__qualname__
        config = self.__dict__.get("_loss_config")
        if config is None:
            raise TypeError(
                f"{owner}: no constructor call was recorded (the instance was not built through "
                "its constructor), so get_config() cannot rebuild it"
            )
        bad = {k: v for k, v in config.items() if isinstance(v, _NotRecordable)}
        if bad:
            raise TypeError(
                f"{owner}.get_config(): constructor argument(s) "
                f"{', '.join(f'{k}={v!r}' for k, v in bad.items())} cannot be recorded as JSON; "
                "pass numbers, strings, lists, dicts, tensors or modules (tensors and modules are "
                "restored from the state dict)"
            )
        out = dict(config)
        if self.__dict__.get("_loss_config_from_state"):
            out.update(self.config_for_state())
        return out

    def config_for_state(self) -> dict[str, Any]:
        """Keywords that let the constructor rebuild module/tensor arguments recorded as ``None``.

        Override in a loss whose constructor needs sizes to build a default module in place of
        one it was given (VOS: ``num_classes`` for ``weights_energy``); the values come back
        from the state dict. Default: no keywords.
        """
        return {}

    def scorer(self) -> nn.Module:
        """The loss's natural scorer, holding a copy of the state it needs."""
        raise NotImplementedError(
            f"{type(self).__qualname__} does not implement scorer(): a Loss returns its natural "
            "scorer (an ood_core.Scorer with a copy of the state it needs) from scorer()"
        )

    @classmethod
    def registration(cls, registry: Any = None) -> Any:
        """This class's :class:`~ood_core.registry.LossInfo`; ``LookupError`` if unregistered."""
        info = registration_of(cls, registry)
        if info is None:
            raise LookupError(
                f"{cls.__module__}.{cls.__qualname__} is not a registered oodx loss (no "
                "registered target names it or a base class); register it through a plugin"
            )
        return info


def _target_matches(target: str, klass: type) -> bool:
    module, _, attr = target.partition(":")
    if attr != klass.__qualname__:
        return False
    # the target may name the class through a package that re-exports it
    return module == klass.__module__ or klass.__module__.startswith(module + ".")


def registration_of(loss: Any, registry: Any = None, kind: str = "loss") -> Any:
    """The registration of ``loss`` (an instance or class), or ``None``: string comparison only.

    Compares ``"module:qualname"`` of the class, then of each base class (a user's subclass of a
    registered loss saves as that loss), with the registered targets of ``kind`` (``"loss"`` or
    ``"scorer"``); imports no plugin.
    """
    from ood_core.registry import get_registry

    reg = registry if registry is not None else get_registry()
    klass = loss if isinstance(loss, type) else type(loss)
    infos = reg.items(kind)
    for base in klass.__mro__:
        exact = [i for i in infos if i.target == f"{base.__module__}:{base.__qualname__}"]
        found = exact or [i for i in infos if _target_matches(i.target, base)]
        if found:
            return found[0]
    return None


__all__ = ["ROLES", "ROLE_OUTPUT", "Loss", "registration_of"]
