"""Small helpers shared by the commands: the --workspace option, JSON and table output."""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import click

workspace_option = click.option(
    "--workspace", "-w",
    type=click.Path(file_okay=False, dir_okay=True),
    envvar="TRIBUTE_HOME",
    show_envvar=True,
    help="Workspace folder (default: ./tribute-workspace).",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def open_workspace(path: str | None):
    """The :class:`~tribute.market.workspace.Workspace` for a --workspace value."""
    from ..market.workspace import Workspace

    return Workspace.resolve(path)


def _default(o: Any) -> Any:
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=_default, ensure_ascii=False))


def echo_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], empty: str = "(none)") -> None:
    """Print ``rows`` as an aligned plain-text table with the given ``columns``."""
    rows = list(rows)
    if not rows:
        click.echo(empty)
        return
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."


def engine_options(f):
    """--engine, --workers, --ray-address and --shard for commands that run sharded stages."""
    opts = [
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Run shards in a local process pool or on Ray (tribute[ray])."),
        click.option("--workers", type=click.IntRange(1), default=None,
                     help="Parallel workers (default: 1 for local, the cluster's CPUs for ray)."),
        click.option("--ray-address", default=None, help="Join an existing Ray cluster (e.g. auto, HOST:6379)."),
        click.option("--shard", "shard", default=None, metavar="I/N",
                     help="Run only slice I of N of the shard plan, without an engine (Slurm arrays)."),
    ]

    for opt in reversed(opts):
        f = opt(f)
    return f
