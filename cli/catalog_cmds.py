"""`tribute works ...` and `tribute holders ...`: the catalog of rights holders and works."""

from __future__ import annotations

import click

from .common import echo_json, echo_table, json_option, open_workspace, workspace_option


def _report(result, as_json: bool) -> None:
    if as_json:
        echo_json(result.as_dict())
        return
    click.echo(
        f"{len(result.added)} added, {len(result.replaced)} replaced, "
        f"{len(result.unchanged)} unchanged; {len(result.holders_added)} new holders."
    )


@click.group()
def works() -> None:
    """Register, list, show and remove works."""


@works.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--holder", required=True, help="Name of the rights holder.")
@click.option("--title", help="Title (one file only; default: the file name).")
@click.option("--id", "work_id", help="Work id (one file only; default: the file name without suffix).")
@click.option("--licence", "--license", "licence", help="Licence or terms, free text (e.g. CC-BY-4.0).")
@click.option("--opt-out/--no-opt-out", default=False, help="The holder opted out of text and data mining.")
@click.option("--replace", is_flag=True, help="Overwrite works whose id exists with other content.")
@workspace_option
@json_option
def works_add(files, holder, title, work_id, licence, opt_out, replace, workspace, as_json) -> None:
    """Register text FILES as works of one holder (each file's stem is its id)."""
    from ..core.errors import InputError
    from ..core.readers import Record, read_records
    from ..market.catalog import import_works, works_from_records

    if len(files) > 1 and (title or work_id):
        raise click.UsageError("--title and --id apply to one file; omit them to use the file names")
    records = []
    for f in files:
        for rec in read_records(f, fmt="txt"):
            records.append(Record(work_id or rec.id, rec.text, {}, rec.where) if work_id else rec)
    if not records:
        raise InputError("no files given; name at least one text file")
    items = works_from_records(records, holder=holder, title=title, licence=licence, opt_out=opt_out)
    with open_workspace(workspace).connect() as con:
        _report(import_works(con, items, replace=replace), as_json)


@works.command("import")
@click.argument("path", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet", "txtdir"]),
              help="Input format (default: from the file suffix; a folder is read as .txt files).")
@click.option("--holder", help="Holder for every work (required for a folder of .txt files).")
@click.option("--replace", is_flag=True, help="Overwrite works whose id exists with other content.")
@workspace_option
@json_option
def works_import(path, fmt, holder, replace, workspace, as_json) -> None:
    """Import works from PATH: JSONL / CSV / Parquet with id, text, holder, title (optional
    licence, opt_out), or a folder of .txt files. All or nothing; re-importing is idempotent."""
    from ..core.readers import read_records
    from ..market.catalog import import_works, works_from_records

    items = works_from_records(read_records(path, fmt=fmt), holder=holder)
    with open_workspace(workspace).connect() as con:
        _report(import_works(con, items, replace=replace), as_json)


@works.command("list")
@click.option("--holder", help="Only this holder's works (name or id).")
@click.option("--all", "include_all", is_flag=True, help="Include tombstoned works.")
@workspace_option
@json_option
def works_list(holder, include_all, workspace, as_json) -> None:
    """List registered works."""
    from ..market.catalog import as_json_ready, list_works

    with open_workspace(workspace).connect(read_only=True) as con:
        rows = list_works(con, holder=holder, include_tombstoned=include_all)
    if as_json:
        echo_json([as_json_ready(r) for r in rows])
    else:
        echo_table(rows, ["work_id", "holder", "title", "n_words", "licence", "opt_out", "status"],
                   empty="No works registered; add some with `tribute works import FILE`.")


@works.command("show")
@click.argument("work_id")
@click.option("--text", "with_text", is_flag=True, help="Print the work's full text too.")
@workspace_option
@json_option
def works_show(work_id, with_text, workspace, as_json) -> None:
    """Show one work's record."""
    from ..market.catalog import as_json_ready, get_work

    with open_workspace(workspace).connect(read_only=True) as con:
        row = get_work(con, work_id, with_text=with_text)
    if as_json:
        echo_json(as_json_ready(row))
        return
    text = row.pop("text", None)
    width = max(len(k) for k in row)
    for k, v in row.items():
        click.echo(f"{k.ljust(width)}  {'-' if v is None else v}")
    if text is not None:
        click.echo("")
        click.echo(text)


@works.command("remove")
@click.argument("work_id")
@click.option("--reason", help="Why (kept in the catalog's audit trail).")
@workspace_option
def works_remove(work_id, reason, workspace) -> None:
    """Remove a work. One with evidence or money attached is tombstoned (kept, hidden), never deleted."""
    from ..market.catalog import remove_work

    with open_workspace(workspace).connect() as con:
        outcome = remove_work(con, work_id, reason=reason)
    click.echo(f"Work {work_id!r} {outcome}.")


@click.group()
def holders() -> None:
    """List rights holders."""


@holders.command("list")
@workspace_option
@json_option
def holders_list(workspace, as_json) -> None:
    """List rights holders with their numbers of works."""
    from ..market.catalog import list_holders

    with open_workspace(workspace).connect(read_only=True) as con:
        rows = list_holders(con)
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["holder_id", "name", "works", "tombstoned", "words"], empty="No holders yet.")
