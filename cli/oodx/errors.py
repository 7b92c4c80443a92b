"""Errors the oodx command shows to a person (no traceback unless --debug)."""

from __future__ import annotations

import click


class UserError(click.ClickException):
    """A mistake the user can fix: shown as 'Error: <message>' with exit status 2... or 1.

    ``hint`` is printed on its own line after the message (for example the pip command that
    installs a missing extra).
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")
