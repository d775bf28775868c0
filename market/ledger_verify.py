"""`tribute ledger verify`: every check the ledger can make on itself.

Checks, each reported as ``{"check", "ok", "detail"}``:

``balanced``      every transaction's lines add up to zero per currency
``chain``         seq runs 1..n, each prev_hash is the previous hash, each hash recomputes
``head``          the chain head mirrored in ``<ws>/ledger/HEAD.json`` is in the database
                  (a database behind its head file lost committed transactions)
``manifests``     each closed period's manifest (outside the database) matches: chain head,
                  counts and sums recomputed from the database, Parquet file hashes
``transit``       the pool accounts are back to zero
``recompute``     every allocation batch recomputed from its stored inputs (events, attribution
                  run, exposure snapshot, policy) gives the same detail rows and postings
"""

from __future__ import annotations

import json
from typing import Any

from ..core.hashing import file_sha256


def _check(name: str, problems: list[str], ok_detail: str) -> dict[str, Any]:
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        return {"check": name, "ok": False, "detail": "; ".join(problems[:5]) + more}
    return {"check": name, "ok": True, "detail": ok_detail}


def run_checks(ledger, con, recompute: bool = True) -> dict[str, Any]:
    from .ledger import GENESIS, txn_hash, wrap

    con = wrap(con)

    checks = []
    # balanced
    bad = con.execute(
        "SELECT seq, currency, sum(amount)::BIGINT FROM ledger_postings GROUP BY seq, currency "
        "HAVING sum(amount) <> 0 ORDER BY seq").fetchall()
    orphan = con.execute("SELECT count(*) FROM ledger_postings p WHERE NOT EXISTS "
                         "(SELECT 1 FROM ledger_transactions t WHERE t.seq = p.seq)").fetchone()[0]
    empty = con.execute("SELECT seq FROM ledger_transactions t WHERE NOT EXISTS "
                        "(SELECT 1 FROM ledger_postings p WHERE p.seq = t.seq) ORDER BY seq").fetchall()
    n_txn = con.execute("SELECT count(*) FROM ledger_transactions").fetchone()[0]
    probs = [f"transaction {s} is off by {v} {c}" for s, c, v in bad]
    probs += [f"{orphan} postings without a transaction"] if orphan else []
    probs += [f"transaction {s} has no postings" for (s,) in empty]
    checks.append(_check("balanced", probs, f"{n_txn} transactions balance per currency"))

    # chain
    probs = []
    hashes: dict[int, str] = {}
    lines: dict[int, list] = {}
    for seq, a, c, v in con.execute(
            "SELECT seq, account, currency, amount FROM ledger_postings ORDER BY seq, line").fetchall():
        lines.setdefault(int(seq), []).append((a, c, int(v)))
    prev = GENESIS
    expect = 1
    for seq, kind, period, ref, memo, rev, prev_hash, h in con.execute(
            "SELECT seq, kind, period, ref, memo, reverses, prev_hash, hash FROM ledger_transactions ORDER BY seq"
    ).fetchall():
        if seq != expect:
            probs.append(f"transaction {expect} is missing (next is {seq})")
            expect = seq
        if prev_hash != prev:
            probs.append(f"transaction {seq}: prev_hash does not match transaction {seq - 1}")
        if txn_hash(prev_hash, seq, kind, period, ref, memo, rev, sorted(lines.get(seq, []))) != h:
            probs.append(f"transaction {seq}: content does not match its hash (altered)")
        hashes[seq] = h
        prev = h
        expect += 1
    head_db = (expect - 1, prev)
    checks.append(_check("chain", probs, f"hash chain intact, head #{head_db[0]} {head_db[1][:12]}"))

    # head file
    probs = []
    head = ledger.read_head()
    detail = "no transactions yet"
    if head is None:
        if n_txn:
            probs.append(f"{ledger.dir / 'HEAD.json'} is missing; the chain head cannot be cross-checked")
    else:
        hs, hh = int(head["seq"]), head["hash"]
        if hs > head_db[0]:
            probs.append(f"the database ends at transaction {head_db[0]} but HEAD.json records {hs}: "
                         f"{hs - head_db[0]} committed transactions were lost; restore from the period exports")
        elif hs > 0 and hashes.get(hs) != hh:
            probs.append(f"transaction {hs} hash differs from HEAD.json; the journal was rewritten")
        elif hs < head_db[0]:
            detail = f"HEAD.json at #{hs}, database at #{head_db[0]} (a crash after commit); chain continues from it"
        else:
            detail = f"HEAD.json matches #{hs}"
    checks.append(_check("head", probs, detail))

    # manifests
    checks.append(_check_manifests(ledger, con, hashes))

    # transit accounts
    bad = con.execute("SELECT account, currency, sum(amount)::BIGINT FROM ledger_postings WHERE account LIKE 'pool:%' "
                      "GROUP BY ALL HAVING sum(amount) <> 0 ORDER BY ALL").fetchall()
    checks.append(_check("transit", [f"{a} holds {v} {c}" for a, c, v in bad], "pool accounts are at zero"))

    if recompute:
        checks.append(_check_recompute(con))
    return {"ok": all(c["ok"] for c in checks), "checks": checks, "head": {"seq": head_db[0], "hash": head_db[1]}}


def _check_manifests(ledger, con, hashes: dict[int, str]) -> dict[str, Any]:
    from .ledger_io import period_figures

    probs = []
    closed = con.execute("SELECT period, head_seq, head_hash FROM ledger_periods ORDER BY period").fetchall()
    root = ledger.dir / "periods"
    on_disk = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")} if root.exists() else set()
    for period in sorted(on_disk - {p for p, _, _ in closed}):
        probs.append(f"period {period} has a manifest but is not closed in the database (lost commits)")
    for period, hs, hh in closed:
        mpath = ledger.period_dir(period) / "manifest.json"
        if not mpath.exists():
            probs.append(f"period {period}: manifest missing; rerun `tribute ledger close-period --period {period}`")
            continue
        try:
            man = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            probs.append(f"{mpath}: unreadable")
            continue
        if man.get("head_seq") != hs or man.get("head_hash") != hh:
            probs.append(f"period {period}: chain head in the database differs from its manifest")
        if hashes.get(int(man.get("head_seq", -1))) != man.get("head_hash") and man.get("head_seq", 0) > 0:
            probs.append(f"period {period}: manifest head #{man.get('head_seq')} is not in the journal")
        figs = period_figures(con, period, int(man.get("head_seq", 0)))
        for key in ("counts", "sums", "period_postings", "balances_at_head"):
            if json.loads(json.dumps(figs[key])) != man.get(key):
                probs.append(f"period {period}: {key} differ from the manifest")
        for name, digest in (man.get("files") or {}).items():
            f = mpath.parent / name
            if not f.exists() or file_sha256(f) != digest:
                probs.append(f"period {period}: export {name} missing or changed")
    return _check("manifests", probs, f"{len(closed)} closed periods match their manifests")


def _check_recompute(con) -> dict[str, Any]:
    from .ledger import _period_state, _reg
    from .ledger_alloc import compute_allocation

    probs = []
    batches = con.execute("SELECT batch_id, period, currency, policy_hash, run_id, split_txn, dist_txn "
                          "FROM ledger_batches ORDER BY split_txn").fetchall()
    from .ledger import Ledger

    for bid, period, cur, phash, run_id, s1, s2 in batches:
        try:
            policy = Ledger._stored_policy(con, phash)
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            probs.append(f"batch {bid[:12]}: {e}")
            continue
        events = con.sql(
            "SELECT e.event_key, e.output_id, e.amount, e.currency FROM ledger_events e JOIN ledger_batch_events b "
            "USING (event_key) WHERE b.batch_id = ? ORDER BY e.event_key", params=[bid]).to_arrow_table()
        shares = None
        if run_id is not None:
            shares = con.sql(
                "SELECT s.output_id, s.work_id, s.holder_id, s.share FROM ledger_shares s WHERE s.run_id = ? AND "
                "s.output_id IN (SELECT e.output_id FROM ledger_events e JOIN ledger_batch_events b USING (event_key) "
                "WHERE b.batch_id = ?)", params=[run_id, bid]).to_arrow_table()
        exposure = con.sql("SELECT work_id, holder_id, weight FROM ledger_exposure WHERE batch_id = ?",
                               params=[bid]).to_arrow_table()
        prior, fees = _period_state(con, period, before_split=s1)
        try:
            alloc = compute_allocation(policy, events, shares, exposure if exposure.num_rows else None,
                                       prior_holder=prior, fee_works=fees)
        except Exception as e:  # noqa: BLE001
            probs.append(f"batch {bid[:12]}: cannot recompute ({e})")
            continue
        for seq, want in ((s1, alloc.split), (s2, alloc.distribute)):
            got = {a: int(v) for a, c, v in con.execute(
                "SELECT account, currency, amount FROM ledger_postings WHERE seq = ?", [seq]).fetchall()}
            if got != {a: v for a, v in want.items()}:
                diff = sorted(set(got.items()) ^ set(want.items()))[:3]
                probs.append(f"transaction {seq} (batch {bid[:12]}): postings differ from a recomputation: {diff}")
        _reg(con, "_re", alloc.detail)
        try:
            diff = con.execute(
                "SELECT count(*) FROM ((SELECT pool, event_key, work_id, account, amount FROM _re "
                " EXCEPT ALL SELECT pool, event_key, work_id, account, amount FROM ledger_allocations WHERE batch_id = ?) "
                " UNION ALL (SELECT pool, event_key, work_id, account, amount FROM ledger_allocations WHERE batch_id = ? "
                " EXCEPT ALL SELECT pool, event_key, work_id, account, amount FROM _re))", [bid, bid]).fetchall()[0][0]
        finally:
            con.unregister("_re")
        if diff:
            probs.append(f"batch {bid[:12]}: {diff} allocation rows differ from a recomputation")
    return _check("recompute", probs, f"{len(batches)} allocation batches recompute exactly")
