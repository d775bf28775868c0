"""`tribute index ...` / `tribute scan ...` end to end: evidence rows, Parquet, exposure, staleness."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest


WORDS = ("river stone lantern harvest copper meadow falcon ember willow thunder orchard quill marble saddle "
         "beacon cedar glacier honey ivory jasper kettle lagoon mantle nectar").split()


def _text(seed: int, n: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randrange(40)) for _ in range(n))


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def catalog(tmp_path, invoke, ws):
    works = [
        {"id": "alpha", "holder": "North Press", "title": "Alpha", "text": _text(1, 400)},
        {"id": "beta", "holder": "North Press", "title": "Beta", "text": _text(2, 400)},
        {"id": "gamma", "holder": "South Books", "title": "Gamma", "text": _text(3, 400)},
    ]
    r = invoke("works", "import", _jsonl(tmp_path / "works.jsonl", works))
    assert r.exit_code == 0, r.output
    return {w["id"]: w["text"] for w in works}


def _corpus(tmp_path, works):
    a, g = works["alpha"].split(), works["gamma"].split()
    docs = [
        {"id": "d-copy", "text": works["beta"]},
        {"id": "d-embed", "text": _text(10, 100) + " " + " ".join(a[100:200]) + " " + _text(11, 100)},
        {"id": "d-two", "text": " ".join(a[0:50]) + " " + " ".join(g[0:50])},
        {"id": "d-none", "text": _text(12, 300)},
        {"id": "d-short", "text": "one two"},
    ]
    return _jsonl(tmp_path / "corpus.jsonl", docs)


def test_build_scan_and_exposure(tmp_path, invoke, ws, catalog):
    from tribute.market.evidence import exposure

    r = invoke("index", "build", "--json")
    assert r.exit_code == 0, r.output
    b = json.loads(r.output)
    assert b["works"] == 3 and b["kinds"] == ["exact", "minhash"]
    r = invoke("scan", "corpus", _corpus(tmp_path, catalog), "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["docs"] == 5 and s["target"] == "corpus"
    per_work = {w["work_id"]: w for w in s["per_work"]}
    assert set(per_work) == {"alpha", "beta", "gamma"}
    assert per_work["alpha"]["docs"] == 2 and per_work["beta"]["exact"] == 1.0
    assert {h["holder"]: h["works"] for h in s["per_holder"]} == {"North Press": 2, "South Books": 1}

    with ws.connect(read_only=True) as con:
        t = exposure(con)
    assert t.schema.names == ["work_id", "doc_id", "weight", "holder_id"]
    assert [str(f.type) for f in t.schema] == ["string", "string", "double", "string"]
    rows = {(x["work_id"], x["doc_id"]): x for x in t.to_pylist()}
    assert set(rows) == {("beta", "d-copy"), ("alpha", "d-embed"), ("alpha", "d-two"), ("gamma", "d-two")}
    assert rows[("beta", "d-copy")]["weight"] == 1.0
    assert rows[("alpha", "d-embed")]["weight"] == pytest.approx(100 / 300)
    assert rows[("alpha", "d-two")]["weight"] == pytest.approx(0.5)
    assert rows[("gamma", "d-two")]["holder_id"] == "south-books"
    assert all(0 < x["weight"] <= 1 for x in rows.values())

    # every match is in the Parquet file too, with character spans into the document
    table = pq.read_table(s["parquet"]).to_pylist()
    assert len(table) == s["matches"]
    docs = {d["id"]: d["text"] for d in map(json.loads, (tmp_path / "corpus.jsonl").read_text().splitlines())}
    m = next(x for x in table if x["doc_id"] == "d-embed" and x["kind"] == "exact")
    (sp,) = m["spans"]
    assert docs["d-embed"][sp["doc_start"]:sp["doc_end"]] == " ".join(catalog["alpha"].split()[100:200])
    assert catalog["alpha"][sp["work_start"]:sp["work_end"]] == " ".join(catalog["alpha"].split()[100:200])
    assert (Path(s["parquet"]).parent / "manifest.json").is_file()

    r = invoke("scan", "list", "--json")
    assert [x["scan_id"] for x in json.loads(r.output)] == [s["scan_id"]]
    r = invoke("scan", "show")
    assert r.exit_code == 0 and "North Press" in r.output


def test_exposure_is_empty_without_a_corpus_scan(ws, tmp_path, invoke, catalog):
    from tribute.market.evidence import exposure

    with ws.connect(read_only=True) as con:
        t = exposure(con)
    assert t.num_rows == 0 and t.schema.names == ["work_id", "doc_id", "weight", "holder_id"]
    invoke("index", "build")
    out = _jsonl(tmp_path / "outputs.jsonl", [{"id": "o1", "text": " ".join(catalog["gamma"].split()[5:40]),
                                               "prompt": "write"}])
    r = invoke("scan", "outputs", out, "--json")
    assert r.exit_code == 0, r.output
    sid = json.loads(r.output)["scan_id"]
    with ws.connect(read_only=True) as con:
        assert exposure(con).num_rows == 0          # outputs are not training exposure
        from tribute.core.errors import InputError
        with pytest.raises(InputError, match="not a training corpus"):
            exposure(con, sid)


def test_stale_index_is_refused_then_allowed_and_marked(tmp_path, invoke, ws, catalog):
    invoke("index", "build")
    r = invoke("works", "import", _jsonl(tmp_path / "more.jsonl", [
        {"id": "delta", "holder": "South Books", "title": "Delta", "text": _text(4, 200)}]))
    assert r.exit_code == 0
    r = invoke("index", "status", "--json")
    assert json.loads(r.output)["stale"] is True
    corpus = _corpus(tmp_path, catalog)
    r = invoke("scan", "corpus", corpus)
    assert r.exit_code == 1 and "stale" in r.output and "tribute index build" in r.output
    r = invoke("scan", "corpus", corpus, "--allow-stale", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["stale"] is True
    invoke("index", "build")
    assert json.loads(invoke("index", "status", "--json").output)["stale"] is False


def test_failed_scan_leaves_no_rows_and_no_files(tmp_path, invoke, ws, catalog):
    invoke("index", "build")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "ok", "text": catalog["alpha"]}) + "\n" + "{broken\n", encoding="utf-8")
    r = invoke("scan", "corpus", bad)
    assert r.exit_code == 1 and "bad.jsonl:2" in r.output and "invalid JSON" in r.output
    nonutf = tmp_path / "latin1.jsonl"
    nonutf.write_bytes(json.dumps({"id": "x", "text": "caf"}).encode()[:-2] + b"\xe9\"}\n")
    r = invoke("scan", "corpus", nonutf)
    assert r.exit_code == 1 and "UTF-8" in r.output
    with ws.connect(read_only=True) as con:
        for table in ("scans", "scan_matches", "scan_exposure"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    for folder in ("scans", "stages"):
        assert not (ws.path / folder).exists() or not any((ws.path / folder).rglob("*.*")), folder


def test_errors_without_index_or_with_missing_kind(tmp_path, invoke, ws, catalog):
    corpus = _corpus(tmp_path, catalog)
    r = invoke("scan", "corpus", corpus)
    assert r.exit_code == 1 and "tribute index build" in r.output
    invoke("index", "build", "--kinds", "exact")
    r = invoke("scan", "corpus", corpus, "--kinds", "semantic")
    assert r.exit_code == 1 and "no semantic index" in r.output
    r = invoke("index", "build", "--kinds", "exact,fuzzy")
    assert r.exit_code == 1 and "unknown index kind" in r.output
    r = invoke("scan", "corpus", tmp_path / "missing.jsonl")
    assert r.exit_code == 1 and "no such file" in r.output


def test_removing_a_work_with_evidence_tombstones_it(tmp_path, invoke, ws, catalog):
    invoke("index", "build")
    invoke("scan", "corpus", _corpus(tmp_path, catalog))
    r = invoke("works", "remove", "beta")
    assert r.exit_code == 0, r.output
    with ws.connect(read_only=True) as con:
        assert con.execute("SELECT status FROM works WHERE work_id = 'beta'").fetchone()[0] == "tombstoned"


def test_demo_step_and_outputs(tmp_path, ws):
    import importlib.resources as resources

    from tribute.cli.demo import build_training_corpus, corpus_root
    from tribute.cli.index_cmds import demo_scan_outputs, demo_step
    from tribute.core.readers import read_records
    from tribute.market.catalog import import_works, works_from_records

    with resources.as_file(corpus_root() / "works.jsonl") as f:
        items = works_from_records(read_records(f))
    with ws.connect() as con:
        import_works(con, items)
    build_training_corpus(ws.subdir("data"))
    lines: list[str] = []
    s = demo_step(ws, lines.append)
    assert s["recall"] == 1.0 and s["found"] == s["planted"] == 30
    assert any("recall of the planted copies: 30/30" in x for x in lines)
    ruth = next(i for i in items if i.id == "ruth").text
    outputs = _jsonl(tmp_path / "outputs.jsonl", [
        {"id": "out-1", "prompt": "Tell me about Ruth", "text": "Sure. " + " ".join(ruth.split()[200:260])},
        {"id": "out-2", "prompt": "Weather?", "text": "It will be sunny with a light breeze in the afternoon."},
    ])
    lines.clear()
    o = demo_scan_outputs(ws, outputs, lines.append)
    assert o["outputs"] == 2 and o["reproducing"] == 1 and ("out-1", "ruth") in o["pairs"]
    assert any(x.strip().startswith("out-1: ruth") for x in lines)


def test_every_command_has_docs_and_help(invoke):
    doc = (Path(__file__).resolve().parents[1] / "docs" / "indexes.md").read_text(encoding="utf-8")
    for path in (("index", "build"), ("index", "status"), ("scan", "corpus"), ("scan", "outputs"),
                 ("scan", "list"), ("scan", "show")):
        assert re.search(rf"^## `tribute {' '.join(path)}`$", doc, re.M), path
        r = invoke(*path, "--help")
        assert r.exit_code == 0 and len(r.output) > 100
