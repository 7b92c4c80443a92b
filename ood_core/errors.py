"""Exceptions raised by ood_core (importing this module never imports torch)."""

from __future__ import annotations

import difflib


class OODXError(Exception):
    """Base class of oodx's own errors."""


class RegistrationError(OODXError, ValueError):
    """A plugin called ``register(...)`` with missing or invalid metadata."""


class PluginLoadError(OODXError, ImportError):
    """A registered target (``"module:attr"``) could not be imported."""


class UnknownNameError(OODXError, LookupError):
    """No loss/scorer/exporter is registered under the requested name."""

    def __init__(
        self,
        kind: str,
        name: str,
        known: list[str],
        detail: str = "",
        *,
        suggestions: list[str] | None = None,
    ) -> None:
        self.kind, self.name, self.known = kind, name, known
        close = suggestions
        if close is None:
            close = difflib.get_close_matches(str(name).lower(), known, n=3, cutoff=0.5)
        parts = [f"no {kind} named {name!r} is registered."]
        if close:
            parts.append(f"Did you mean {', '.join(repr(c) for c in close)}?")
        plural = "losses" if kind == "loss" else f"{kind}s"
        parts.append(f"Installed {plural}: {', '.join(known) if known else '(none)'}.")
        if detail:
            parts.append(detail)
        else:
            parts.append(
                f"A {kind} from a plugin needs that plugin installed "
                "(pip install ood-plugin-<method>); `oodx plugins` lists what is installed."
            )
        super().__init__(" ".join(parts))

    def __str__(self) -> str:  # LookupError would otherwise quote the message like a key
        return str(self.args[0])


class CheckpointError(OODXError, ValueError):
    """A checkpoint file is missing, truncated, foreign or inconsistent."""
