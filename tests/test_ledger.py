"""The ledger end to end on hand-made inputs: ingest, allocate, corrections, disputes, close,
verify (including tampering and lost commits), queries and golden files for the formats."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tribute.core.errors import ConflictError, InputError, NotFoundError
from tribute.core.readers import read_records
from tribute.market.catalog import import_works, works_from_records
from tribute.market.ledger import Ledger
from tribute.market.ledger_io import render_statement
from tribute.market.policy import parse_policy

GOLDEN = Path(__file__).parent / "golden" / "ledger"
UPDATE = os.environ.get("TRIBUTE_UPDATE_GOLDEN") == "1"

POLICY_TOML = """
[policy]
name = "test-policy"
currency = "EUR"
[pools]
platform_share = "0.30"
training_share = "0.40"
output_share = "0.60"
[payout]
minimum = "5.00"
[fees]
fixed_per_work = "0.25"
"""

WORKS = [
    {"id": "ruth", "holder": "Northwind Press", "title": "Ruth", "text": "ruth text"},
    {"id": "jonah", "holder": "Northwind Press", "title": "Jonah", "text": "jonah text"},
    {"id": "joel", "holder": "Harbor Lane Books", "title": "Joel", "text": "joel text"},
    {"id": "amos", "holder": "Quill & Key", "title": "Amos", "text": "amos text"},
]
OUTPUTS = [
    {"id": "out-1", "text": "a", "revenue": "12.00", "at": "2026-11-02T09:00:00Z"},
    {"id": "out-2", "text": "b", "revenue": 733, "at": "2026-11-05T10:30:00+01:00"},
    {"id": "out-3", "text": "c", "revenue": "3.01", "currency": "EUR", "at": "2026-11-20"},
    {"id": "out-4", "text": "d", "at": "2026-11-21T00:00:00Z"},
    {"id": "out-5", "text": "e", "revenue": "20.00", "at": "2026-12-01T00:00:00Z"},
]
SHARES = [
    ("out-1", "ruth", "northwind-press", 0.5, 2.0), ("out-1", "joel", "harbor-lane-books", 0.25, 1.0),
    ("out-1", None, None, 0.25, 1.0),
    ("out-2", "amos", "quill-key", 0.7, 3.5), ("out-2", "jonah", "northwind-press", 0.2, 1.0),
    ("out-2", None, None, 0.1, 0.5),
    ("out-5", "joel", "harbor-lane-books", 1.0, 4.0), ("out-5", None, None, 0.0, 0.0),
]


def shares_table(rows=SHARES, run_id="run-1"):
    return pa.table({
        "run_id": [run_id] * len(rows), "output_id": [r[0] for r in rows],
        "work_id": pa.array([r[1] for r in rows], pa.string()), "holder_id": pa.array([r[2] for r in rows], pa.string()),
        "share": [r[3] for r in rows], "score": [r[4] for r in rows],
    })


EXPOSURE = pa.table({"work_id": ["ruth", "ruth", "joel", "amos"], "doc_id": ["d1", "d2", "d3", "d4"],
                     "weight": [0.5, 1.0, 1.0, 0.5],
                     "holder_id": ["northwind-press", "northwind-press", "harbor-lane-books", "quill-key"]})


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def policy():
    return parse_policy(POLICY_TOML, "test-policy.toml")


@pytest.fixture
def setup(ws, tmp_path, policy):
    works = write_jsonl(tmp_path / "works.jsonl", WORKS)
    with ws.connect() as con:
        import_works(con, works_from_records(read_records(works)))
    outputs = write_jsonl(tmp_path / "outputs.jsonl", OUTPUTS)
    led = Ledger(ws)
    return led, outputs


@pytest.fixture
def booked(setup, policy):
    led, outputs = setup
    led.ingest_events(read_records(outputs), policy)
    led.ingest_shares(shares_table())
    led.allocate(policy, "2026-11", exposure=EXPOSURE)
    led.close_period("2026-11", policy)
    return led


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; rerun with TRIBUTE_UPDATE_GOLDEN=1 if intended"


def test_ingest_is_idempotent_and_refuses_changed_payloads(setup, policy, tmp_path):
    led, outputs = setup
    assert led.ingest_events(read_records(outputs), policy) == {"added": 4, "unchanged": 0, "skipped_no_revenue": 1}
    assert led.ingest_events(read_records(outputs), policy) == {"added": 0, "unchanged": 4, "skipped_no_revenue": 1}
    changed = [dict(OUTPUTS[0], revenue="12.01")]
    with pytest.raises(ConflictError, match="out-1.*different payload"):
        led.ingest_events(read_records(write_jsonl(tmp_path / "c.jsonl", changed)), policy)
    # an explicit event_id is the key: the same output can earn twice
    again = [dict(OUTPUTS[0], id="x", output_id="out-1", event_id="out-1-second")]
    assert led.ingest_events(read_records(write_jsonl(tmp_path / "d.jsonl", again)), policy)["added"] == 1


@pytest.mark.parametrize("row, needle", [
    ({"revenue": 12.5}, "float"),
    ({"revenue": "1.234"}, "decimal places"),
    ({"revenue": "-1"}, "negative"),
    ({"at": "yesterday"}, "ISO-8601"),
    ({"at": None}, "missing 'at'"),
    ({"currency": "USD"}, "the policy books EUR"),
])
def test_bad_events_are_refused_with_the_line(setup, policy, tmp_path, row, needle):
    led, _ = setup
    bad = write_jsonl(tmp_path / "bad.jsonl", [OUTPUTS[0], {**OUTPUTS[1], **row}])
    with pytest.raises(InputError) as e:
        led.ingest_events(read_records(bad), policy)
    assert needle in str(e.value) and "bad.jsonl:2" in str(e.value)
    assert led.balances() == []
    with led.ws.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ledger_events").fetchall()[0][0] == 0


def test_shares_ingest_is_idempotent_and_validated(setup):
    led, _ = setup
    assert led.ingest_shares(shares_table())["added"] == ["run-1"]
    assert led.ingest_shares(shares_table().take([3, 1, 0, 2, 4, 5, 6, 7]))["unchanged"] == ["run-1"]
    changed = list(SHARES)
    changed[0] = ("out-1", "ruth", "northwind-press", 0.4, 2.0)
    changed[2] = ("out-1", None, None, 0.35, 1.0)
    with pytest.raises(ConflictError, match="run-1"):
        led.ingest_shares(shares_table(changed))
    with pytest.raises(InputError, match="sum to"):
        led.ingest_shares(shares_table(SHARES[:2], run_id="run-2"))


def test_dry_run_writes_nothing_and_equals_the_real_run(setup, policy):
    led, outputs = setup
    led.ingest_events(read_records(outputs), policy)
    led.ingest_shares(shares_table())
    dry = led.allocate(policy, "2026-11", exposure=EXPOSURE, dry_run=True)
    assert led.balances() == []
    real = led.allocate(policy, "2026-11", exposure=EXPOSURE)
    assert (dry["split"], dry["distribute"]) == (real["split"], real["distribute"])
    assert real["revenue"] == 1200 + 733 + 301
    assert sum(real["split"].values()) == 0 and sum(real["distribute"].values()) == 0
    assert led.allocate(policy, "2026-11")["events"] == 0  # nothing left to allocate


def test_statement_and_exports_match_golden_files(booked, policy, tmp_path):
    st = booked.statement("Northwind Press", "2026-11", policy)
    golden("statement_northwind_2026-11.txt", render_statement(st))
    golden("statement_quill_2026-11.txt", render_statement(booked.statement("quill-key", "2026-11", policy)))
    booked.export("csv", tmp_path / "j.csv", policy)
    golden("journal.csv", (tmp_path / "j.csv").read_text(encoding="utf-8"))
    booked.export("beancount", tmp_path / "j.beancount", policy)
    golden("journal.beancount", (tmp_path / "j.beancount").read_text(encoding="utf-8"))
    booked.export("parquet", tmp_path / "j.parquet", policy)
    t = pq.read_table(tmp_path / "j.parquet")
    import csv

    rows = list(csv.DictReader((tmp_path / "j.csv").open(encoding="utf-8")))
    assert t.num_rows == len(rows)
    assert [str(x) for x in t.column("amount_minor").to_pylist()] == [r["amount_minor"] for r in rows]
    assert t.column("hash").to_pylist() == [r["hash"] for r in rows]


def test_close_pays_at_minimum_and_carries_forward(booked, policy):
    bal = {r["account"]: r["balance"] for r in booked.balances()}
    # quill-key and harbor-lane-books earned less than the 5.00 minimum: carried forward;
    # northwind-press earned more and was paid out
    assert 0 < bal["holder:quill-key"] < 500 and 0 < bal["holder:harbor-lane-books"] < 500
    assert bal["holder:northwind-press"] == 0
    assert bal["world:payouts"] == 651
    assert bal["pool:output"] == 0 and bal["pool:training"] == 0
    assert sum(bal.values()) == 0
    man = json.loads((booked.period_dir("2026-11") / "manifest.json").read_text())
    assert man["counts"]["transactions"] == 3 and man["head_seq"] == 3
    assert set(man["files"]) == {"transactions.parquet", "postings.parquet", "allocations.parquet"}
    with pytest.raises(ConflictError, match="closed"):
        booked.close_period("2026-11", policy)
    with pytest.raises(ConflictError, match="closed"):
        booked.adjust("unattributed", "holder:quill-key", "1.00", "2026-11", "late", policy)


def test_verify_passes_then_catches_tampering(booked):
    rep = booked.verify()
    assert rep["ok"], rep
    assert [c["check"] for c in rep["checks"]] == ["balanced", "chain", "head", "manifests", "transit", "recompute"]
    import duckdb

    con = duckdb.connect(str(booked.ws.db_path))
    con.execute("UPDATE ledger_postings SET amount = amount + 1 WHERE seq = 2 AND line = 1")
    con.execute("UPDATE ledger_postings SET amount = amount - 1 WHERE seq = 2 AND line = 2")
    con.close()
    rep = booked.verify()
    failed = {c["check"] for c in rep["checks"] if not c["ok"]}
    assert {"chain", "manifests", "recompute"} <= failed and "balanced" not in failed


def test_verify_catches_an_altered_allocation_input(booked):
    import duckdb

    con = duckdb.connect(str(booked.ws.db_path))
    # ledger_shares is a view over integer-coded rows (migration 0007): alter the stored rows
    row = ("UPDATE ledger_share_rows SET share = {} WHERE output_code = (SELECT output_code FROM ledger_output_ids "
           "WHERE output_id = 'out-1') AND pair_code IN (SELECT pair_code FROM ledger_pair_ids WHERE {})")
    con.execute(row.format(0.45, "work_id = 'ruth'"))
    con.execute(row.format(0.30, "work_id IS NULL"))
    assert con.execute("SELECT share FROM ledger_shares WHERE output_id = 'out-1' AND work_id = 'ruth'").fetchall() == [(0.45,)]
    con.close()
    rep = booked.verify()
    assert [c["check"] for c in rep["checks"] if not c["ok"]] == ["recompute"]


def test_verify_catches_lost_commits(setup, policy, tmp_path):
    """A database that silently lost committed transactions (as a damaged WAL can) is caught by
    the chain head kept outside it."""
    led, outputs = setup
    led.ingest_events(read_records(outputs), policy)
    led.ingest_shares(shares_table())
    led.allocate(policy, "2026-11", exposure=EXPOSURE)
    snapshot = tmp_path / "old.duckdb"
    shutil.copy(led.ws.db_path, snapshot)
    led.adjust("unattributed", "holder:quill-key", "0.10", "2026-11", "goodwill", policy)
    assert led.verify()["ok"]
    shutil.copy(snapshot, led.ws.db_path)  # the database forgets the adjustment
    rep = led.verify()
    head = next(c for c in rep["checks"] if c["check"] == "head")
    assert not rep["ok"] and not head["ok"] and "lost" in head["detail"]


def test_reversal_adjustment_and_disputes(setup, policy):
    led, outputs = setup
    led.ingest_events(read_records(outputs), policy)
    led.ingest_shares(shares_table())
    r = led.allocate(policy, "2026-11", exposure=EXPOSURE)
    bal0 = {x["account"]: x["balance"] for x in led.balances()}
    # disputes: into escrow and back
    d = led.dispute_open("Northwind Press", "1.00", "contested attribution", "2026-11", policy)
    bal = {x["account"]: x["balance"] for x in led.balances()}
    assert bal["holder:northwind-press"] == bal0["holder:northwind-press"] - 100 and bal["escrow:D0001"] == 100
    with pytest.raises(ConflictError, match="less than"):
        led.dispute_open("Northwind Press", "1000.00", "too much", "2026-11", policy)
    led.dispute_resolve(d["dispute_id"], "holder", "2026-11")
    bal = {x["account"]: x["balance"] for x in led.balances()}
    assert bal["holder:northwind-press"] == bal0["holder:northwind-press"] and bal["escrow:D0001"] == 0
    with pytest.raises(ConflictError, match="already resolved"):
        led.dispute_resolve(d["dispute_id"], "holder", "2026-11")
    # adjustment, idempotent by ref
    led.adjust("unattributed", "holder:quill-key", "0.50", "2026-11", "manual credit", policy, ref="adj-1")
    with pytest.raises(ConflictError, match="already booked"):
        led.adjust("unattributed", "holder:quill-key", "0.50", "2026-11", "manual credit", policy, ref="adj-1")
    with pytest.raises(NotFoundError):
        led.adjust("unattributed", "holder:nobody", "0.50", "2026-11", "x", policy)
    # reversing an allocation reverses both halves; the revenue account returns to zero
    done = led.reverse(r["transactions"][1], "2026-11")
    assert len(done) == 2
    bal = {x["account"]: x["balance"] for x in led.balances()}
    assert bal["world:revenue"] == 0 and bal["pool:output"] == 0
    assert bal["holder:quill-key"] == 50
    with pytest.raises(ConflictError, match="already booked"):
        led.reverse(r["transactions"][0], "2026-11")
    assert led.verify()["ok"]


def test_close_refuses_unallocated_events_and_closed_periods_refuse_events(setup, policy, tmp_path):
    led, outputs = setup
    led.ingest_events(read_records(outputs), policy)
    with pytest.raises(ConflictError, match="not allocated"):
        led.close_period("2026-11", policy)
    led.allocate(policy, "2026-11")
    led.close_period("2026-11", policy)
    late = write_jsonl(tmp_path / "late.jsonl", [{"id": "late", "text": "x", "revenue": "1.00", "at": "2026-11-30"}])
    with pytest.raises(ConflictError, match="2026-11 is closed"):
        led.ingest_events(read_records(late), policy)


def test_close_period_repairs_a_missing_export(booked, policy):
    shutil.rmtree(booked.period_dir("2026-11"))
    assert not booked.verify()["ok"]
    assert booked.close_period("2026-11", policy)["repaired_export"]
    assert booked.verify()["ok"]


def test_sql_is_read_only_without_file_access(booked, tmp_path):
    cols, rows = booked.sql("SELECT count(*) AS n FROM ledger_transactions")
    assert cols == ["n"] and rows == [(3,)]
    with pytest.raises(InputError):
        booked.sql("DELETE FROM ledger_postings")
    with pytest.raises(InputError):
        booked.sql(f"COPY ledger_postings TO '{tmp_path / 'x.csv'}'")
    assert not (tmp_path / "x.csv").exists()


def test_carried_balance_is_paid_once_it_reaches_the_minimum(booked, policy):
    before = {r["account"]: r["balance"] for r in booked.balances()}["holder:harbor-lane-books"]
    booked.allocate(policy, "2026-12", exposure=EXPOSURE)
    res = booked.close_period("2026-12", policy)
    assert res["paid"]["harbor-lane-books"] > before  # the carried 2026-11 balance is included
    st = booked.statement("harbor-lane-books", "2026-12", policy)
    assert st["opening"] == before and st["closing"] == 0
    assert booked.verify()["ok"]


def test_csv_and_parquet_events(setup, policy, tmp_path):
    led, _ = setup
    csv_file = tmp_path / "ev.csv"
    csv_file.write_text("id,text,revenue,at,event_id\nc1,x,1.50,2026-11-01T00:00:00Z,k1\nc2,y,,2026-11-01,k2\n",
                        encoding="utf-8")
    assert led.ingest_events(read_records(csv_file), policy) == {"added": 1, "unchanged": 0, "skipped_no_revenue": 1}
    pq.write_table(pa.table({"id": ["p1"], "text": ["z"], "revenue": [250], "at": ["2026-11-03T00:00:00Z"]}),
                   tmp_path / "ev.parquet")
    assert led.ingest_events(read_records(tmp_path / "ev.parquet"), policy)["added"] == 1
    with led.ws.connect(read_only=True) as con:
        assert sorted(con.execute("SELECT event_key, amount FROM ledger_events").fetchall()) == [("k1", 150), ("p1", 250)]


def test_adjust_refuses_pool_accounts_and_nonpositive_amounts(booked, policy):
    with pytest.raises(InputError, match="transit"):
        booked.adjust("pool:output", "unattributed", "1.00", "2026-12", "x", policy)
    with pytest.raises(InputError, match="positive"):
        booked.adjust("platform", "unattributed", "0", "2026-12", "x", policy)
    with pytest.raises(InputError, match="memo"):
        booked.adjust("platform", "unattributed", "1.00", "2026-12", " ", policy)


def test_workspace_attribution_shares_are_picked_up(setup, policy):
    """The attribution stage's table is copied in on allocate; --dry-run uses the same run."""
    led, outputs = setup
    led.ingest_events(read_records(outputs), policy)
    with led.ws.connect() as con:
        con.execute("SELECT 1").fetchall()  # DuckDB 2: finish the open result before register()
        con.register("_s", shares_table(run_id="ws-run"))
        con.execute("INSERT INTO attribution_shares SELECT run_id, output_id, work_id, holder_id, share, score FROM _s")
        con.unregister("_s")
    dry = led.allocate(policy, "2026-11", dry_run=True)
    real = led.allocate(policy, "2026-11")
    assert dry["run_id"] == real["run_id"] == "ws-run" and dry["distribute"] == real["distribute"]
    assert real["outputs_without_shares"] == 1  # out-3 has no shares in the run
    assert led.verify()["ok"]


def test_migration_0007_codes_existing_shares(_isolated_home, monkeypatch):
    """A workspace from before migration 0007 (shares stored as strings) upgrades: the rows move
    to integer-coded storage, `ledger_shares` reads back the same rows, and allocation finds them."""
    import tribute.market.workspace as wsmod
    from tribute.market.ledger import batch_shares, ingest_shares
    from tribute.market.workspace import Workspace

    every = wsmod.migrations()
    monkeypatch.setattr(wsmod, "migrations", lambda: [m for m in every if m.version < 7])
    w = Workspace(_isolated_home)
    w.init()
    rows = [("run-0", *r) for r in SHARES] + [("run-1", "out-1", "ruth", "northwind-press", 1.0, None)]
    with w.connect() as con:
        assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'ledger_shares'"
                           ).fetchall() == [("BASE TABLE",)]
        con.executemany("INSERT INTO ledger_shares VALUES (?, ?, ?, ?, ?, ?)", rows)
        con.execute("INSERT INTO ledger_share_runs (run_id, content_hash, n_rows, seq) VALUES "
                    "('run-0', 'x', 8, 1), ('run-1', 'y', 1, 2)")
    monkeypatch.setattr(wsmod, "migrations", lambda: every)
    with w.connect() as con:
        assert con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'ledger_shares'"
                           ).fetchall() == [("VIEW",)]
        back = con.execute("SELECT * FROM ledger_shares").fetchall()
        assert sorted(back, key=str) == sorted(rows, key=str)
        assert con.execute("SELECT count(*) FROM ledger_pair_ids").fetchall() == [(5,)]
        # an upgraded workspace keeps ingesting: an unchanged run is recognised, a new one coded on
        assert ingest_shares(con, shares_table(run_id="run-0"))["unchanged"] == ["run-0"]
        assert ingest_shares(con, shares_table(SHARES[:3], run_id="run-2"))["added"] == ["run-2"]
        ev = pa.table({"event_key": ["e1"], "output_id": ["out-1"], "amount": pa.array([100], pa.int64())})
        got = batch_shares(con, ev, "run-0")
        assert sorted(zip(got.column("work_id").to_pylist(), got.column("share").to_pylist()), key=str) == \
            sorted([(r[1], r[3]) for r in SHARES if r[0] == "out-1"], key=str)
