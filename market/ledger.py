"""The double-entry compensation ledger, stored in the workspace's DuckDB.

Accounts (postings are signed: positive = money into the account, negative = out of it):

``world:revenue``   where revenue comes from (goes negative by all revenue booked)
``platform``        the platform's share (pays fixed fees)
``pool:training``   transit: the training pool of a batch (back to zero after distribution)
``pool:output``     transit: the output pool of a batch (back to zero after distribution)
``holder:<id>``     royalties owed to a rights holder (carried forward until paid)
``unattributed``    the explicit residual account (shares nobody can claim)
``escrow:<id>``     money held while dispute ``<id>`` is open
``world:payouts``   money paid out to holders at period close

Every transaction balances per currency; the journal is append-only with a SHA-256 hash chain
whose head is mirrored outside the database (``<ws>/ledger/HEAD.json`` after every commit and a
manifest per closed period), so ``verify`` notices lost commits and tampering.

Example::

    led = Ledger(ws)
    led.ingest_events("outputs.jsonl", policy)
    led.ingest_shares(shares_table)              # pyarrow: run_id, output_id, work_id, holder_id, share, score
    led.allocate(policy, "2026-11", exposure=exposure_table)
    led.close_period("2026-11", policy)
    led.verify()
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ..core.errors import ConfigError, ConflictError, InputError, IntegrityError, NotFoundError
from ..core.manifest import atomic_dir, atomic_write_text
from .ledger_alloc import Allocation, aggregate_exposure, compute_allocation, holder_account
from .policy import PricingPolicy, decimal_to_minor, format_minor, policy_from_settings
from .workspace import transaction

GENESIS = "0" * 64
LEDGER_DIR = "ledger"
HEAD_FILE = "HEAD.json"
SHARE_INPUT_COLUMNS = ("run_id", "output_id", "work_id", "holder_id", "share", "score")
SHARE_SUM_TOLERANCE = 1e-6
SCAN_BATCH_ROWS = 1 << 17
FIXED_ACCOUNTS = ("world:revenue", "world:payouts", "platform", "pool:training", "pool:output", "unattributed")


# ---------------------------------------------------------------------------------------------
# periods and the hash chain

def period_of(at: datetime, kind: str = "month") -> str:
    """The period key of a UTC time: ``2026-11`` (month) or ``2026-Q4`` (quarter)."""
    at = at.astimezone(timezone.utc)
    if kind == "quarter":
        return f"{at.year:04d}-Q{(at.month - 1) // 3 + 1}"
    return f"{at.year:04d}-{at.month:02d}"


def check_period(period: str, kind: str) -> str:
    import re

    pat = r"^\d{4}-Q[1-4]$" if kind == "quarter" else r"^\d{4}-(0[1-9]|1[0-2])$"
    if not re.match(pat, period or ""):
        example = "2026-Q4" if kind == "quarter" else "2026-11"
        raise InputError(f"period {period!r}: not a {kind} period; write it like {example}")
    return period


def txn_hash(prev: str, seq: int, kind: str, period: str, ref: str, memo: str, reverses: int | None,
             lines: list[tuple[str, str, int]]) -> str:
    """SHA-256 over the previous hash and a canonical JSON of the transaction."""
    body = json.dumps(
        {"seq": seq, "kind": kind, "period": period, "ref": ref, "memo": memo, "reverses": reverses,
         "lines": [[a, c, int(x)] for a, c, x in lines]},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    h = hashlib.sha256()
    h.update(prev.encode("ascii"))
    h.update(body.encode("utf-8"))
    return h.hexdigest()


def _reg(con, name: str, table) -> None:
    """Register an Arrow table as a view (DuckDB refuses while a fetchone() result is open)."""
    wrap(con).register(name, table)


class _Con:
    """A DuckDB connection that finishes any open result before register / unregister / sql.

    DuckDB 2 refuses those calls while an ``execute()`` result is not fully fetched (a
    ``fetchone()`` leaves it open, and so does ``Workspace.connect``'s own version check).
    """

    def __init__(self, con):
        self._con = con

    def _drain(self) -> None:
        self._con.execute("SELECT 1").fetchall()

    def register(self, name, table):
        self._drain()
        return self._con.register(name, table)

    def unregister(self, name):
        self._drain()
        return self._con.unregister(name)

    def sql(self, query, params=None):
        self._drain()
        return self._con.sql(query, params=params)

    def __getattr__(self, name):
        return getattr(self._con, name)


def wrap(con):
    return con if isinstance(con, _Con) else _Con(con)


def _rows(cur) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _table_exists(con, name: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0])


class Ledger:
    """The ledger of one workspace. Each method opens its own connection (one transaction)."""

    def __init__(self, ws):
        self.ws = ws

    @contextlib.contextmanager
    def _connect(self, read_only: bool = False):
        with self.ws.connect(read_only=read_only) as con:
            yield wrap(con)

    # --- paths outside the database ---------------------------------------------------------
    @property
    def dir(self) -> Path:
        return self.ws.subdir(LEDGER_DIR)

    def period_dir(self, period: str) -> Path:
        return self.dir / "periods" / period

    def _write_head(self, con) -> dict[str, Any]:
        row = con.execute("SELECT seq, hash FROM ledger_transactions ORDER BY seq DESC LIMIT 1").fetchone()
        head = {"seq": int(row[0]) if row else 0, "hash": row[1] if row else GENESIS}
        atomic_write_text(self.dir / HEAD_FILE, json.dumps(head, sort_keys=True) + "\n")
        return head

    def read_head(self) -> dict[str, Any] | None:
        p = self.dir / HEAD_FILE
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise IntegrityError(f"{p}: unreadable chain head ({e}); restore it from a backup") from e

    # --- policy -------------------------------------------------------------------------------
    @staticmethod
    def _save_policy(con, policy: PricingPolicy) -> None:
        con.execute(
            "INSERT INTO ledger_policies (policy_hash, name, settings, toml) SELECT ?, ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM ledger_policies WHERE policy_hash = ?)",
            [policy.policy_hash, policy.name, json.dumps(policy.settings(), sort_keys=True), policy.text,
             policy.policy_hash],
        )
        con.execute("UPDATE ledger_policies SET last_used_at = current_timestamp WHERE policy_hash = ?",
                    [policy.policy_hash])

    @staticmethod
    def _stored_policy(con, policy_hash: str) -> PricingPolicy:
        row = con.execute("SELECT settings FROM ledger_policies WHERE policy_hash = ?", [policy_hash]).fetchone()
        if not row:
            raise IntegrityError(f"policy {policy_hash}: referenced by the ledger but not stored")
        return policy_from_settings(json.loads(row[0]), source=f"stored policy {policy_hash[:19]}")

    def last_policy(self) -> PricingPolicy:
        """The policy the ledger used most recently (for commands run without --policy)."""
        with self._connect(read_only=True) as con:
            row = con.execute(
                "SELECT settings, policy_hash FROM ledger_policies ORDER BY last_used_at DESC, policy_hash LIMIT 1"
            ).fetchone()
        if not row:
            raise ConfigError("the ledger has no policy yet; pass --policy PATH (see cli/demo_corpus/policy.toml)")
        return policy_from_settings(json.loads(row[0]), source=f"stored policy {row[1][:19]}")

    # --- posting ----------------------------------------------------------------------------
    def _post(self, con, kind: str, period: str, ref: str, memo: str, lines: dict[tuple[str, str], int],
              reverses: int | None = None) -> int:
        """Append one balanced transaction (inside the caller's DB transaction); returns its seq."""
        import pyarrow as pa

        if con.execute("SELECT 1 FROM ledger_periods WHERE period = ?", [period]).fetchone():
            raise ConflictError(f"period {period}: closed; book corrections in an open period (--period)")
        if con.execute("SELECT 1 FROM ledger_transactions WHERE ref = ?", [ref]).fetchone():
            raise ConflictError(f"transaction {ref!r} already booked; nothing to do twice")
        items = sorted(((a, c), int(v)) for (a, c), v in lines.items() if int(v) != 0)
        sums: dict[str, int] = {}
        for (_, c), v in items:
            sums[c] = sums.get(c, 0) + v
        bad = {c: s for c, s in sums.items() if s != 0}
        if bad:
            raise IntegrityError(f"transaction {ref!r} does not balance: {bad}; this is a bug, nothing was written")
        if not items:
            raise InputError(f"transaction {ref!r} moves no money; nothing to book")
        row = con.execute("SELECT seq, hash FROM ledger_transactions ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (int(row[0]) + 1, row[1]) if row else (1, GENESIS)
        flat = [(a, c, v) for (a, c), v in items]
        h = txn_hash(prev, seq, kind, period, ref, memo, reverses, flat)
        con.execute(
            "INSERT INTO ledger_transactions (seq, kind, period, ref, memo, reverses, prev_hash, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [seq, kind, period, ref, memo, reverses, prev, h])
        t = pa.table({
            "seq": pa.array([seq] * len(flat), pa.int64()),
            "line": pa.array(range(1, len(flat) + 1), pa.int32()),
            "account": pa.array([a for a, _, _ in flat], pa.string()),
            "currency": pa.array([c for _, c, _ in flat], pa.string()),
            "amount": pa.array([v for _, _, v in flat], pa.int64()),
        })
        _reg(con, "_new_postings", t)
        con.execute("INSERT INTO ledger_postings SELECT seq, line, account, currency, amount FROM _new_postings")
        con.unregister("_new_postings")
        return seq

    def _commit(self, con, fn):
        with transaction(con):
            out = fn()
        self._write_head(con)
        return out

    # --- ingest -----------------------------------------------------------------------------
    def ingest_events(self, records: Iterable, policy: PricingPolicy, source: str | None = None) -> dict[str, int]:
        """Ingest revenue events idempotently (see :func:`events_table` for the record format)."""
        from .ledger_io import events_table

        table, skipped = events_table(records, policy)
        with self._connect() as con:
            closed = {r[0] for r in con.execute("SELECT period FROM ledger_periods").fetchall()}
            for p in sorted(set(table.column("period").to_pylist()) & closed):
                raise ConflictError(
                    f"revenue events: period {p} is closed; book late revenue in an open period as an adjustment")
            _reg(con, "_new_events", table)
            try:
                clash = con.execute(
                    "SELECT n.event_key FROM _new_events n JOIN ledger_events e USING (event_key) "
                    "WHERE n.payload_hash <> e.payload_hash ORDER BY n.event_key LIMIT 1").fetchone()
                if clash:
                    raise ConflictError(
                        f"revenue event {clash[0]!r}: already ingested with a different payload; "
                        "give a changed event a new event_id, or correct it with an adjustment")
                same = con.execute(
                    "SELECT count(*) FROM _new_events n JOIN ledger_events e USING (event_key)").fetchone()[0]

                def work():
                    self._save_policy(con, policy)
                    con.execute(
                        "INSERT INTO ledger_events (event_key, output_id, currency, amount, occurred_at, period, payload_hash, source) "
                        "SELECT event_key, output_id, currency, amount, occurred_at, period, payload_hash, ? FROM _new_events n "
                        "WHERE NOT EXISTS (SELECT 1 FROM ledger_events e WHERE e.event_key = n.event_key) "
                        "ORDER BY event_key", [source])
                self._commit(con, work)
            finally:
                con.unregister("_new_events")
        return {"added": table.num_rows - int(same), "unchanged": int(same), "skipped_no_revenue": skipped}

    def ingest_shares(self, shares, run_id: str | None = None) -> dict[str, Any]:
        """Copy attribution shares (pyarrow table) into the ledger, idempotently per run_id."""
        with self._connect() as con:
            return ingest_shares(con, shares, run_id)

    # --- allocation ---------------------------------------------------------------------------
    def allocate(self, policy: PricingPolicy, period: str, *, run_id: str | None = None, exposure=None,
                 dry_run: bool = False) -> dict[str, Any]:
        """Allocate the period's unallocated events; ``dry_run`` computes without writing."""
        check_period(period, policy.period)
        with self._connect(read_only=dry_run) as con:
            if not dry_run and _table_exists(con, "attribution_shares"):
                _sync_workspace_shares(con)
            plan = _plan_batch(con, policy, period, run_id, exposure)
            if plan is None:
                return {"period": period, "events": 0, "dry_run": dry_run, "message": "no unallocated events"}
            alloc: Allocation = plan["allocation"]
            result = {"period": period, "currency": policy.currency, "batch_id": plan["batch_id"],
                      "run_id": plan["run_id"], "dry_run": dry_run, **alloc.stats,
                      "split": alloc.split, "distribute": alloc.distribute}
            if dry_run:
                return result

            def work():
                self._save_policy(con, policy)
                cur = policy.currency
                memo = f"batch {plan['batch_id'][:12]}: {alloc.stats['events']} events, policy {policy.name}"
                s1 = self._post(con, "split", period, f"split:{plan['batch_id']}", "revenue split; " + memo,
                                {(a, cur): v for a, v in alloc.split.items()})
                s2 = self._post(con, "distribute", period, f"distribute:{plan['batch_id']}",
                                "pool distribution; " + memo, {(a, cur): v for a, v in alloc.distribute.items()})
                _store_batch(con, plan, policy, s1, s2)
                return s1, s2

            s1, s2 = self._commit(con, work)
            result["transactions"] = [s1, s2]
            return result

    # --- corrections ----------------------------------------------------------------------------
    def reverse(self, seq: int, period: str, memo: str = "") -> list[int]:
        """Reverse a transaction (both halves of an allocation batch) by opposite entries."""
        with self._connect() as con:
            row = con.execute("SELECT kind, period FROM ledger_transactions WHERE seq = ?", [seq]).fetchone()
            if not row:
                raise NotFoundError(f"transaction {seq}: no such transaction; see `tribute ledger sql`")
            targets = _txn_group(con, seq)

            def work():
                done = []
                for t in targets:
                    lines = {(a, c): -int(v) for a, c, v in con.execute(
                        "SELECT account, currency, amount FROM ledger_postings WHERE seq = ?", [t]).fetchall()}
                    done.append(self._post(con, "reversal", period, f"reverse:{t}",
                                           memo or f"reversal of transaction {t}", lines, reverses=t))
                return done

            return self._commit(con, work)

    def adjust(self, from_account: str, to_account: str, amount: str | int, period: str, memo: str,
               policy: PricingPolicy, ref: str | None = None) -> int:
        """Move ``amount`` (major-unit decimal string, or int minor units) between two accounts."""
        minor = amount if isinstance(amount, int) else decimal_to_minor(amount, policy.minor_units, "--amount")
        if minor <= 0:
            raise InputError("--amount must be positive; swap --from and --to to move money the other way")
        if not memo.strip():
            raise InputError("--memo is required: say why the adjustment is made")
        with self._connect() as con:
            for acc in (from_account, to_account):
                _check_account(con, acc)
            lines = {(from_account, policy.currency): -minor, (to_account, policy.currency): minor}
            ref = ref or "adjust:" + hashlib.sha256(
                json.dumps([from_account, to_account, minor, period, memo]).encode()).hexdigest()[:24]
            return self._commit(con, lambda: self._post(con, "adjustment", period, ref, memo.strip(), lines))

    # --- disputes -------------------------------------------------------------------------------
    def dispute_open(self, holder: str, amount: str | int, reason: str, period: str, policy: PricingPolicy) -> dict:
        """Move a contested amount from a holder's account into escrow."""
        from .catalog import resolve_holder

        minor = amount if isinstance(amount, int) else decimal_to_minor(amount, policy.minor_units, "--amount")
        if minor <= 0:
            raise InputError("--amount must be positive")
        if not reason.strip():
            raise InputError("--reason is required: say what is contested")
        with self._connect() as con:
            h = resolve_holder(con, holder)["holder_id"]
            acc = holder_account(h)
            bal = _balance(con, acc, policy.currency)
            if bal < minor:
                raise ConflictError(
                    f"holder {holder!r}: balance {format_minor(bal, policy.minor_units)} {policy.currency} is less "
                    f"than the disputed {format_minor(minor, policy.minor_units)}; dispute at most the balance")
            n = con.execute("SELECT count(*) FROM ledger_disputes").fetchone()[0]
            did = f"D{n + 1:04d}"

            def work():
                seq = self._post(con, "dispute_open", period, f"dispute-open:{did}", f"dispute {did}: {reason.strip()}",
                                 {(acc, policy.currency): -minor, (f"escrow:{did}", policy.currency): minor})
                con.execute("INSERT INTO ledger_disputes (dispute_id, holder_id, currency, amount, reason, open_seq) "
                            "VALUES (?, ?, ?, ?, ?, ?)", [did, h, policy.currency, minor, reason.strip(), seq])
                return seq

            seq = self._commit(con, work)
        return {"dispute_id": did, "holder_id": h, "amount": minor, "transaction": seq}

    def dispute_resolve(self, dispute_id: str, to: str, period: str) -> dict:
        """Release escrow: ``to`` = ``holder`` (back to the holder) or another account."""
        with self._connect() as con:
            row = con.execute("SELECT holder_id, currency, amount, resolve_seq FROM ledger_disputes WHERE dispute_id = ?",
                              [dispute_id]).fetchone()
            if not row:
                raise NotFoundError(f"dispute {dispute_id!r}: no such dispute; see `tribute ledger dispute list`")
            h, cur, minor, done = row
            if done is not None:
                raise ConflictError(f"dispute {dispute_id}: already resolved (transaction {done})")
            target = holder_account(h) if to == "holder" else to
            _check_account(con, target)

            def work():
                seq = self._post(con, "dispute_resolve", period, f"dispute-resolve:{dispute_id}",
                                 f"dispute {dispute_id} resolved to {target}",
                                 {(f"escrow:{dispute_id}", cur): -int(minor), (target, cur): int(minor)})
                con.execute("UPDATE ledger_disputes SET resolve_seq = ?, outcome = ? WHERE dispute_id = ?",
                            [seq, target, dispute_id])
                return seq

            seq = self._commit(con, work)
        return {"dispute_id": dispute_id, "to": target, "amount": int(minor), "transaction": seq}

    def disputes(self) -> list[dict]:
        with self._connect(read_only=True) as con:
            return _rows(con.execute("SELECT * FROM ledger_disputes ORDER BY dispute_id"))

    # --- period close ---------------------------------------------------------------------------
    def close_period(self, period: str, policy: PricingPolicy) -> dict[str, Any]:
        """Pay out balances >= the minimum, freeze the period, checkpoint, export, write a manifest."""
        check_period(period, policy.period)
        with self._connect() as con:
            closed = con.execute("SELECT head_seq FROM ledger_periods WHERE period = ?", [period]).fetchone()
            if closed:
                if (self.period_dir(period) / "manifest.json").exists():
                    raise ConflictError(f"period {period}: already closed; corrections go into an open period")
                # closed in the database but the export never finished (crash): redo the export
                manifest = self._export_period(con, period)
                return {"period": period, "repaired_export": True, "manifest": str(manifest)}
            left = con.execute(
                "SELECT count(*) FROM ledger_events e WHERE period = ? AND NOT EXISTS "
                "(SELECT 1 FROM ledger_batch_events b WHERE b.event_key = e.event_key)", [period]).fetchone()[0]
            if left:
                raise ConflictError(f"period {period}: {left} revenue events are not allocated; run "
                                    f"`tribute ledger allocate --period {period}` first")
            bal = con.execute(
                "SELECT account, sum(amount)::BIGINT FROM ledger_postings p JOIN ledger_transactions t USING (seq) "
                "WHERE account LIKE 'holder:%' AND currency = ? GROUP BY account ORDER BY account",
                [policy.currency]).fetchall()
            pay = {a: int(b) for a, b in bal if b > 0 and b >= max(policy.minimum_payout, 1)}
            carried = {a: int(b) for a, b in bal if 0 < b < max(policy.minimum_payout, 1)}

            def work():
                self._save_policy(con, policy)
                seq = None
                if pay:
                    lines = {(a, policy.currency): -v for a, v in pay.items()}
                    lines[("world:payouts", policy.currency)] = sum(pay.values())
                    seq = self._post(con, "payout", period, f"payout:{period}",
                                     f"payouts for {period} (minimum {format_minor(policy.minimum_payout, policy.minor_units)})",
                                     lines)
                head = con.execute("SELECT seq, hash FROM ledger_transactions ORDER BY seq DESC LIMIT 1").fetchone()
                head = head or (0, GENESIS)
                con.execute("INSERT INTO ledger_periods (period, head_seq, head_hash) VALUES (?, ?, ?)",
                            [period, head[0], head[1]])
                return seq

            payout_seq = self._commit(con, work)
            con.execute("CHECKPOINT")
            manifest = self._export_period(con, period)
        return {"period": period, "payout_transaction": payout_seq,
                "paid": {a.split(":", 1)[1]: v for a, v in pay.items()},
                "carried_forward": {a.split(":", 1)[1]: v for a, v in carried.items()},
                "manifest": str(manifest)}

    def _export_period(self, con, period: str) -> Path:
        """Write the period's Parquet files and manifest (temp folder, then rename)."""
        import pyarrow.parquet as pq

        from .ledger_io import period_manifest, period_tables

        final = self.period_dir(period)
        with atomic_dir(final, replace=True) as tmp:
            tables = period_tables(con, period)
            files = {}
            for name, t in tables.items():
                pq.write_table(t, tmp / f"{name}.parquet")
                files[name] = tmp / f"{name}.parquet"
            manifest = period_manifest(con, period, files)
            atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return final / "manifest.json"

    # --- verify -----------------------------------------------------------------------------
    def verify(self, recompute: bool = True) -> dict[str, Any]:
        """Check balances, the hash chain, the chain head and manifests outside the database, and
        (``recompute``) every allocation from its stored inputs. Returns ``{"ok", "checks"}``."""
        from .ledger_verify import run_checks

        with self._connect(read_only=True) as con:
            return run_checks(self, con, recompute=recompute)

    # --- queries ------------------------------------------------------------------------------
    def balances(self, account: str | None = None, period: str | None = None) -> list[dict]:
        """Balance per account and currency (``account`` may end with ``*`` as a prefix match)."""
        sql = ("SELECT p.account, p.currency, sum(p.amount)::BIGINT AS balance, count(*) AS postings "
               "FROM ledger_postings p JOIN ledger_transactions t USING (seq) WHERE true")
        params: list[Any] = []
        if account:
            if account.endswith("*"):
                sql += " AND p.account LIKE ?"
                params.append(account[:-1].replace("%", r"\%") + "%")
            else:
                sql += " AND p.account = ?"
                params.append(account)
        if period:
            sql += " AND t.period <= ?"
            params.append(period)
        sql += " GROUP BY p.account, p.currency ORDER BY p.account, p.currency"
        with self._connect(read_only=True) as con:
            return _rows(con.execute(sql, params))

    def statement(self, holder: str, period: str, policy: PricingPolicy) -> dict[str, Any]:
        from .ledger_io import statement

        with self._connect(read_only=True) as con:
            return statement(con, holder, period, policy)

    def export(self, fmt: str, out: str | os.PathLike, policy: PricingPolicy, period: str | None = None) -> dict:
        from .ledger_io import export

        with self._connect(read_only=True) as con:
            return export(con, fmt, Path(out), policy, period)

    def sql(self, query: str) -> tuple[list[str], list[tuple]]:
        """Run ``query`` on a read-only connection without file or network access."""
        import duckdb

        with self._connect(read_only=True) as con:
            try:
                con.execute("SET enable_external_access = false")
                con.execute("SET lock_configuration = true")
                cur = con.execute(query)
                if cur.description is None:
                    return [], []
                return [d[0] for d in cur.description], cur.fetchall()
            except duckdb.Error as e:
                raise InputError(f"ledger sql: {str(e).splitlines()[0]}; the connection is read-only") from e


# ---------------------------------------------------------------------------------------------
# helpers working on an open connection

def _txn_group(con, seq: int) -> list[int]:
    """Transactions that must be reversed together: both halves of an allocation batch, and for a
    reversal, the reversals of its target's group (so reversing twice restores both halves)."""
    pair = con.execute("SELECT split_txn, dist_txn FROM ledger_batches WHERE split_txn = ? OR dist_txn = ?",
                       [seq, seq]).fetchall()
    if pair:
        return sorted(pair[0])
    rev = con.execute("SELECT reverses FROM ledger_transactions WHERE seq = ?", [seq]).fetchall()
    if rev and rev[0][0] is not None:
        out = []
        for t in _txn_group(con, int(rev[0][0])):
            r = con.execute("SELECT seq FROM ledger_transactions WHERE ref = ?", [f"reverse:{t}"]).fetchall()
            if r:
                out.append(int(r[0][0]))
        return sorted(out)
    return [seq]


def _balance(con, account: str, currency: str) -> int:
    return int(con.execute("SELECT coalesce(sum(amount), 0)::BIGINT FROM ledger_postings WHERE account = ? "
                           "AND currency = ?", [account, currency]).fetchone()[0])


def _check_account(con, account: str) -> None:
    if account.startswith("pool:"):
        raise InputError(f"account {account!r}: pool accounts are transit accounts of allocations; "
                         "adjust holder:<id>, platform, unattributed or world:* instead")
    if account in FIXED_ACCOUNTS:
        return
    if account.startswith("holder:"):
        h = account.split(":", 1)[1]
        if not con.execute("SELECT 1 FROM holders WHERE holder_id = ?", [h]).fetchone():
            raise NotFoundError(f"account {account!r}: no holder {h!r}; see `tribute holders list`")
        return
    raise InputError(f"account {account!r}: unknown; use holder:<holder_id> or one of {', '.join(FIXED_ACCOUNTS)}")


def ingest_shares(con, shares, run_id: str | None = None) -> dict[str, Any]:
    """Bulk, idempotent copy of attribution shares into ``ledger_shares`` (one DB transaction).

    ``shares`` is a pyarrow table with ``output_id, work_id, holder_id, share`` (``score`` and
    ``run_id`` optional; ``run_id`` may instead be given). Per run the content digest (an
    order-independent sum of MD5s of the rows) decides: same digest = nothing to do, another
    digest = :class:`ConflictError`.
    """
    import pyarrow as pa

    con = wrap(con)
    names = shares.column_names
    for c in ("output_id", "work_id", "holder_id", "share"):
        if c not in names:
            raise InputError(f"attribution shares: missing column {c!r}; expected {', '.join(SHARE_INPUT_COLUMNS)}")
    if "run_id" not in names:
        if not run_id:
            raise InputError("attribution shares: no run_id column; pass a run id")
        shares = shares.append_column("run_id", pa.array([run_id] * shares.num_rows, pa.string()))
    elif run_id:
        import pyarrow.compute as pc

        shares = shares.filter(pc.equal(shares.column("run_id"), run_id))
    if "score" not in names:
        shares = shares.append_column("score", pa.nulls(shares.num_rows, pa.float64()))
    # record batches of ~10^5 rows (zero-copy slices): DuckDB scans an Arrow table one batch per thread
    shares = pa.Table.from_batches(shares.select(list(SHARE_INPUT_COLUMNS)).to_batches(max_chunksize=SCAN_BATCH_ROWS))
    _reg(con, "_new_shares", shares)
    try:
        # one pass over the rows: per (run, output) the share sum, bad shares, rows and hash sum;
        # the check and the per-run digests then read that small table
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _share_groups AS SELECT run_id, output_id, sum(share) AS s, "
            "count(*) FILTER (WHERE share IS NULL OR isnan(share) OR isinf(share)) AS nans, count(*) AS n, "
            "sum(hash(output_id, work_id, holder_id, share, score)) AS hs FROM _new_shares GROUP BY run_id, output_id")
        try:
            bad = con.execute(
                f"SELECT run_id, output_id, s FROM _share_groups WHERE abs(s - 1) > {SHARE_SUM_TOLERANCE} OR nans > 0 "
                "OR s IS NULL OR run_id IS NULL OR output_id IS NULL ORDER BY run_id, output_id LIMIT 1").fetchone()
            if bad:
                raise InputError(
                    f"attribution shares: run {bad[0]!r} output {bad[1]!r}: shares sum to {bad[2]!r}, not 1 (or a "
                    "share is missing/NaN); include one unattributed row (work_id NULL) so each output sums to 1")
            digests = con.execute("SELECT run_id, sum(n)::BIGINT, sum(hs)::VARCHAR FROM _share_groups GROUP BY run_id "
                                  "ORDER BY run_id").fetchall()
        finally:
            con.execute("DROP TABLE IF EXISTS _share_groups")
        digest_sql = ("SELECT run_id, count(*) AS n, sum(hash(output_id, work_id, holder_id, share, score))::VARCHAR "
                      "FROM {src} GROUP BY run_id ORDER BY run_id")
        known = {r[0] for r in con.execute("SELECT run_id FROM ledger_share_runs").fetchall()}
        added, unchanged = [], []
        for rid, n, d in digests:
            digest = f"hashsum:{n}:{d}"
            if rid in known:
                # compare with the stored rows, hashed now by the same function (so the digest
                # need not be stable across DuckDB versions)
                old = con.execute(digest_sql.format(src="ledger_shares WHERE run_id = ?"), [rid]).fetchall()
                if not old or f"hashsum:{old[0][1]}:{old[0][2]}" != digest:
                    raise ConflictError(
                        f"attribution run {rid!r}: already ingested with different shares; give the new run another id")
                unchanged.append(rid)
            else:
                added.append((rid, n, digest))
        if added:
            con.execute("BEGIN TRANSACTION")
            try:
                seq0 = con.execute("SELECT coalesce(max(seq), 0) FROM ledger_share_runs").fetchone()[0]
                for i, (rid, n, digest) in enumerate(added, start=1):
                    con.execute("INSERT INTO ledger_share_runs (run_id, content_hash, n_rows, seq) VALUES (?, ?, ?, ?)",
                                [rid, digest, n, seq0 + i])
                new_runs = {rid: seq0 + i for i, (rid, _, _) in enumerate(added, start=1)}
                _insert_coded_shares(con, shares, new_runs, only=bool(unchanged))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
    finally:
        con.unregister("_new_shares")
    return {"added": [a[0] for a in added], "unchanged": unchanged, "rows": int(sum(a[1] for a in added))}


def _sync_workspace_shares(con) -> None:
    """Copy runs from the workspace's ``attribution_shares`` table that the ledger lacks."""
    new = con.execute("SELECT DISTINCT run_id FROM attribution_shares WHERE run_id NOT IN "
                      "(SELECT run_id FROM ledger_share_runs) ORDER BY run_id").fetchall()
    for (rid,) in new:
        t = con.sql("SELECT run_id, output_id, work_id, holder_id, share, score FROM attribution_shares "
                        "WHERE run_id = ?", params=[rid]).to_arrow_table()
        ingest_shares(con, t)


def exposure_hash(exposure) -> str | None:
    if exposure is None or exposure.num_rows == 0:
        return None
    agg = aggregate_exposure(exposure)
    h = hashlib.sha256()
    for w, hh, x in zip(*(agg.column(c).to_pylist() for c in ("work_id", "holder_id", "weight_sum"))):
        h.update(f"{w}\t{hh}\t{float(x)!r}\n".encode("utf-8"))
    return "sha256:" + h.hexdigest()


def _period_state(con, period: str, before_split: int | None = None) -> tuple[dict[str, int], set[str]]:
    """Royalties per holder and works already paid a fee in ``period`` (before a batch)."""
    cond = "" if before_split is None else " AND b.split_txn < ?"
    params: list[Any] = [period] + ([] if before_split is None else [before_split])
    prior = dict(con.execute(
        "SELECT a.holder_id, sum(a.amount)::BIGINT FROM ledger_allocations a JOIN ledger_batches b USING (batch_id) "
        "WHERE b.period = ? AND a.pool IN ('output', 'training', 'cap') AND a.account LIKE 'holder:%'" + cond +
        " GROUP BY a.holder_id", params).fetchall())
    fees = {r[0] for r in con.execute(
        "SELECT DISTINCT a.work_id FROM ledger_allocations a JOIN ledger_batches b USING (batch_id) "
        "WHERE b.period = ? AND a.pool = 'fee'" + cond, params).fetchall()}
    return {k: int(v) for k, v in prior.items()}, fees


def _id_codes(con, table: str, code_col: str, keys, cols: tuple[str, ...]):
    """Codes (numpy int64, one per row of the small Arrow table ``keys``) of ``keys``' rows in the
    dictionary table ``table``; rows it lacks are added first, numbered after its largest code in
    the sort order of their ids (nulls last)."""
    import numpy as np
    import pyarrow as pa

    keys = keys.append_column("_i", pa.array(np.arange(keys.num_rows, dtype=np.int64)))
    match = " AND ".join(f"c.{c} IS NOT DISTINCT FROM k.{c}" for c in cols)
    order = ", ".join(f"{c} ASC NULLS LAST" for c in cols)
    _reg(con, "_keys", keys)
    try:
        base = con.execute(f"SELECT coalesce(max({code_col}) + 1, 0) FROM {table}").fetchall()[0][0]
        con.execute(
            f"INSERT INTO {table} ({code_col}, {', '.join(cols)}) SELECT (? + row_number() OVER (ORDER BY {order}) - 1)"
            f"::BIGINT, {', '.join(cols)} FROM _keys k WHERE NOT EXISTS (SELECT 1 FROM {table} c WHERE {match})", [base])
        got = con.sql(f"SELECT k._i, c.{code_col} FROM _keys k JOIN {table} c ON {match}").to_arrow_table()
    finally:
        con.unregister("_keys")
    codes = np.empty(keys.num_rows, dtype=np.int64)
    codes[got.column("_i").to_numpy()] = got.column(code_col).to_numpy()
    return codes


_PAIR_HASH_JOIN = True  # tests switch it off to exercise the string join used when two pairs share a hash


def _insert_coded_shares(con, shares, runs: dict[str, int], only: bool) -> None:
    """Append the rows of ``runs`` (run id -> seq) to ``ledger_share_rows`` as integer codes.

    Output ids are dictionary-encoded in Arrow (few, in order) and coded through
    ``ledger_output_ids``; the distinct (work, holder) pairs are found in DuckDB (in parallel),
    coded through ``ledger_pair_ids``, and each row finds its pair by a 64-bit hash of the pair
    (an integer join), unless two of the pairs share a hash: then by the strings. ``only``:
    ``shares`` holds other runs too (skip them)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if only:
        shares = shares.filter(pc.is_in(shares.column("run_id"), value_set=pa.array(list(runs), pa.string())))
    out = shares.column("output_id")
    enc = pc.dictionary_encode(out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out)
    o_code = _id_codes(con, "ledger_output_ids", "output_code", pa.table({"output_id": enc.dictionary.cast(pa.string())}),
                       ("output_id",))
    if len(runs) == 1:
        run_seq = pa.array(np.full(shares.num_rows, next(iter(runs.values())), dtype=np.int64))
    else:
        idx = pc.index_in(shares.column("run_id"), value_set=pa.array(list(runs), pa.string())).to_numpy()
        run_seq = pa.array(np.array(list(runs.values()), dtype=np.int64)[idx])
    rows = pa.table({
        "run_seq": run_seq,
        "output_code": pa.array(o_code[enc.indices.to_numpy(zero_copy_only=False)]),
        "work_id": shares.column("work_id"), "holder_id": shares.column("holder_id"),
        "share": shares.column("share"), "score": shares.column("score"),
    })
    _reg(con, "_coded", rows)
    try:
        pairs = con.sql("SELECT DISTINCT work_id, holder_id FROM _coded").to_arrow_table()
        p_code = _id_codes(con, "ledger_pair_ids", "pair_code", pairs, ("work_id", "holder_id"))
        _reg(con, "_pairs", pairs.append_column("pair_code", pa.array(p_code)))
        con.execute("CREATE OR REPLACE TEMP TABLE _pair_h AS SELECT pair_code, work_id, holder_id, "
                    "hash(work_id, holder_id) AS h FROM _pairs")
        unique = _PAIR_HASH_JOIN and con.execute("SELECT count(*) = count(DISTINCT h) FROM _pair_h").fetchall()[0][0]
        on = ("hash(s.work_id, s.holder_id) = p.h" if unique else
              "s.work_id IS NOT DISTINCT FROM p.work_id AND s.holder_id IS NOT DISTINCT FROM p.holder_id")
        con.execute("INSERT INTO ledger_share_rows SELECT s.run_seq, s.output_code, p.pair_code, s.share, s.score "
                    f"FROM _coded s JOIN _pair_h p ON {on}")
        con.execute("DROP TABLE _pair_h")
    finally:
        con.unregister("_coded")
        con.unregister("_pairs")


def _event_rows(codes, ev_code, ev_index, n_codes: int):
    """``(rows, events)``: each share row (by output code) with every event of its output (every
    row has one: the rows were selected by the events' codes). ``rows`` is ``None`` when each
    output has one event (the rows stay as they are)."""
    import numpy as np

    cnt = np.bincount(ev_code, minlength=n_codes)
    if len(cnt) == 0 or cnt.max() <= 1:
        ev_of = np.full(n_codes, -1, dtype=np.int64)
        ev_of[ev_code] = ev_index
        return None, ev_of[codes]
    # an output with several events: its rows once per event
    order = np.argsort(ev_code, kind="stable")
    start = np.cumsum(cnt) - cnt
    rc = cnt[codes]
    rows = np.repeat(np.arange(len(codes), dtype=np.int64), rc)
    off = np.arange(len(rows), dtype=np.int64) - np.repeat(np.cumsum(rc) - rc, rc)
    return rows, ev_index[order[start[codes[rows]] + off]]


def _pairs_sorted(work, holder) -> bool:
    """Whether the (work id, holder id) rows are in strictly increasing order, nulls last (the
    order of ``ORDER BY work_id ASC NULLS LAST, holder_id ASC NULLS LAST``; byte order)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    work, holder = (c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in (work, holder))
    n = len(work)
    if n < 2:
        return True
    wa, wb, ha, hb = work.slice(0, n - 1), work.slice(1), holder.slice(0, n - 1), holder.slice(1)
    a_null, b_null = pc.is_null(wa), pc.is_null(wb)
    w_lt = pc.or_(pc.fill_null(pc.less(wa, wb), False), pc.and_(pc.invert(a_null), b_null))
    w_eq = pc.or_(pc.fill_null(pc.equal(wa, wb), False), pc.and_(a_null, b_null))
    h_lt = pc.or_(pc.fill_null(pc.less(ha, hb), False), pc.and_(pc.is_valid(ha), pc.is_null(hb)))
    return bool(pc.all(pc.or_(w_lt, pc.and_(w_eq, h_lt))).as_py())


def batch_shares(con, events, run_id: str):
    """The shares of ``run_id`` for ``events``' outputs, with the columns compute_allocation can
    use instead of recomputing them: ``_ev`` (row of the event), ``_wrank`` (rank of the work id
    among the distinct works, byte order) and ``_hcode`` (a code per holder).

    Only integers cross from DuckDB for the 10^7 rows (output and (work, holder) pair codes and
    the share); rows are matched to events through a lookup array over output codes, and the
    ranks and holder codes are read off the sorted list of the pairs used (~ one per work):
    ``_wrank`` is -1 on the unattributed rows, ``_hcode`` -1 where a row has no holder. The
    string columns come back dictionary-encoded (``output_id`` over the events, ``work_id`` /
    ``holder_id`` over the pairs): the same values without materialising 10^7 strings."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    con = wrap(con)
    ev_out = events.column("output_id")
    if isinstance(ev_out, pa.ChunkedArray):
        ev_out = ev_out.combine_chunks()
    seq = con.execute("SELECT seq FROM ledger_share_runs WHERE run_id = ?", [run_id]).fetchall()
    if not seq:
        raise NotFoundError(f"attribution run {run_id!r}: not ingested; run `tribute ledger ingest-shares` first")
    _reg(con, "_evs", pa.table({"output_id": ev_out, "_ev": pa.array(np.arange(events.num_rows, dtype=np.int64))}))
    try:
        evc = con.sql("SELECT e._ev, o.output_code FROM _evs e JOIN ledger_output_ids o USING (output_id)").to_arrow_table()
        _reg(con, "_evc", evc)
        got = con.sql("SELECT output_code, pair_code, share FROM ledger_share_rows WHERE run_seq = ? AND output_code IN "
                      "(SELECT output_code FROM _evc)", params=[seq[0][0]]).to_arrow_table()
    finally:
        con.unregister("_evs")
        con.unregister("_evc")
    n_codes = int(pc.max(evc.column("output_code")).as_py() or 0) + 1 if evc.num_rows else 0
    codes = got.column("output_code").to_numpy()
    rows, ev = _event_rows(codes, evc.column("output_code").to_numpy(), evc.column("_ev").to_numpy(), n_codes)
    if rows is None:
        pair_g, share = got.column("pair_code").to_numpy(), got.column("share")
    else:
        pair_g = got.column("pair_code").to_numpy()[rows]
        share = got.column("share").take(pa.array(rows))
    del got, codes, rows
    # the pairs the rows use, sorted by (work id, holder id), nulls last
    used = np.flatnonzero(np.bincount(pair_g)) if len(pair_g) else np.zeros(0, np.int64)  # sorted, no hash set
    _reg(con, "_used", pa.table({"pair_code": pa.array(used)}))
    try:
        # pair codes are given in (work id, holder id) order within each ingest: read the pairs by
        # code (an integer sort) and sort the strings only when that order is not theirs
        pairs = con.sql("SELECT p.pair_code, p.work_id, p.holder_id FROM ledger_pair_ids p SEMI JOIN _used u "
                        "USING (pair_code)").to_arrow_table()
        pc_np = pairs.column("pair_code").to_numpy()
        if len(pc_np) > 1 and not bool((pc_np[1:] > pc_np[:-1]).all()):
            pairs = pairs.take(pa.array(np.argsort(pc_np, kind="stable")))
        if not _pairs_sorted(pairs.column("work_id"), pairs.column("holder_id")):
            pairs = con.sql("SELECT p.pair_code, p.work_id, p.holder_id FROM ledger_pair_ids p SEMI JOIN _used u "
                            "USING (pair_code) ORDER BY p.work_id ASC NULLS LAST, p.holder_id ASC NULLS LAST, "
                            "p.pair_code").to_arrow_table()
    finally:
        con.unregister("_used")
    pw = pairs.column("work_id").combine_chunks().cast(pa.string())
    ph = pairs.column("holder_id").combine_chunks().cast(pa.string())
    n_p = len(pw)
    # work rank: pairs are sorted by work id (nulls last), so a new rank starts where the id changes
    w_valid = pw.is_valid().to_numpy(zero_copy_only=False)
    if n_p > 1:
        changed = pc.not_equal(pw.slice(1), pw.slice(0, n_p - 1)).fill_null(True).to_numpy(zero_copy_only=False)
        new = np.concatenate([[True], changed])
    else:
        new = np.ones(n_p, dtype=bool)
    # per pair code: work rank (-1: no work), holder code (-1: no holder), place in the sorted list
    size = int(used[-1]) + 1 if len(used) else 0
    pcode = pairs.column("pair_code").to_numpy()
    code_t = np.int32 if n_p < (1 << 31) else np.int64  # ranks and codes < pairs: int32 halves the 10^7-row columns
    wrank_g = np.full(size, -1, dtype=code_t)
    wrank_g[pcode] = np.where(w_valid, np.cumsum(new & w_valid) - 1, -1)
    hcode_g = np.full(size, -1, dtype=code_t)
    hcode_g[pcode] = pc.dictionary_encode(ph).indices.fill_null(-1).to_numpy(zero_copy_only=False)
    place = np.zeros(size, dtype=np.int64)
    place[pcode] = np.arange(n_p, dtype=np.int64)
    # the id columns index dictionaries laid out by pair code (a null entry = a null id)
    return pa.table({
        "output_id": pa.DictionaryArray.from_arrays(pa.array(ev), ev_out),
        "work_id": pa.DictionaryArray.from_arrays(pa.array(pair_g), pw.take(pa.array(place))),
        "holder_id": pa.DictionaryArray.from_arrays(pa.array(pair_g), ph.take(pa.array(place))),
        "share": share,
        "_ev": pa.array(ev),
        "_wrank": pa.array(wrank_g[pair_g]),
        "_hcode": pa.array(hcode_g[pair_g]),
    })


def _plan_batch(con, policy: PricingPolicy, period: str, run_id: str | None, exposure) -> dict | None:
    events = con.sql(
        "SELECT event_key, output_id, amount, currency FROM ledger_events e WHERE period = ? AND NOT EXISTS "
        "(SELECT 1 FROM ledger_batch_events b WHERE b.event_key = e.event_key) ORDER BY event_key",
        params=[period]).to_arrow_table()
    if events.num_rows == 0:
        return None
    other = sorted(set(events.column("currency").to_pylist()) - {policy.currency})
    if other:
        raise ConfigError(f"period {period}: events in {', '.join(other)} but the policy's currency is "
                          f"{policy.currency}; allocate them with a policy in that currency")
    if run_id is None:
        # the latest run: one the workspace has that the ledger has not copied yet (allocate copies
        # them first, in run id order), else the ledger's latest -- the same for --dry-run
        if _table_exists(con, "attribution_shares"):
            row = con.execute("SELECT max(run_id) FROM attribution_shares WHERE run_id NOT IN "
                              "(SELECT run_id FROM ledger_share_runs)").fetchall()
            run_id = row[0][0] if row else None
        if run_id is None:
            row = con.execute("SELECT run_id FROM ledger_share_runs ORDER BY seq DESC LIMIT 1").fetchall()
            run_id = row[0][0] if row else None
    elif not con.execute("SELECT 1 FROM ledger_share_runs WHERE run_id = ?", [run_id]).fetchone() and not (
            _table_exists(con, "attribution_shares") and con.execute(
                "SELECT 1 FROM attribution_shares WHERE run_id = ? LIMIT 1", [run_id]).fetchall()):
        raise NotFoundError(f"attribution run {run_id!r}: not ingested; run `tribute ledger ingest-shares` first")
    shares = None
    if run_id is not None:
        if con.execute("SELECT 1 FROM ledger_share_runs WHERE run_id = ?", [run_id]).fetchall():
            shares = batch_shares(con, events, run_id)
        else:
            # a dry run on a workspace run not copied yet: the plain Arrow path of compute_allocation
            _reg(con, "_evo", events.select(["output_id"]))
            try:
                shares = con.sql("SELECT output_id, work_id, holder_id, share FROM attribution_shares WHERE run_id = ? "
                                 "AND output_id IN (SELECT output_id FROM _evo)", params=[run_id]).to_arrow_table()
            finally:
                con.unregister("_evo")
    prior, fee_works = _period_state(con, period)
    alloc = compute_allocation(policy, events, shares, exposure, prior_holder=prior, fee_works=fee_works)
    ehash = exposure_hash(exposure)
    bid = hashlib.sha256(json.dumps(
        [period, policy.currency, policy.policy_hash, run_id, ehash, events.column("event_key").to_pylist()]
    ).encode()).hexdigest()
    return {"batch_id": bid, "allocation": alloc, "events": events, "run_id": run_id, "exposure": exposure,
            "exposure_hash": ehash, "period": period}


def _store_batch(con, plan: dict, policy: PricingPolicy, s1: int, s2: int) -> None:
    import pyarrow as pa

    bid = plan["batch_id"]
    con.execute("INSERT INTO ledger_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [bid, plan["period"], policy.currency, policy.policy_hash, plan["run_id"], plan["exposure_hash"],
                 s1, s2, plan["events"].num_rows])
    keys = pa.table({"event_key": plan["events"].column("event_key"),
                     "batch_id": pa.array([bid] * plan["events"].num_rows, pa.string())})
    _reg(con, "_bk", keys)
    con.execute("INSERT INTO ledger_batch_events SELECT event_key, batch_id FROM _bk")
    con.unregister("_bk")
    exp = plan["exposure"]
    if exp is not None and exp.num_rows:
        agg = aggregate_exposure(exp)
        _reg(con, "_exp", agg)
        con.execute("INSERT INTO ledger_exposure SELECT ?, work_id, holder_id, weight_sum FROM _exp ORDER BY work_id",
                    [bid])
        con.unregister("_exp")
    det = plan["allocation"].detail
    _reg(con, "_det", det)
    con.execute("INSERT INTO ledger_allocations SELECT ?, pool, event_key, output_id, work_id, holder_id, account, "
                "share, weight, amount FROM _det", [bid])
    con.unregister("_det")


def now_period(kind: str = "month") -> str:
    return period_of(datetime.now(timezone.utc), kind)
