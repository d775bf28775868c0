"""The ``tribute`` command group.

Subcommands are loaded lazily from the table below, so ``tribute --help`` imports no torch,
faiss or duckdb. Library errors (:class:`~tribute.core.errors.TributeError`) become one-line
messages with exit code 1 here, in one place; click's usage errors exit 2.
"""

from __future__ import annotations

import importlib

import click

from .. import __version__
from ..core.errors import TributeError

# name -> "module:attribute"; each module imports its heavy dependencies inside functions.
COMMANDS: dict[str, str] = {
    "init": "tribute.cli.workspace_cmds:init",
    "works": "tribute.cli.catalog_cmds:works",
    "holders": "tribute.cli.catalog_cmds:holders",
    "demo": "tribute.cli.demo:demo",
    "index": "tribute.cli.index_cmds:index",
    "scan": "tribute.cli.index_cmds:scan",
    "attribute": "tribute.cli.attribute_cmds:attribute",
    "ledger": "tribute.cli.ledger_cmds:ledger",
    "quote": "tribute.cli.ledger_cmds:quote",
    "report": "tribute.cli.report_cmds:report",
    "unlearn": "tribute.cli.unlearn_cmds:unlearn",
    "claims": "tribute.cli.claims_cmds:claims",
    "guard": "tribute.cli.claims_cmds:guard",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use and whose library errors exit 1."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TributeError as e:
            raise click.ClickException(str(e).replace("\n", " ")) from e


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tribute")
def cli() -> None:
    """tribute: measure how much copyrighted works shaped a model's outputs, then unlearn them
    or pay for them.

    Every command works on a workspace folder (--workspace, else $TRIBUTE_HOME, else
    ./tribute-workspace). Start with `tribute init`, or `tribute demo` for the whole story.
    """


def main() -> None:  # pragma: no cover - console entry point alternative
    cli()
