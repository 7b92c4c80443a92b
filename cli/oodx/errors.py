"""Errors the oodx command shows to a person (no traceback unless --debug)."""

from __future__ import annotations

import importlib
from types import ModuleType

import click

#: pip command that installs everything ``oodx demo`` needs
DEMO_EXTRA = 'pip install "oodx[demo]"'


class UserError(click.ClickException):
    """A mistake the user can fix: shown as 'Error: <message>' with exit status 1.

    ``hint`` is printed on its own line after the message (for example the pip command that
    installs a missing extra).
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class MissingDependencyError(UserError):
    """An optional package is not installed; the hint names the ``pip install`` that fixes it."""

    def __init__(self, package: str, purpose: str, install: str) -> None:
        self.package = package
        super().__init__(
            f"{purpose} needs the package {package!r}, which is not installed.", install
        )


def require(module: str, *, package: str | None = None, purpose: str, install: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``install``.

    Only a missing ``module`` itself (or its top-level package) counts as missing: an import
    error raised *inside* an installed package is a real fault and propagates.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise
        raise MissingDependencyError(package or top, purpose, install) from exc
