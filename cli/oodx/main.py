"""The ``oodx`` command: a lazy click group.

Subcommands live in their own modules and are imported only when invoked (``COMMANDS`` maps a
name to ``"module:attribute"`` and the one-line help shown by ``oodx --help``), so ``oodx --help``
and the listing commands never import torch.

User mistakes (unknown names, missing files, missing optional packages, bad checkpoints, bad
data) are shown as one ``Error:`` message with a hint and exit status 1; usage mistakes (unknown
option, missing argument, an argument naming no existing file) exit with 2 (click's rule);
``--debug`` (or ``OODX_DEBUG=1``) shows the Python traceback instead. A closed stdout (``oodx
score ... | head``) ends the command quietly with status 141, as SIGPIPE does for Unix tools.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from oodx import __version__
from oodx.errors import UserError

#: name -> (``"module:attribute"`` of the click command, one-line help for ``oodx --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "plugins": ("oodx.commands.listing:plugins", "List installed plugins and their status."),
    "losses": ("oodx.commands.listing:losses", "List the losses installed plugins provide."),
    "scorers": ("oodx.commands.listing:scorers", "List the scorers installed plugins provide."),
    "demo": ("oodx.commands.demo:demo", "Train, export and evaluate on real data, end to end."),
    "export": ("oodx.commands.export:export", "Export a checkpoint and its scorer to ONNX."),
    "score": ("oodx.commands.export:score", "Run an exported ONNX model over data."),
    "inspect": ("oodx.commands.export:inspect", "Show what an exported model or checkpoint holds."),
    "eval": ("oodx.commands.evaluate:evaluate", "OOD metrics and plots of an ONNX model."),
    "new-plugin": ("oodx.commands.new_plugin:new_plugin", "Scaffold a third-party plugin."),
}

#: exception types (by module and name, so that nothing heavy is imported to catch them) that
#: are a user's mistake: shown without traceback
_USER_ERRORS = {  # plugins' and exporters' errors subclass OODXError
    ("ood_core.errors", "OODXError"),
    ("ood_runtime.errors", "OODRuntimeError"),
}

_TRAIN = ("ood-core and ood-exporter-onnx", 'pip install "oodx[train]"')
#: command -> (import names it needs, the distributions in words, the pip command providing them).
#: ``oodx`` itself depends on click and ood-runtime only: a serving install has no torch.
NEEDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    **{
        name: (("ood_core",), "ood-core", _TRAIN[1])
        for name in ("plugins", "losses", "scorers", "new-plugin")
    },
    "export": (("ood_core", "ood_exporter_onnx"), *_TRAIN),
    "demo": (
        ("ood_core", "ood_exporter_onnx"),
        "ood-core, ood-exporter-onnx and the demo data packages",
        'pip install "oodx[demo]"',
    ),
    **{
        name: (("ood_runtime",), "ood-runtime", 'pip install "ood-runtime[cpu]"')
        for name in ("score", "eval", "inspect")
    },
}


def missing_packages(cmd_name: str) -> str | None:
    """The one-line error for a command whose packages are not installed, or None."""
    import importlib.util

    modules, what, install = NEEDS.get(cmd_name, ((), "", ""))
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"`oodx {cmd_name}` needs {what}, and {', '.join(missing)} is not installed here "
        f"(oodx alone is the torch-free serving install); install with: {install}"
    )


#: exit status after the reader of stdout went away, as for a process killed by SIGPIPE
EXIT_BROKEN_PIPE = 128 + 13


def _silence_stdout() -> int:
    """Point stdout's file descriptor at /dev/null (so the flush at exit cannot fail and print
    "Exception ignored") and return :data:`EXIT_BROKEN_PIPE`."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (tests capture stdout)
        return EXIT_BROKEN_PIPE
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def _debug_requested(args: Sequence[str]) -> bool:
    return "--debug" in args or os.environ.get("OODX_DEBUG", "") not in ("", "0")


def _is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno is not None:  # missing file, name too long, ...
        return True
    for cls in type(exc).__mro__:
        if (cls.__module__, cls.__name__) in _USER_ERRORS:
            return True
    return False


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        missing = missing_packages(cmd_name)  # also for a command imported before (in-process)
        if missing:
            raise UserError(missing)
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        if cmd_name not in self.lazy:
            return None
        target, _ = self.lazy[cmd_name]
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise UserError(
                f"the command {cmd_name!r} is not available in this installation "
                f"(module {module_name} is missing).",
                "reinstall the CLI: pip install -U oodx",
            ) from exc
        command = getattr(module, attr)
        self.commands[cmd_name] = command
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=2)
            hint = f"did you mean {' or '.join(close)}?" if close else "see 'oodx --help'"
            raise click.UsageError(f"no such command {name!r}; {hint}", ctx)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands from the stored one-line help (importing none of them)."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy:
                rows.append((name, self.lazy[name][1]))
            else:
                cmd = self.commands[name]
                rows.append((name, cmd.get_short_help_str(limit=formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except BrokenPipeError:  # the reader went away (`oodx score ... | head`): not an error
            raise click.exceptions.Exit(_silence_stdout()) from None
        except Exception as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            if _is_user_error(exc):
                raise UserError(str(exc) or type(exc).__name__) from exc
            raise UserError(
                f"unexpected {type(exc).__name__}: {exc}",
                "this looks like a bug in oodx or a plugin; run the same command with --debug "
                "for the traceback and report it",
            ) from exc


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "-V", "--version", prog_name="oodx")
@click.option(
    "--debug",
    is_flag=True,
    envvar="OODX_DEBUG",
    help="Show Python tracebacks instead of short error messages.",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """oodx: out-of-distribution detection with PyTorch, as plugins.

    \b
    Get started:
      oodx demo                      train, export and evaluate on MNIST vs textures/photos
      oodx losses                    what you can train with
      oodx eval model.onnx --id id.npy --ood ood/
      oodx new-plugin my-method      write your own method

    Every command has --help with an example.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``oodx``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cli.main(args=args, prog_name="oodx", obj={"debug": _debug_requested(args)})
    except SystemExit as exc:
        code = exc.code
    else:  # pragma: no cover - click's standalone mode always exits
        code = 0
    try:  # output still buffered is written now, while a closed pipe can be handled quietly
        sys.stdout.flush()
    except BrokenPipeError:
        code = _silence_stdout()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
