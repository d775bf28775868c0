"""`tribute demo` on the bundled corpus."""

from __future__ import annotations

import json

from tribute.cli.demo import build_training_corpus, run_demo


def test_demo_builds_a_workspace_with_the_works(invoke, tmp_path):
    ws = tmp_path / "demo"
    r = invoke("demo", "--workspace", ws)
    assert r.exit_code == 0, r.output
    assert "Registered 8 works of 4 rights holders" in r.output
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
