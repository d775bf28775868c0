"""Crash and concurrency: a writer killed with SIGKILL while posting leaves no partial
transaction, and a second writer gets a clear error (or waits), never a corrupted ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest

from tribute.core.errors import WorkspaceLockedError
from tribute.core.readers import read_records
from tribute.market.catalog import import_works, works_from_records
from tribute.market.ledger import Ledger
from tribute.market.policy import parse_policy

POLICY_TOML = '[policy]\nname = "c"\ncurrency = "EUR"\n'
POLICY = parse_policy(POLICY_TOML)
PERIODS = [f"2026-{m:02d}" for m in range(1, 13)]


def _prepare(ws, tmp_path, per_period=300):
    works = tmp_path / "works.jsonl"
    works.write_text("".join(json.dumps({"id": f"w{i}", "holder": f"Holder {i % 7}", "title": "t", "text": "x"}) + "\n"
                             for i in range(40)), encoding="utf-8")
    with ws.connect() as con:
        import_works(con, works_from_records(read_records(works)))
    ev = tmp_path / "events.jsonl"
    with ev.open("w", encoding="utf-8") as fh:
        for p in PERIODS:
            for i in range(per_period):
                fh.write(json.dumps({"id": f"{p}-{i}", "output_id": f"o{i % 50}", "text": "x",
                                     "revenue": 100 + i, "at": f"{p}-02T00:00:00Z"}) + "\n")
    led = Ledger(ws)
    led.ingest_events(read_records(ev), POLICY)
    rows = [(f"o{o}", f"w{(o + j) % 40}", f"holder-{(o + j) % 40 % 7}", 0.2) for o in range(50) for j in range(4)]
    rows += [(f"o{o}", None, None, 0.2) for o in range(50)]
    led.ingest_shares(pa.table({"output_id": [r[0] for r in rows], "work_id": pa.array([r[1] for r in rows], pa.string()),
                                "holder_id": pa.array([r[2] for r in rows], pa.string()),
                                "share": [r[3] for r in rows]}), run_id="run")
    return led


WRITER = textwrap.dedent("""
    import sys
    from tribute.market.workspace import Workspace
    from tribute.market.ledger import Ledger
    from tribute.market.policy import parse_policy
    led = Ledger(Workspace(sys.argv[1]))
    pol = parse_policy(sys.argv[2])
    print("ready", flush=True)
    for p in sys.argv[3:]:
        led.allocate(pol, p)
        led.adjust("platform", "unattributed", 1, p, "tick", pol)
""")


def _batches_whole(ws):
    with ws.connect(read_only=True) as con:
        n_txn = con.execute("SELECT count(*) FROM ledger_transactions").fetchall()[0][0]
        half = con.execute("SELECT count(*) FROM ledger_batches b WHERE NOT EXISTS (SELECT 1 FROM "
                           "ledger_transactions t WHERE t.seq = b.dist_txn)").fetchall()[0][0]
        unbatched = con.execute("SELECT count(*) FROM ledger_transactions t WHERE kind IN ('split', 'distribute') "
                                "AND NOT EXISTS (SELECT 1 FROM ledger_batches b WHERE t.seq IN (b.split_txn, "
                                "b.dist_txn))").fetchall()[0][0]
    return n_txn, half, unbatched


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.8, 1.6, 2.4])
def test_sigkill_during_posting_leaves_no_partial_transaction(ws, tmp_path, delay):
    led = _prepare(ws, tmp_path)
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(ws.path), POLICY_TOML, *PERIODS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_txn, half, unbatched = _batches_whole(ws)
    print(f"killed after {n_txn} of {3 * len(PERIODS)} transactions")
    assert half == 0 and unbatched == 0
    rep = led.verify()
    assert rep["ok"], rep
    # the ledger carries on: the rest of the periods allocate and still verify
    for p in PERIODS:
        led.allocate(POLICY, p)
    assert led.verify()["ok"]
    with ws.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ledger_events e WHERE NOT EXISTS (SELECT 1 FROM ledger_batch_events b "
                           "WHERE b.event_key = e.event_key)").fetchall()[0][0] == 0


HOLDER = textwrap.dedent("""
    import sys, time
    from tribute.market.workspace import Workspace
    ws = Workspace(sys.argv[1])
    with ws.connect() as con:
        con.execute("SELECT 1").fetchall()
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


@pytest.mark.slow
def test_second_writer_gets_a_clear_error_or_waits(ws, tmp_path, monkeypatch):
    led = _prepare(ws, tmp_path, per_period=5)
    led.allocate(POLICY, "2026-01")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws.path), "2.5"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"locked"
        monkeypatch.setenv("TRIBUTE_LOCK_TIMEOUT", "0.3")
        with pytest.raises(WorkspaceLockedError, match="locked by .*PID"):
            led.allocate(POLICY, "2026-02")
        monkeypatch.setenv("TRIBUTE_LOCK_TIMEOUT", "20")
        res = led.allocate(POLICY, "2026-02")  # waits for the other writer, then posts
        assert res["events"] == 5
    finally:
        proc.wait(timeout=30)
    assert led.verify()["ok"]
