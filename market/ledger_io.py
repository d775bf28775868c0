"""Ledger inputs and outputs: revenue events, exposure files, period exports, statements, exports.

Revenue events are read with :func:`tribute.core.readers.read_records` (JSONL, CSV, Parquet);
each record is a model output (``id``, ``text``) with these fields:

``revenue``   required to be booked: a decimal **string** in major units (``"12.34"``), or a JSON
              **integer** in minor units (``1234``). Floats are refused. Records without revenue
              are skipped (counted).
``currency``  optional, defaults to the policy's currency.
``at``        required: ISO-8601 time (``2026-11-03T10:00:00Z``; a time without offset or a bare
              date is read as UTC). It decides the period.
``event_id``  optional idempotency key (also accepted: ``idempotency_key``); default: the record id.
``output_id`` optional; default: the record id (set it when one output has several events).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from datetime import datetime, timezone, timedelta
from pathlib import Path
from typing import Any, Iterable

from ..core.errors import ConfigError, InputError, NotFoundError
from ..core.hashing import file_sha256
from ..core.manifest import atomic_write_text
from .policy import PricingPolicy, decimal_to_minor, format_minor

EXPORT_FORMATS = ("parquet", "csv", "beancount")


def parse_time(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value.strip():
        s = value.strip()
        if s.endswith("Z") or s.endswith("z"):
            s = s[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(s)
        except ValueError as e:
            raise InputError(f"{where}: 'at' = {value!r} is not an ISO-8601 time; write it like 2026-11-03T10:00:00Z") from e
    else:
        raise InputError(f"{where}: missing 'at'; every revenue event needs an ISO-8601 time")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def revenue_minor(value: Any, minor_units: int, where: str) -> int:
    if isinstance(value, bool) or isinstance(value, float):
        raise InputError(f"{where}: revenue {value!r} is a float; write a decimal string like \"12.34\" "
                         "or an integer number of minor units")
    if isinstance(value, int):
        minor = value
    elif isinstance(value, str):
        try:
            minor = decimal_to_minor(value, minor_units, "revenue")
        except ConfigError as e:
            raise InputError(f"{where}: {e}") from e
    else:
        raise InputError(f"{where}: revenue must be a decimal string or an integer, got {type(value).__name__}")
    if minor < 0:
        raise InputError(f"{where}: negative revenue {value!r}; book refunds as adjustments")
    return minor


def events_table(records: Iterable, policy: PricingPolicy):
    """Validated revenue events as a pyarrow table (sorted by key) and the count skipped."""
    import pyarrow as pa

    from .ledger import period_of

    rows: dict[str, tuple] = {}
    where_of: dict[str, str] = {}
    skipped = 0
    for rec in records:
        f = rec.fields
        rev = f.get("revenue")
        if rev is None or rev == "":
            skipped += 1
            continue
        where = rec.where or rec.id
        amount = revenue_minor(rev, policy.minor_units, where)
        currency = f.get("currency") or policy.currency
        if not isinstance(currency, str):
            raise InputError(f"{where}: currency must be a code like \"EUR\"")
        if currency != policy.currency:
            raise InputError(f"{where}: currency {currency!r} but the policy books {policy.currency}; "
                             "ingest it with a policy in that currency (one currency per ledger policy)")
        at = parse_time(f.get("at"), where)
        key = f.get("event_id") or f.get("idempotency_key") or rec.id
        out = f.get("output_id") or rec.id
        key, out = str(key), str(out)
        if key in rows:
            raise InputError(f"{where}: duplicate event key {key!r} (first at {where_of[key]}); keys must be unique")
        payload = "\x1f".join([out, currency, str(amount), at.isoformat()])
        rows[key] = (out, currency, amount, at, period_of(at, policy.period),
                     "sha256:" + hashlib.sha256(payload.encode("utf-8")).hexdigest())
        where_of[key] = where
    keys = sorted(rows)
    cols = list(zip(*(rows[k] for k in keys))) if keys else [[]] * 6
    table = pa.table({
        "event_key": pa.array(keys, pa.string()),
        "output_id": pa.array(cols[0], pa.string()),
        "currency": pa.array(cols[1], pa.string()),
        "amount": pa.array(cols[2], pa.int64()),
        "occurred_at": pa.array(cols[3], pa.timestamp("us", tz="UTC")),
        "period": pa.array(cols[4], pa.string()),
        "payload_hash": pa.array(cols[5], pa.string()),
    })
    return table, skipped


def read_table(path: str | os.PathLike, what: str, required: tuple[str, ...]):
    """A Parquet or CSV table with the ``required`` columns (CSV: empty cells are nulls)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such {what} file; check the path")
    try:
        if p.suffix.lower() == ".csv":
            t = pcsv.read_csv(p, convert_options=pcsv.ConvertOptions(
                strings_can_be_null=True, column_types={c: pa.string() for c in ("work_id", "holder_id", "output_id",
                                                                                  "run_id", "doc_id")}))
        else:
            t = pq.read_table(p)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{p}: unreadable {what} ({e}); give Parquet or CSV with {', '.join(required)}") from e
    for c in required:
        if c not in t.column_names:
            raise InputError(f"{p}: missing column {c!r}; {what} needs {', '.join(required)}")
    return t


def read_exposure(path: str | os.PathLike):
    """An exposure table (work_id, doc_id, weight, holder_id) from Parquet or CSV."""
    return read_table(path, "exposure", ("work_id", "holder_id", "weight"))


def workspace_exposure(con):
    """Exposure from ``tribute.market.evidence.exposure(con)``; ``(None, why)`` when not built yet."""
    try:
        from . import evidence  # type: ignore[attr-defined]
    except ImportError:
        return None, "no exposure yet (tribute.market.evidence is not available); the training pool goes to its residual account"
    fn = getattr(evidence, "exposure", None)
    if fn is None:
        return None, "no exposure yet (tribute.market.evidence has no exposure()); the training pool goes to its residual account"
    t = fn(con)
    if t is None or t.num_rows == 0:
        return None, "no exposure yet (scan a training corpus first); the training pool goes to its residual account"
    return t, f"exposure: {t.num_rows} rows from the workspace's scan evidence"


# ---------------------------------------------------------------------------------------------
# period exports and manifests

def period_tables(con, period: str) -> dict[str, Any]:
    from .ledger import wrap

    con = wrap(con)
    return {
        "transactions": con.sql(
            "SELECT seq, kind, period, ref, memo, reverses, prev_hash, hash FROM ledger_transactions "
            "WHERE period = ? ORDER BY seq", params=[period]).to_arrow_table(),
        "postings": con.sql(
            "SELECT p.seq, p.line, p.account, p.currency, p.amount FROM ledger_postings p JOIN ledger_transactions t "
            "USING (seq) WHERE t.period = ? ORDER BY p.seq, p.line", params=[period]).to_arrow_table(),
        "allocations": con.sql(
            "SELECT a.* FROM ledger_allocations a JOIN ledger_batches b USING (batch_id) WHERE b.period = ? "
            "ORDER BY a.batch_id, a.pool, a.event_key NULLS FIRST, a.work_id NULLS LAST, a.account, a.amount",
            params=[period]).to_arrow_table(),
    }


def period_figures(con, period: str, head_seq: int) -> dict[str, Any]:
    """Counts and sums of a period as the database holds them (compared with the manifest)."""
    n_txn, n_post = con.execute(
        "SELECT count(DISTINCT t.seq), count(p.seq) FROM ledger_transactions t LEFT JOIN ledger_postings p USING (seq) "
        "WHERE t.period = ?", [period]).fetchone()
    n_alloc, s_alloc = con.execute(
        "SELECT count(*), coalesce(sum(a.amount), 0)::BIGINT FROM ledger_allocations a JOIN ledger_batches b "
        "USING (batch_id) WHERE b.period = ?", [period]).fetchone()
    n_ev, s_ev = con.execute("SELECT count(*), coalesce(sum(amount), 0)::BIGINT FROM ledger_events WHERE period = ?",
                             [period]).fetchone()
    sums: dict[str, dict[str, int]] = {}
    for a, c, v in con.execute(
            "SELECT p.account, p.currency, sum(p.amount)::BIGINT FROM ledger_postings p JOIN ledger_transactions t "
            "USING (seq) WHERE t.period = ? GROUP BY ALL ORDER BY ALL", [period]).fetchall():
        sums.setdefault(a, {})[c] = int(v)
    bal: dict[str, dict[str, int]] = {}
    for a, c, v in con.execute(
            "SELECT account, currency, sum(amount)::BIGINT FROM ledger_postings WHERE seq <= ? GROUP BY ALL ORDER BY ALL",
            [head_seq]).fetchall():
        bal.setdefault(a, {})[c] = int(v)
    return {"counts": {"transactions": int(n_txn), "postings": int(n_post), "allocations": int(n_alloc),
                       "events": int(n_ev)},
            "sums": {"allocations": int(s_alloc), "revenue_events": int(s_ev)},
            "period_postings": sums, "balances_at_head": bal}


def period_manifest(con, period: str, files: dict[str, Path]) -> dict[str, Any]:
    head_seq, head_hash = con.execute("SELECT head_seq, head_hash FROM ledger_periods WHERE period = ?",
                                      [period]).fetchone()
    policies = [r[0] for r in con.execute(
        "SELECT DISTINCT policy_hash FROM ledger_batches WHERE period = ? ORDER BY 1", [period]).fetchall()]
    return {"kind": "ledger-period", "period": period, "head_seq": int(head_seq), "head_hash": head_hash,
            **period_figures(con, period, int(head_seq)),
            "policies": policies,
            "files": {f"{n}.parquet": file_sha256(p) for n, p in sorted(files.items())},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# ---------------------------------------------------------------------------------------------
# statement

def _q(con, sql: str, params: list) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def statement(con, holder: str, period: str, policy: PricingPolicy) -> dict[str, Any]:
    """A holder's statement for a period: opening balance, transactions, closing balance, and the
    trace of every royalty (output pool: output -> work -> score -> share -> amount; training
    pool: work -> exposure weight -> amount; fees and caps)."""
    from .catalog import resolve_holder

    h = resolve_holder(con, holder)
    acc = f"holder:{h['holder_id']}"
    cur = policy.currency
    opening = int(con.execute(
        "SELECT coalesce(sum(p.amount), 0)::BIGINT FROM ledger_postings p JOIN ledger_transactions t USING (seq) "
        "WHERE p.account = ? AND p.currency = ? AND t.period < ?", [acc, cur, period]).fetchone()[0])
    txns = _q(con, "SELECT t.seq, t.kind, t.memo, p.amount FROM ledger_postings p JOIN ledger_transactions t "
              "USING (seq) WHERE p.account = ? AND p.currency = ? AND t.period = ? ORDER BY t.seq",
              [acc, cur, period])
    closing = opening + sum(int(t["amount"]) for t in txns)
    reversed_batches = {r[0] for r in con.execute(
        "SELECT b.batch_id FROM ledger_batches b JOIN ledger_transactions t ON t.reverses = b.dist_txn "
        "WHERE b.period = ?", [period]).fetchall()}
    outputs = _q(con, (
        "SELECT a.batch_id, a.output_id, a.work_id, w.title, s.score, a.share, "
        "  (SELECT sum(x.amount) FROM ledger_allocations x WHERE x.batch_id = a.batch_id AND x.event_key = a.event_key "
        "   AND x.pool = 'output')::BIGINT AS output_pool, a.amount, e.amount AS revenue, a.event_key "
        "FROM ledger_allocations a JOIN ledger_batches b USING (batch_id) "
        "LEFT JOIN ledger_events e ON e.event_key = a.event_key "
        "LEFT JOIN works w ON w.work_id = a.work_id "
        "LEFT JOIN ledger_shares s ON s.run_id = b.run_id AND s.output_id = a.output_id AND s.work_id = a.work_id "
        "WHERE b.period = ? AND a.pool = 'output' AND a.account = ? "
        "ORDER BY a.output_id, a.event_key, a.work_id"), [period, acc])
    training = _q(con, (
        "SELECT a.batch_id, a.work_id, w.title, a.share AS exposure, a.weight, a.amount, "
        "  (SELECT sum(x.amount) FROM ledger_allocations x WHERE x.batch_id = a.batch_id AND x.pool = 'training')::BIGINT AS pool "
        "FROM ledger_allocations a JOIN ledger_batches b USING (batch_id) LEFT JOIN works w ON w.work_id = a.work_id "
        "WHERE b.period = ? AND a.pool = 'training' AND a.account = ? ORDER BY a.batch_id, a.work_id"), [period, acc])
    other = _q(con, (
        "SELECT a.batch_id, a.pool, a.work_id, a.amount FROM ledger_allocations a JOIN ledger_batches b USING (batch_id) "
        "WHERE b.period = ? AND a.pool IN ('fee', 'cap') AND a.account = ? ORDER BY a.pool, a.work_id"), [period, acc])
    closed = con.execute("SELECT 1 FROM ledger_periods WHERE period = ?", [period]).fetchone() is not None
    for rows in (outputs, training, other):
        for r in rows:
            r["reversed"] = r.pop("batch_id") in reversed_batches
    return {"holder_id": h["holder_id"], "holder": h["name"], "account": acc, "period": period, "currency": cur,
            "minor_units": policy.minor_units, "closed": closed, "opening": opening, "transactions": txns,
            "closing": closing, "carried_forward": closing if closed else None,
            "minimum_payout": policy.minimum_payout, "outputs": outputs, "training": training, "other": other}


def render_statement(st: dict[str, Any]) -> str:
    """The plain-text statement (pinned by a golden file)."""
    mu = st["minor_units"]

    def m(x):
        return format_minor(int(x), mu) if x is not None else "-"

    def tbl(headers, rows):
        cells = [[str(c) for c in r] for r in rows]
        widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
        out = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
        out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
        return out

    cur = st["currency"]
    lines = [f"Statement: {st['holder']} ({st['account']}), period {st['period']}"
             f"{' (closed)' if st['closed'] else ' (open)'}, amounts in {cur}", ""]
    lines.append(f"Opening balance  {m(st['opening'])}")
    if st["transactions"]:
        lines += tbl(["TXN", "KIND", "AMOUNT", "MEMO"],
                     [[f"#{t['seq']}", t["kind"], m(t["amount"]), t["memo"]] for t in st["transactions"]])
    else:
        lines.append("  (no transactions)")
    lines.append(f"Closing balance  {m(st['closing'])}")
    if st["closed"]:
        if st["closing"] > 0:
            lines.append(f"Carried forward  {m(st['closing'])} (below the minimum payout of {m(st['minimum_payout'])}"
                         " or held back)")
        else:
            lines.append("Carried forward  0 (paid out at close)")
    lines += ["", "Output pool (attribution): output -> work -> score -> share -> amount"]
    if st["outputs"]:
        lines += tbl(["OUTPUT", "WORK", "SCORE", "SHARE", "OUTPUT POOL", "AMOUNT", "NOTE"],
                     [[r["output_id"], r["work_id"], "-" if r["score"] is None else f"{r['score']:.6g}",
                       f"{r['share']:.6f}", m(r["output_pool"]), m(r["amount"]), "reversed" if r["reversed"] else ""]
                      for r in st["outputs"]])
        lines.append(f"  total {m(sum(int(r['amount']) for r in st['outputs']))}")
    else:
        lines.append("  (none)")
    lines += ["", "Training pool (exposure): work -> exposure weight -> amount"]
    if st["training"]:
        lines += tbl(["WORK", "EXPOSURE", "POOL", "AMOUNT", "NOTE"],
                     [[r["work_id"], f"{r['exposure']:.6g}", m(r["pool"]), m(r["amount"]),
                       "reversed" if r["reversed"] else ""] for r in st["training"]])
        lines.append(f"  total {m(sum(int(r['amount']) for r in st['training']))}")
    else:
        lines.append("  (none)")
    if st["other"]:
        lines += ["", "Fees and caps"]
        lines += tbl(["KIND", "WORK", "AMOUNT"], [[r["pool"], r["work_id"] or "-", m(r["amount"])] for r in st["other"]])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# exports

def _export_rows(con, period: str | None) -> list[dict[str, Any]]:
    sql = ("SELECT t.seq, t.period, t.kind, t.ref, t.memo, t.reverses, t.hash, p.line, p.account, p.currency, "
           "p.amount FROM ledger_transactions t JOIN ledger_postings p USING (seq)")
    params: list[Any] = []
    if period:
        sql += " WHERE t.period = ?"
        params.append(period)
    return _q(con, sql + " ORDER BY t.seq, p.line", params)


EXPORT_COLUMNS = ("seq", "period", "kind", "ref", "memo", "reverses", "hash", "line", "account", "currency",
                  "amount_minor", "amount")


def export(con, fmt: str, out: Path, policy: PricingPolicy, period: str | None = None) -> dict[str, Any]:
    """Write the journal (one row per posting) as Parquet or CSV, or as a Beancount file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt not in EXPORT_FORMATS:
        raise InputError(f"--format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    if out.exists() and out.is_dir():
        raise InputError(f"{out}: is a folder; give a file path for --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = _export_rows(con, period)
    if period and not rows:
        raise NotFoundError(f"period {period}: no transactions; see `tribute ledger balance`")
    for r in rows:
        r["amount_minor"] = int(r.pop("amount"))
        r["amount"] = format_minor(r["amount_minor"], policy.minor_units)
    if fmt == "parquet":
        t = pa.table({
            "seq": pa.array([r["seq"] for r in rows], pa.int64()),
            "period": pa.array([r["period"] for r in rows], pa.string()),
            "kind": pa.array([r["kind"] for r in rows], pa.string()),
            "ref": pa.array([r["ref"] for r in rows], pa.string()),
            "memo": pa.array([r["memo"] for r in rows], pa.string()),
            "reverses": pa.array([r["reverses"] for r in rows], pa.int64()),
            "hash": pa.array([r["hash"] for r in rows], pa.string()),
            "line": pa.array([r["line"] for r in rows], pa.int32()),
            "account": pa.array([r["account"] for r in rows], pa.string()),
            "currency": pa.array([r["currency"] for r in rows], pa.string()),
            "amount_minor": pa.array([r["amount_minor"] for r in rows], pa.int64()),
            "amount": pa.array([r["amount"] for r in rows], pa.string()),
        })
        tmp = out.with_name(f".{out.name}.tmp")
        pq.write_table(t, tmp)
        os.replace(tmp, out)
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(EXPORT_COLUMNS)
        for r in rows:
            w.writerow(["" if r[c] is None else r[c] for c in EXPORT_COLUMNS])
        atomic_write_text(out, buf.getvalue())
    else:
        atomic_write_text(out, beancount_text(rows, policy))
    return {"format": fmt, "path": str(out), "postings": len(rows),
            "transactions": len({r["seq"] for r in rows})}


def _bean_component(s: str) -> str:
    import re

    c = re.sub(r"[^A-Za-z0-9-]", "-", s).strip("-") or "X"
    return c[0].upper() + c[1:] if c[0].isalpha() else "H" + c


def bean_account(account: str) -> str:
    """Beancount account for a ledger account (money held inside tribute is an asset)."""
    fixed = {"world:revenue": "Income:Revenue", "world:payouts": "Expenses:Payouts", "platform": "Assets:Platform",
             "pool:training": "Assets:Pool:Training", "pool:output": "Assets:Pool:Output",
             "unattributed": "Assets:Unattributed"}
    if account in fixed:
        return fixed[account]
    kind, _, rest = account.partition(":")
    top = {"holder": "Assets:Holders", "escrow": "Assets:Escrow"}.get(kind, "Assets:Other")
    return f"{top}:{_bean_component(rest)}"


def period_end(period: str) -> str:
    y, rest = period.split("-")
    if rest.startswith("Q"):
        month = int(rest[1]) * 3
    else:
        month = int(rest)
    nxt = datetime(int(y) + (month == 12), month % 12 + 1, 1)
    return (nxt - timedelta(days=1)).strftime("%Y-%m-%d")


def beancount_text(rows: list[dict[str, Any]], policy: PricingPolicy) -> str:
    """Beancount: one transaction per ledger transaction, dated the last day of its period."""
    out = ['option "title" "tribute compensation ledger"', f'option "operating_currency" "{policy.currency}"', ""]
    opened: dict[str, str] = {}
    for r in rows:
        a = bean_account(r["account"])
        opened.setdefault(a, period_end(r["period"]))
    first = min(opened.values()) if opened else None
    for a in sorted(opened):
        out.append(f"{first} open {a}")
    by_seq: dict[int, list] = {}
    for r in rows:
        by_seq.setdefault(r["seq"], []).append(r)
    for seq in sorted(by_seq):
        rs = by_seq[seq]
        h = rs[0]
        memo = h["memo"].replace("\\", "\\\\").replace('"', '\\"')
        out += ["", f'{period_end(h["period"])} * "{h["kind"]}" "{memo}"',
                f'  tribute_seq: "{seq}"', f'  tribute_hash: "{h["hash"]}"']
        for r in rs:
            out.append(f"  {bean_account(r['account'])}  {r['amount']} {r['currency']}")
    return "\n".join(out) + "\n"


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
