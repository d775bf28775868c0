"""`tribute init`: create or upgrade a workspace."""

from __future__ import annotations

import click

from .common import open_workspace, workspace_option


@click.command()
@workspace_option
def init(workspace: str | None) -> None:
    """Create a workspace (a folder with tribute.duckdb), or upgrade an existing one's schema."""
    ws = open_workspace(workspace)
    existed = ws.exists()
    applied = ws.init()
    if not existed:
        click.echo(f"Created workspace {ws.path} (schema version {applied[-1].version if applied else 0}).")
    elif applied:
        click.echo(f"Upgraded workspace {ws.path} to schema version {applied[-1].version}.")
    else:
        click.echo(f"Workspace {ws.path} is up to date.")
