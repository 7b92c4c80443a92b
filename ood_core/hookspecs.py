"""The oodx hook specifications and the markers plugins decorate their hooks with.

Hooks use the *register callback* form: the core passes a ``register`` function and the plugin
calls it once per thing it provides. ``register`` takes keywords only; the fields each kind
accepts are the fields of :class:`ood_core.registry.LossInfo`, :class:`ScorerInfo` and
:class:`ExporterInfo` (``name`` and ``target`` are always required). Importing this module
must stay cheap: it is what a plugin's entry-point module imports.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

PROJECT_NAME = "oodx"
ENTRY_POINT_GROUP = "oodx"

#: Major version of the plugin API. A plugin declares the version it targets with a
#: module-level ``OODX_PLUGIN_API = 1`` in its entry-point module.
PLUGIN_API_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The callback a hook receives: ``register(name=..., target="pkg.module:Attr", **meta)``."""

    def __call__(self, **fields: Any) -> None: ...


@hookspec
def oodx_register_losses(register: Register) -> None:
    """Register training losses.

    Call ``register(name, target, summary, paper, tasks, uses_ood, scorer, inputs, aliases=())``
    once per loss. ``target`` is a lazy ``"module:Class"`` reference to a ``torch.nn.Module``
    subclass; it is imported only when the loss is created.
    """


@hookspec
def oodx_register_scorers(register: Register) -> None:
    """Register outlier scorers.

    Call ``register(name, target, summary, reads, needs_fit, tasks, aliases=(), paper="",
    needs_loss_state=False, exportable=True)`` once per scorer. ``target`` is a lazy
    ``"module:Class"`` reference to a ``torch.nn.Module`` mapping one model output to outlier
    scores (higher = more OOD).
    """


@hookspec
def oodx_register_exporters(register: Register) -> None:
    """Register exporters that turn (model, scorer) into a deployable artefact.

    Call ``register(name, target, summary, suffix, aliases=())`` once per exporter. ``target`` is
    a lazy ``"module:callable"`` reference to the export function; ``oodx export --format NAME``
    reaches it through :func:`ood_core.get_exporter` and calls it as::

        target(checkpoint, path, *, scorer, options) -> report

    ``checkpoint`` is the loaded :class:`ood_core.checkpoint.Checkpoint`; ``path`` the file to
    write (``pathlib.Path``; write atomically, nothing on failure); ``scorer`` the
    :class:`ood_core.resolve.Resolved` pick (``.scorer`` module, ``.name``, ``.source``,
    ``.reads``), or ``None`` to let the exporter take the natural scorer; ``options`` a dict of
    the options the user gave, each one named in ``target.options`` (a tuple of str the exporter
    declares; others are refused before the call). ``str(report)`` is printed. See
    docs/plugins.md.
    """


#: Hook names a plugin may implement, in the order the core calls them.
HOOK_NAMES: tuple[str, ...] = (
    "oodx_register_losses",
    "oodx_register_scorers",
    "oodx_register_exporters",
)
