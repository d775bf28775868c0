"""`tribute demo` on the bundled corpus."""

from __future__ import annotations

import json

import pytest

from tribute.cli.demo import build_training_corpus, run_demo


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(invoke, tmp_path):
    ws = tmp_path / "demo"
    r = invoke("demo", "--workspace", ws)
    assert r.exit_code == 0, r.output
    assert "Registered 8 works of 4 rights holders" in r.output
    assert "recall of the planted copies: 30/30 = 1.00" in r.output
    assert "verify: ok" in r.output
    from tribute.market.workspace import Workspace

    with Workspace(ws).connect(read_only=True) as con:
        one = lambda sql: con.execute(sql).fetchall()[0][0]  # noqa: E731
        assert one("SELECT count(*) FROM scans WHERE target = 'corpus'") == 1
        assert one("SELECT count(*) FROM scans WHERE target = 'outputs'") == 1
        assert one("SELECT count(*) FROM attribution_runs") == 1
        # every output's shares sum to 1
        assert one("SELECT max(abs(s - 1)) FROM (SELECT sum(share) AS s FROM attribution_shares GROUP BY run_id, output_id)") < 1e-9
        assert one("SELECT count(*) FROM ledger_transactions") > 0
        assert one("SELECT count(*) FROM unlearning_certificates") == 1
        # [8c] one claim of each remedy, each carried to closed, every step recorded
        states = con.execute("SELECT c.remedy, (SELECT e.state FROM claim_events e WHERE e.claim_id = c.claim_id "
                             "ORDER BY e.seq DESC LIMIT 1), (SELECT count(*) FROM claim_events e WHERE "
                             "e.claim_id = c.claim_id) FROM claims c ORDER BY c.remedy").fetchall()
        assert [(r, s) for r, s, _ in states] == [("compensate", "closed"), ("either", "closed"), ("unlearn", "closed")]
        assert all(n == 6 for _, _, n in states)
        assert one("SELECT count(*) FROM ledger_transactions WHERE ref LIKE 'claim:%'") >= 1
    assert (ws / "models" / "demo-lm-unlearned" / "certificate.json").is_file()
    for holder in ("northwind-press", "harbor-lane-books", "cedar-literary-agency", "ashgrove-editions"):
        assert (ws / "reports" / holder / "report.html").is_file()
    page = (ws / "reports" / "northwind-press" / "report.html").read_text()
    assert "[8c] Claims" in r.output and "had verbatim spans of more than 12 words redacted" in r.output
    for heading in ("Where the works were found", "How much the works mattered", "Unlearning", "Royalties", "Claims"):
        assert heading in page
    rows = json.loads(invoke("works", "list", "--workspace", ws, "--json").output)
    assert len(rows) == 8 and {w["holder"] for w in rows} == {
        "Northwind Press", "Harbor Lane Books", "Cedar Literary Agency", "Ashgrove Editions"}
    assert next(w for w in rows if w["work_id"] == "song-of-solomon")["opt_out"] is True
    # A second run refuses to clobber it without --force.
    r = invoke("demo", "--workspace", ws)
    assert r.exit_code == 1 and "pass --force" in r.output


def test_demo_refuses_a_foreign_folder(invoke, tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "precious.txt").write_text("keep me")
    r = invoke("demo", "--workspace", d, "--force")
    assert r.exit_code == 1 and "not a tribute workspace" in r.output
    assert (d / "precious.txt").read_text() == "keep me"


def test_training_corpus_is_deterministic_and_truthful(tmp_path):
    t1 = build_training_corpus(tmp_path / "a")
    t2 = build_training_corpus(tmp_path / "b")
    assert (tmp_path / "a" / "training.jsonl").read_bytes() == (tmp_path / "b" / "training.jsonl").read_bytes()
    assert t1 == t2
    docs = {json.loads(l)["id"]: json.loads(l)["text"] for l in open(tmp_path / "a" / "training.jsonl")}
    works = {json.loads(l)["id"]: json.loads(l)["text"] for l in open(run_demo.__globals__["corpus_root"]() / "works.jsonl")}
    assert "philemon" not in {t.work_id for t in t1}
    for t in t1:
        assert t.doc_id in docs
        if t.kind == "verbatim":
            assert docs[t.doc_id] == works[t.work_id]
        if t.kind in ("excerpt", "embedded"):
            # the planted words appear verbatim, in order, in the document
            head = " ".join(docs[t.doc_id].split()[:5]) if t.kind == "excerpt" else None
            assert head is None or head in " ".join(works[t.work_id].split())
