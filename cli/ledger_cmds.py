"""`tribute ledger ...` and `tribute quote`: the compensation ledger (see docs/ledger.md).

Each command parses its options, makes one library call (``tribute.market.ledger.Ledger``) and
renders the result; duckdb / pyarrow are imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

from .common import echo_json, echo_table, json_option, open_workspace, workspace_option

EXAMPLE_POLICY = Path(__file__).resolve().parent / "demo_corpus" / "policy.toml"

policy_option = click.option(
    "--policy", "policy_path", type=click.Path(dir_okay=False),
    help="Pricing policy TOML (default: the policy the ledger used last). See cli/demo_corpus/policy.toml.")
period_option = click.option("--period", help="Period key, e.g. 2026-11 (month) or 2026-Q4 (quarter).")


def _ledger(workspace):
    from ..market.ledger import Ledger

    return Ledger(open_workspace(workspace))


def _policy(led, path):
    from ..market.policy import load_policy

    return load_policy(path) if path else led.last_policy()


def _period(period, policy):
    from ..market.ledger import check_period, now_period

    return check_period(period, policy.period) if period else now_period(policy.period)


def _exposure(ws, path):
    """(table or None, message): an --exposure file, else the workspace's scan evidence."""
    from ..market.ledger_io import read_exposure, workspace_exposure

    if path:
        t = read_exposure(path)
        return t, f"exposure: {t.num_rows} rows from {path}"
    with ws.connect(read_only=True) as con:
        return workspace_exposure(con)


def _money(policy, minor):
    return policy.format(int(minor))


@click.group()
def ledger() -> None:
    """The double-entry compensation ledger: ingest revenue and attribution, allocate royalties
    under a pricing policy, correct by reversal, close periods, verify, report."""


@ledger.command("ingest")
@workspace_option
@policy_option
@click.argument("events", type=click.Path(exists=True))
@json_option
def ingest_cmd(workspace, policy_path, events, as_json):
    """Ingest revenue events (model outputs with revenue, currency, at) idempotently."""
    from ..core.readers import read_records

    led = _ledger(workspace)
    policy = _policy(led, policy_path)
    res = led.ingest_events(read_records(events), policy, source=str(events))
    if as_json:
        return echo_json(res)
    click.echo(f"Ingested {res['added']} new revenue events ({res['unchanged']} already present, "
               f"{res['skipped_no_revenue']} records without revenue skipped)")


@ledger.command("ingest-shares")
@workspace_option
@click.argument("shares", type=click.Path(exists=True), required=False)
@click.option("--run-id", help="Run id for a file without a run_id column (or: only ingest this run).")
@json_option
def ingest_shares_cmd(workspace, shares, run_id, as_json):
    """Copy attribution shares (Parquet/CSV file, or the workspace's attribution_shares table when
    no file is given) into the ledger, idempotently per run."""
    from ..market.ledger import _table_exists, ingest_shares

    ws = open_workspace(workspace)
    with ws.connect() as con:
        if shares:
            from ..market.ledger_io import read_table

            t = read_table(shares, "attribution shares", ("output_id", "work_id", "holder_id", "share"))
        else:
            if not _table_exists(con, "attribution_shares"):
                from ..core.errors import NotFoundError

                raise NotFoundError("the workspace has no attribution_shares table yet; run `tribute attribute` "
                                    "or give a shares file")
            t = con.sql("SELECT * FROM attribution_shares").to_arrow_table()
        res = ingest_shares(con, t, run_id)
    if as_json:
        return echo_json(res)
    click.echo(f"Attribution runs added: {', '.join(res['added']) or 'none'} ({res['rows']} rows); "
               f"unchanged: {', '.join(res['unchanged']) or 'none'}")


@ledger.command("allocate")
@workspace_option
@policy_option
@period_option
@click.option("--run-id", help="Attribution run to split output pools by (default: the latest ingested).")
@click.option("--exposure", "exposure_path", type=click.Path(exists=True, dir_okay=False),
              help="Exposure table (Parquet/CSV: work_id, doc_id, weight, holder_id); default: the workspace's scans.")
@click.option("--dry-run", is_flag=True, help="Show the postings; write nothing.")
@json_option
def allocate_cmd(workspace, policy_path, period, run_id, exposure_path, dry_run, as_json):
    """Allocate a period's unallocated revenue into double-entry postings."""
    led = _ledger(workspace)
    policy = _policy(led, policy_path)
    period = _period(period, policy)
    exposure, msg = _exposure(led.ws, exposure_path)
    res = led.allocate(policy, period, run_id=run_id, exposure=exposure, dry_run=dry_run)
    if as_json:
        return echo_json({**res, "exposure": msg})
    if not res.get("events"):
        return click.echo(f"Period {period}: no unallocated revenue events")
    click.echo(msg)
    click.echo(f"{'DRY RUN: ' if dry_run else ''}Period {period}: {res['events']} events, revenue "
               f"{_money(policy, res['revenue'])} {policy.currency} (attribution run: {res['run_id'] or 'none'}, "
               f"{res['outputs_without_shares']} outputs without shares)")
    for name in ("split", "distribute"):
        click.echo(f"{name}:")
        echo_table([{"account": a, "amount": _money(policy, v)} for a, v in res[name].items()], ["account", "amount"])
    if not dry_run:
        click.echo(f"Posted transactions {', '.join('#' + str(s) for s in res['transactions'])}")


@ledger.command("reverse")
@workspace_option
@click.argument("seq", type=int)
@period_option
@click.option("--memo", default="", help="Why (default: 'reversal of transaction N').")
@policy_option
def reverse_cmd(workspace, seq, period, memo, policy_path):
    """Reverse a transaction (both halves of an allocation) with opposite entries."""
    led = _ledger(workspace)
    period = _period(period, _policy(led, policy_path))
    done = led.reverse(seq, period, memo)
    click.echo(f"Reversed by {', '.join('#' + str(s) for s in done)} in period {period}")


@ledger.command("adjust")
@workspace_option
@policy_option
@click.option("--from", "from_account", required=True, help="Account the money leaves (e.g. unattributed).")
@click.option("--to", "to_account", required=True, help="Account it goes to (e.g. holder:northwind-press).")
@click.option("--amount", required=True, help="Decimal amount in major units, e.g. 12.50.")
@click.option("--memo", required=True, help="Why the adjustment is made.")
@click.option("--ref", help="Idempotency reference (the same ref is never booked twice).")
@period_option
def adjust_cmd(workspace, policy_path, from_account, to_account, amount, memo, ref, period):
    """Book an adjustment between two accounts (the only way to change balances by hand)."""
    led = _ledger(workspace)
    policy = _policy(led, policy_path)
    seq = led.adjust(from_account, to_account, amount, _period(period, policy), memo, policy, ref)
    click.echo(f"Adjustment #{seq}: {amount} {policy.currency} {from_account} -> {to_account}")


@ledger.group("dispute")
def dispute() -> None:
    """Move contested royalties into escrow and back."""


@dispute.command("open")
@workspace_option
@policy_option
@click.option("--holder", required=True, help="Holder name or id.")
@click.option("--amount", required=True, help="Contested amount in major units.")
@click.option("--reason", required=True, help="What is contested.")
@period_option
def dispute_open_cmd(workspace, policy_path, holder, amount, reason, period):
    """Open a dispute: the amount moves from the holder's account into escrow."""
    led = _ledger(workspace)
    policy = _policy(led, policy_path)
    res = led.dispute_open(holder, amount, reason, _period(period, policy), policy)
    click.echo(f"Dispute {res['dispute_id']} opened: {_money(policy, res['amount'])} {policy.currency} "
               f"of {res['holder_id']} held in escrow (#{res['transaction']})")


@dispute.command("resolve")
@workspace_option
@policy_option
@click.argument("dispute_id")
@click.option("--to", "to", default="holder", show_default=True,
              help="'holder' (back to the holder) or an account (unattributed, platform, holder:<id>).")
@period_option
def dispute_resolve_cmd(workspace, policy_path, dispute_id, to, period):
    """Resolve a dispute: escrow goes back to the holder or to another account."""
    led = _ledger(workspace)
    policy = _policy(led, policy_path)
    res = led.dispute_resolve(dispute_id, to, _period(period, policy))
    click.echo(f"Dispute {dispute_id} resolved: {_money(policy, res['amount'])} to {res['to']} (#{res['transaction']})")


@dispute.command("list")
@workspace_option
@json_option
def dispute_list_cmd(workspace, as_json):
    """List disputes and their state."""
    rows = _ledger(workspace).disputes()
    if as_json:
        return echo_json(rows)
    echo_table(rows, ["dispute_id", "holder_id", "currency", "amount", "reason", "open_seq", "resolve_seq", "outcome"])


@ledger.command("close-period")
@workspace_option
@policy_option
@period_option
@json_option
def close_period_cmd(workspace, policy_path, period, as_json):
    """Pay out balances at or above the minimum, freeze the period, export it with a manifest."""
    led = _ledger(workspace)
    policy = _policy(led, policy_path)
    if not period:
        raise click.UsageError("--period is required for close-period")
    res = led.close_period(_period(period, policy), policy)
    if as_json:
        return echo_json(res)
    if res.get("repaired_export"):
        return click.echo(f"Period {period} was closed; re-exported it: {res['manifest']}")
    click.echo(f"Closed {period}: paid {len(res['paid'])} holders "
               f"{_money(policy, sum(res['paid'].values()))} {policy.currency}; "
               f"{len(res['carried_forward'])} below the minimum carried forward")
    click.echo(f"Manifest: {res['manifest']}")


@ledger.command("verify")
@workspace_option
@click.option("--no-recompute", is_flag=True, help="Skip recomputing allocations from their inputs.")
@json_option
def verify_cmd(workspace, no_recompute, as_json):
    """Check balances, the hash chain against the files outside the database, and recompute
    every allocation; exits 1 when anything fails."""
    from ..core.errors import IntegrityError

    res = _ledger(workspace).verify(recompute=not no_recompute)
    if as_json:
        echo_json(res)
    else:
        for c in res["checks"]:
            click.echo(f"{'ok  ' if c['ok'] else 'FAIL'}  {c['check']:<10} {c['detail']}")
    if not res["ok"]:
        bad = [c["check"] for c in res["checks"] if not c["ok"]]
        raise IntegrityError(f"ledger verify failed: {', '.join(bad)}; see the details above")


@ledger.command("balance")
@workspace_option
@policy_option
@click.option("--account", help="One account, or a prefix ending in * (e.g. 'holder:*').")
@period_option
@json_option
def balance_cmd(workspace, policy_path, account, period, as_json):
    """Balances per account (up to and including --period)."""
    led = _ledger(workspace)
    rows = led.balances(account, period)
    if as_json:
        return echo_json(rows)
    from ..core.errors import ConfigError

    try:
        policy = _policy(led, policy_path)
    except ConfigError:
        if policy_path:
            raise
        policy = None  # no policy stored yet: show minor units
    if policy is not None:
        for r in rows:
            r["balance"] = _money(policy, r["balance"])
    echo_table(rows, ["account", "currency", "balance", "postings"])


@ledger.command("statement")
@workspace_option
@policy_option
@click.option("--holder", required=True, help="Holder name or id.")
@click.option("--period", required=True, help="Period key, e.g. 2026-11.")
@json_option
def statement_cmd(workspace, policy_path, holder, period, as_json):
    """A holder's statement: balances, transactions and the trace works -> outputs -> scores -> amounts."""
    from ..market.ledger_io import render_statement

    led = _ledger(workspace)
    policy = _policy(led, policy_path)
    st = led.statement(holder, period, policy)
    if as_json:
        return echo_json(st)
    click.echo(render_statement(st), nl=False)


@ledger.command("export")
@workspace_option
@policy_option
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "beancount"]), required=True,
              help="Output format.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="File to write.")
@period_option
def export_cmd(workspace, policy_path, fmt, out, period):
    """Export the journal (one row per posting, or a Beancount file)."""
    led = _ledger(workspace)
    res = led.export(fmt, out, _policy(led, policy_path), period)
    click.echo(f"Wrote {res['transactions']} transactions ({res['postings']} postings) to {res['path']}")


@ledger.command("sql")
@workspace_option
@click.argument("query")
@json_option
def sql_cmd(workspace, query, as_json):
    """Run a read-only SQL query on the workspace (no file or network access)."""
    cols, rows = _ledger(workspace).sql(query)
    data = [dict(zip(cols, r)) for r in rows]
    if as_json:
        return echo_json(data)
    echo_table(data, cols)


@click.command()
@workspace_option
@policy_option
@click.option("--works", help="Comma-separated work ids.")
@click.option("--holder", help="All works of this holder.")
@click.option("--exposure", "exposure_path", type=click.Path(exists=True, dir_okay=False),
              help="Exposure table (default: the workspace's scans).")
@json_option
def quote(workspace, policy_path, works, holder, exposure_path, as_json):
    """Compare the cost of unlearning works with the projected compensation for them."""
    from ..market.ledger_quote import quote as make_quote, render_quote

    led = _ledger(workspace)
    policy = _policy(led, policy_path)
    exposure, _ = _exposure(led.ws, exposure_path)
    ids = [w.strip() for w in works.split(",") if w.strip()] if works else None
    with led.ws.connect(read_only=True) as con:
        q = make_quote(con, policy, works=ids, holder=holder, exposure=exposure)
    if as_json:
        return echo_json(q)
    click.echo(render_quote(q), nl=False)


def demo_step(ws, echo: Callable[[str], None] = print) -> dict:
    """The demo's ledger stage: book ``<ws>/data/outputs.jsonl`` under cli/demo_corpus/policy.toml,
    close each period, verify, and print the statement of the holder paid the most."""
    from ..core.errors import InputError
    from ..core.readers import read_records
    from ..market.ledger import Ledger
    from ..market.ledger_io import render_statement
    from ..market.policy import load_policy

    outputs = ws.path / "data" / "outputs.jsonl"
    if not outputs.exists():
        raise InputError(f"{outputs}: no model outputs with revenue; run the earlier demo stages first")
    policy = load_policy(EXAMPLE_POLICY)
    led = Ledger(ws)
    ing = led.ingest_events(read_records(outputs), policy, source=str(outputs))
    exposure, msg = _exposure(ws, None)
    with ws.connect(read_only=True) as con:
        periods = [r[0] for r in con.execute(
            "SELECT DISTINCT period FROM ledger_events e WHERE NOT EXISTS (SELECT 1 FROM ledger_batch_events b "
            "WHERE b.event_key = e.event_key) ORDER BY 1").fetchall()]
    echo(f"[ledger] Policy {policy.name!r} ({EXAMPLE_POLICY.name}): {ing['added']} revenue events booked; {msg}")
    revenue = 0
    paid = 0
    for p in periods:
        res = led.allocate(policy, p, exposure=exposure)
        revenue += res.get("revenue", 0)
        closed = led.close_period(p, policy)
        paid += sum(closed["paid"].values())
        echo(f"[ledger] {p}: allocated {_money(policy, res.get('revenue', 0))} {policy.currency} "
             f"(attribution run: {res.get('run_id') or 'none'}); closed, paid {len(closed['paid'])} holders, "
             f"{len(closed['carried_forward'])} carried forward")
    ver = led.verify()
    echo(f"[ledger] verify: {'ok' if ver['ok'] else 'FAILED'} "
         f"({', '.join(c['check'] for c in ver['checks'] if c['ok'])})")
    top = None
    with ws.connect(read_only=True) as con:
        row = con.execute(
            "SELECT substr(account, 8), sum(amount) FROM ledger_postings WHERE account LIKE 'holder:%' AND amount > 0 "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1").fetchall()
        top = row[0][0] if row else None
    if top and periods:
        st = led.statement(top, periods[-1], policy)
        for line in render_statement(st).splitlines():
            echo(("    " + line).rstrip())
    return {"events": ing["added"], "periods": periods, "revenue": revenue, "paid": paid, "verified": ver["ok"],
            "statement_holder": top}
