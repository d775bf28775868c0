"""`tribute report`: per-holder HTML / JSON / CSV reports."""

from __future__ import annotations

import sys

import click

from .common import open_workspace, workspace_option


@click.command()
@click.option("--holder", "holders", multiple=True, help="Holder name or id (repeatable).")
@click.option("--all", "all_holders", is_flag=True, help="Every holder, plus an index page.")
@click.option("--period", help="Ledger period to show (e.g. 2026-11); default: all periods.")
@click.option("--format", "formats", default="html,json,csv", show_default=True,
              help="Comma-separated: html, json, csv.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]),
              help="Judge claim deadlines (overdue, at risk) on this date, YYYY-MM-DD (default: today, UTC).")
@workspace_option
def report(holders, all_holders, period, formats, out_dir, as_of, workspace) -> None:
    """Write per-holder reports: where the works were found, how much they mattered, what was done."""
    from ..market.reports import write_reports

    day = as_of.date() if as_of else None
    if bool(holders) == all_holders:
        raise click.UsageError("give --holder NAME (one or more) or --all")
    fmts = [f.strip() for f in formats.split(",") if f.strip()]
    with open_workspace(workspace).connect(read_only=True) as con:
        if all_holders:
            def bar(items):
                with click.progressbar(list(items), label="Rendering reports", file=sys.stderr) as b:
                    yield from b
            written = write_reports(con, out_dir, formats=fmts, period=period, as_of=day, progress=bar)
        else:
            written = write_reports(con, out_dir, holders=list(holders), formats=fmts, period=period, as_of=day)
    for rf in written:
        main = next((p for p in rf.paths if p.suffix == ".html"), rf.paths[0] if rf.paths else None)
        click.echo(f"{rf.holder_id}: {main}")
    if all_holders and "html" in fmts:
        click.echo(f"Index: {click.format_filename(str(__import__('pathlib').Path(out_dir) / 'index.html'))}")
