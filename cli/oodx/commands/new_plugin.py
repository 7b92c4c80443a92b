"""``oodx new-plugin``: scaffold a third-party plugin distribution."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write it [default: ./ood-plugin-NAME].",
)
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
def new_plugin(name: str, directory: Path | None, force: bool) -> None:
    """Scaffold a plugin distribution for a new OOD method called NAME.

    Writes pyproject.toml (with the 'oodx' entry point), a light plugin module declaring
    OODX_PLUGIN_API and registering the loss and scorer, a loss and a scorer skeleton whose
    maths is left to fill in (marked FILL IN: until then they raise NotImplementedError),
    tests wired to the oodx conformance kit and a training smoke test, and a README.
    Warns (and still writes) when NAME clashes with an installed distribution, plugin, loss or
    scorer.

    \b
    Examples:
      oodx new-plugin my-method
      oodx new-plugin my-method --dir plugins/my-method
    Then:
      cd ood-plugin-my-method && pip install -e ".[test]" && pytest
    """
    from oodx.scaffold import PluginNames, installed_clashes, scaffold

    names = PluginNames.from_name(name)
    for clash in installed_clashes(names):
        click.echo(
            f"Warning: {names.name!r} is taken by the installed {clash}. Installed beside it, "
            "the new plugin would make the shared names unusable until one is disabled (or "
            "replace it); pick another name unless that is the plan. Writing the scaffold anyway.",
            err=True,
        )
    target, written = scaffold(name, directory, force=force)
    click.echo(f"Created {names.dist} (loss and scorer {names.name!r}) in {target}:")
    for path in written:
        click.echo(f"  {path.relative_to(target)}")
    fill = sorted(
        str(p.relative_to(target)) for p in written if "FILL IN" in p.read_text(encoding="utf-8")
    )
    click.echo(
        f"\nNext:\n"
        f"  1. fill in the places marked FILL IN ({', '.join(fill)})\n"
        f'  2. cd {target} && pip install -e ".[test]"\n'
        f"  3. pytest                      # the oodx conformance kit\n"
        f"  4. oodx losses; oodx plugins check; oodx demo --loss {names.name}"
    )
