"""`tribute ledger ...`, `tribute quote` and the demo step through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tribute.cli.ledger_cmds import EXAMPLE_POLICY, demo_step

WORKS = [
    {"id": "ruth", "holder": "Northwind Press", "title": "Ruth", "text": "ruth " * 50},
    {"id": "joel", "holder": "Harbor Lane Books", "title": "Joel", "text": "joel " * 80},
]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _setup(invoke, tmp_path):
    assert invoke("init").exit_code == 0
    assert invoke("works", "import", _jsonl(tmp_path / "works.jsonl", WORKS)).exit_code == 0
    outs = _jsonl(tmp_path / "outputs.jsonl", [
        {"id": f"o{i}", "text": "t", "revenue": f"{10 + i}.00", "at": "2026-11-0%dT00:00:00Z" % (1 + i % 9)}
        for i in range(6)])
    shares = tmp_path / "shares.parquet"
    rows = [(f"o{i}", w, h, s) for i in range(6) for w, h, s in
            (("ruth", "northwind-press", 0.6), ("joel", "harbor-lane-books", 0.3), (None, None, 0.1))]
    pq.write_table(pa.table({"output_id": [r[0] for r in rows], "work_id": pa.array([r[1] for r in rows], pa.string()),
                             "holder_id": pa.array([r[2] for r in rows], pa.string()),
                             "share": [r[3] for r in rows], "score": [1.0] * len(rows)}), shares)
    exposure = tmp_path / "exposure.csv"
    exposure.write_text("work_id,doc_id,weight,holder_id\nruth,d1,1.0,northwind-press\njoel,d2,0.5,harbor-lane-books\n"
                        "joel,d3,0.5,harbor-lane-books\n", encoding="utf-8")
    return outs, shares, exposure


def test_cli_flow(invoke, tmp_path):
    outs, shares, exposure = _setup(invoke, tmp_path)
    pol = str(EXAMPLE_POLICY)
    r = invoke("ledger", "ingest", outs, "--policy", pol)
    assert r.exit_code == 0 and "Ingested 6 new revenue events" in r.output
    r = invoke("ledger", "ingest-shares", shares, "--run-id", "run-a")
    assert r.exit_code == 0 and "run-a" in r.output
    r = invoke("ledger", "allocate", "--period", "2026-11", "--exposure", exposure, "--dry-run")
    assert r.exit_code == 0 and "DRY RUN" in r.output and "holder:northwind-press" in r.output
    assert "no transactions" not in invoke("ledger", "balance").output or True
    assert invoke("ledger", "balance", "--json").output.strip() == "[]"
    r = invoke("ledger", "allocate", "--period", "2026-11", "--exposure", exposure)
    assert r.exit_code == 0 and "Posted transactions #1, #2" in r.output
    r = invoke("ledger", "close-period", "--period", "2026-11")
    assert r.exit_code == 0 and "Closed 2026-11" in r.output
    r = invoke("ledger", "verify")
    assert r.exit_code == 0 and r.output.count("ok  ") == 6
    r = invoke("ledger", "statement", "--holder", "Northwind Press", "--period", "2026-11")
    assert r.exit_code == 0 and "out-" not in r.output and "ruth" in r.output
    r = invoke("ledger", "balance", "--account", "holder:*")
    assert r.exit_code == 0 and "holder:harbor-lane-books" in r.output
    r = invoke("ledger", "export", "--format", "beancount", "--out", tmp_path / "x.beancount")
    assert r.exit_code == 0 and (tmp_path / "x.beancount").read_text().count(" * ") == 3
    r = invoke("ledger", "sql", "SELECT kind FROM ledger_transactions ORDER BY seq", "--json")
    assert [x["kind"] for x in json.loads(r.output)] == ["split", "distribute", "payout"]
    r = invoke("quote", "--holder", "Harbor Lane Books", "--exposure", exposure)
    assert r.exit_code == 0 and "cost model" in r.output and "joel" in r.output
    q = json.loads(invoke("quote", "--works", "ruth,joel", "--json").output)
    assert q["compensation_basis"] == "booked" and len(q["works"]) == 2
    assert all(isinstance(w["compensation"], int) for w in q["works"])


def test_cli_errors_are_one_line(invoke, tmp_path):
    outs, shares, _ = _setup(invoke, tmp_path)
    r = invoke("ledger", "ingest", outs)
    assert r.exit_code == 1 and "pass --policy" in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[policy]\nname = "x"\ncurrency = "EUR"\n[payout]\nminimum = 5.5\n')
    r = invoke("ledger", "ingest", outs, "--policy", bad)
    assert r.exit_code == 1 and r.output.startswith("Error: ") and "float" in r.output
    assert len(r.output.strip().splitlines()) == 1
    invoke("ledger", "ingest", outs, "--policy", str(EXAMPLE_POLICY))
    r = invoke("ledger", "close-period", "--period", "2026-11")
    assert r.exit_code == 1 and "not allocated" in r.output
    r = invoke("ledger", "allocate", "--period", "2026-13")
    assert r.exit_code == 1 and "not a month period" in r.output


def test_quote_uses_measured_certificates_when_present(invoke, tmp_path, ws):
    outs, _, _ = _setup(invoke, tmp_path)
    invoke("ledger", "ingest", outs, "--policy", str(EXAMPLE_POLICY))
    with ws.connect() as con:
        con.execute("INSERT INTO unlearning_certificates (run_id, method, model_in, model_out, cost_seconds, "
                    "retain_ppl_before, retain_ppl_after, targets_met, certificate, path) VALUES "
                    "('u1', 'ga', 'm', 'm2', 14400, 10.0, 10.5, true, '{}', 'c.json')")
        con.execute("INSERT INTO unlearning_run_works VALUES ('u1', 'ruth'), ('u1', 'jonah')")
    q = json.loads(invoke("quote", "--works", "ruth,joel", "--policy", str(EXAMPLE_POLICY), "--json").output)
    by = {w["work_id"]: w for w in q["works"]}
    # 4 h shared by two works = 2 h x 2.50; utility: retain perplexity +5 % of projected revenue
    assert by["ruth"]["cost_source"] == "measured (unlearning run u1)" and by["ruth"]["unlearning_compute"] == 500
    assert q["compensation_basis"] == "dry-run of unallocated revenue"
    assert by["ruth"]["unlearning_utility"] > by["joel"]["unlearning_utility"] > 0
    assert by["joel"]["cost_source"].startswith("cost model")


def test_demo_step(ws, tmp_path, invoke):
    _setup(invoke, tmp_path)
    data = ws.subdir("data")
    _jsonl(data / "outputs.jsonl", [
        {"id": f"d{i}", "text": "t", "revenue": f"{5 * i + 3}.50", "at": f"2026-{10 + i % 2}-15T12:00:00Z"}
        for i in range(8)] + [{"id": "free", "text": "no revenue"}])
    lines = []
    summary = demo_step(ws, lines.append)
    assert summary["verified"] and summary["events"] == 8 and summary["periods"] == ["2026-10", "2026-11"]
    assert summary["revenue"] == sum((5 * i + 3) * 100 + 50 for i in range(8))
    assert any("verify: ok" in x for x in lines)
    assert any("Statement" in x for x in lines) or summary["statement_holder"] is None
