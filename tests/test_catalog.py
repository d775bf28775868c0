"""The works catalog through the CLI: import, idempotency, conflicts, tombstones, bad input."""

from __future__ import annotations

import json

import pytest

WORKS = [
    {"id": "w1", "text": "It was a bright cold day in April.", "holder": "Acme Press", "title": "One", "licence": "CC-BY-4.0"},
    {"id": "w2", "text": "Call me Ishmael. Some years ago.", "holder": "Acme Press", "title": "Two", "opt_out": True},
    {"id": "w3", "text": "Happy families are all alike.", "holder": "Bee Books", "title": "Three"},
]


def snapshot(ws):
    """Everything a failed import must leave unchanged."""
    with ws.connect(read_only=True) as con:
        return {
            t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in ("holders", "works", "catalog_events")
        }


def test_import_list_show_holders(invoke, ws, tmp_path, write_jsonl):
    f = write_jsonl(tmp_path / "works.jsonl", WORKS)
    r = invoke("works", "import", f, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {
        "added": ["w1", "w2", "w3"], "replaced": [], "unchanged": [], "holders_added": ["Acme Press", "Bee Books"],
    }
    rows = json.loads(invoke("works", "list", "--json").output)
    assert [w["work_id"] for w in rows] == ["w1", "w2", "w3"]
    w1 = rows[0]
    assert w1["holder"] == "Acme Press" and w1["holder_id"] == "acme-press" and w1["licence"] == "CC-BY-4.0"
    assert w1["n_words"] == 8 and w1["content_hash"].startswith("sha256:")
    assert [w["opt_out"] for w in rows] == [False, True, False]
    shown = json.loads(invoke("works", "show", "w2", "--text", "--json").output)
    assert shown["text"] == WORKS[1]["text"] and shown["title"] == "Two"
    holders = json.loads(invoke("holders", "list", "--json").output)
    assert [(h["name"], h["works"]) for h in holders] == [("Acme Press", 2), ("Bee Books", 1)]
    assert [w["work_id"] for w in json.loads(invoke("works", "list", "--holder", "Bee Books", "--json").output)] == ["w3"]
    text = invoke("works", "list").output
    assert "w1" in text and "Acme Press" in text and "WORK_ID" in text


def test_reimport_is_idempotent(invoke, ws, tmp_path, write_jsonl):
    f = write_jsonl(tmp_path / "works.jsonl", WORKS)
    invoke("works", "import", f)
    before = snapshot(ws)
    r = invoke("works", "import", f, "--json")
    assert json.loads(r.output)["unchanged"] == ["w1", "w2", "w3"]
    assert snapshot(ws) == before


def test_same_id_other_content_needs_replace(invoke, ws, tmp_path, write_jsonl):
    invoke("works", "import", write_jsonl(tmp_path / "a.jsonl", WORKS))
    changed = [dict(WORKS[0], text="A different text entirely.")]
    f = write_jsonl(tmp_path / "b.jsonl", changed)
    before = snapshot(ws)
    r = invoke("works", "import", f)
    assert r.exit_code == 1
    assert "work 'w1' already exists with different content; pass --replace" in r.output
    assert snapshot(ws) == before
    r = invoke("works", "import", f, "--replace", "--json")
    assert json.loads(r.output)["replaced"] == ["w1"]
    shown = json.loads(invoke("works", "show", "w1", "--text", "--json").output)
    assert shown["text"] == "A different text entirely."
    with ws.connect(read_only=True) as con:
        events = con.execute("SELECT work_id, event FROM catalog_events ORDER BY seq").fetchall()
    assert events[-1] == ("w1", "replaced")


def test_metadata_change_is_a_conflict_too(invoke, ws, tmp_path, write_jsonl):
    invoke("works", "import", write_jsonl(tmp_path / "a.jsonl", WORKS))
    r = invoke("works", "import", write_jsonl(tmp_path / "b.jsonl", [dict(WORKS[0], title="Renamed")]))
    assert r.exit_code == 1 and "different metadata" in r.output


def test_works_add_text_files(invoke, ws, tmp_path, write_jsonl):
    a = tmp_path / "novel.txt"
    a.write_text("Once upon a time there was a text.", encoding="utf-8")
    r = invoke("works", "add", a, "--holder", "Jane Doe", "--title", "My Novel", "--licence", "CC-BY-NC-4.0", "--opt-out")
    assert r.exit_code == 0, r.output
    w = json.loads(invoke("works", "show", "novel", "--json").output)
    assert (w["holder"], w["title"], w["licence"], w["opt_out"]) == ("Jane Doe", "My Novel", "CC-BY-NC-4.0", True)
    b = tmp_path / "second.txt"
    b.write_text("Another one.", encoding="utf-8")
    r = invoke("works", "add", a, b, "--holder", "Jane Doe", "--title", "X")
    assert r.exit_code == 2 and "--title and --id apply to one file" in r.output
    r = invoke("works", "add", b, "--holder", "Jane Doe", "--id", "custom-id")
    assert r.exit_code == 0
    assert json.loads(invoke("works", "show", "custom-id", "--json").output)["title"] == "custom-id"


def test_holder_name_clash(invoke, ws, tmp_path, write_jsonl):
    invoke("works", "import", write_jsonl(tmp_path / "a.jsonl", WORKS))
    r = invoke("works", "import", write_jsonl(tmp_path / "b.jsonl", [dict(WORKS[0], id="w9", holder="ACME press")]))
    assert r.exit_code == 1 and "clashes with existing holder 'Acme Press'" in r.output


@pytest.mark.parametrize(
    "rows, message",
    [
        ([WORKS[0], {"id": "x", "text": "t", "title": "T"}], "missing 'holder' for work 'x'"),
        ([WORKS[0], {"id": "x", "text": "t", "holder": "H"}], "missing 'title' for work 'x'"),
        ([WORKS[0], dict(WORKS[1], opt_out="maybe")], "'opt_out' must be true or false"),
        ([WORKS[0], dict(WORKS[1], id="w1")], "duplicate id 'w1'"),
        ([WORKS[0], dict(WORKS[1], text="  ")], "empty text for id 'w2'"),
    ],
)
def test_bad_import_changes_nothing(invoke, ws, tmp_path, write_jsonl, rows, message):
    invoke("works", "import", write_jsonl(tmp_path / "seed.jsonl", [WORKS[2]]))
    before = snapshot(ws)
    r = invoke("works", "import", write_jsonl(tmp_path / "bad.jsonl", rows))
    assert r.exit_code == 1
    assert message in r.output
    assert r.output.count("\n") == 1 and r.output.startswith("Error: ")
    assert snapshot(ws) == before


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.jsonl", b'{"id": "a", "text": "t", "holder": "H", "title": "T"}\n{oops\n', "bad.jsonl:2: invalid JSON"),
        ("bad.csv", b"id,text,holder,title\na,caf\xe9,H,T\n", "bad.csv:2: not valid UTF-8"),
        ("bad.csv", b"id,text,holder,title\n,t,H,T\n", "bad.csv:2: missing 'id'"),
    ],
)
def test_bad_files_change_nothing(invoke, ws, tmp_path, write_jsonl, name, content, message):
    p = tmp_path / name
    p.write_bytes(content)
    before = snapshot(ws)
    r = invoke("works", "import", p)
    assert r.exit_code == 1 and message in r.output
    assert snapshot(ws) == before


def test_empty_folder_and_folder_import(invoke, ws, tmp_path, write_jsonl):
    d = tmp_path / "texts"
    d.mkdir()
    r = invoke("works", "import", d, "--holder", "H")
    assert r.exit_code == 1 and "folder has no .txt files" in r.output
    (d / "alpha.txt").write_text("Alpha text here.", encoding="utf-8")
    (d / "beta.txt").write_text("Beta text here.", encoding="utf-8")
    r = invoke("works", "import", d, "--json")
    assert r.exit_code == 1 and "missing 'holder' for work 'alpha'" in r.output
    r = invoke("works", "import", d, "--holder", "H", "--json")
    assert json.loads(r.output)["added"] == ["alpha", "beta"]
    assert json.loads(invoke("works", "show", "beta", "--json").output)["title"] == "beta"


def test_remove_deletes_unreferenced_and_tombstones_referenced(invoke, ws, tmp_path, write_jsonl):
    invoke("works", "import", write_jsonl(tmp_path / "a.jsonl", WORKS))
    assert invoke("works", "remove", "w3").output.strip() == "Work 'w3' deleted."
    r = invoke("works", "show", "w3")
    assert r.exit_code == 1 and "no such work" in r.output
    # Evidence pointing at w1: a table registered in work_references, as later migrations do.
    with ws.connect() as con:
        con.execute("CREATE TABLE fake_evidence (work_id VARCHAR, doc_id VARCHAR)")
        con.execute("INSERT INTO fake_evidence VALUES ('w1', 'doc-9')")
        con.execute("INSERT INTO work_references VALUES ('fake_evidence', 'work_id', 'evidence')")
    r = invoke("works", "remove", "w1", "--reason", "holder request")
    assert r.output.strip() == "Work 'w1' tombstoned."
    assert [w["work_id"] for w in json.loads(invoke("works", "list", "--json").output)] == ["w2"]
    all_rows = json.loads(invoke("works", "list", "--all", "--json").output)
    w1 = next(w for w in all_rows if w["work_id"] == "w1")
    assert w1["status"] == "tombstoned" and w1["tombstone_reason"] == "holder request"
    # Its id cannot be silently reused.
    r = invoke("works", "import", write_jsonl(tmp_path / "b.jsonl", [WORKS[0]]))
    assert r.exit_code == 1 and "was removed (tombstoned)" in r.output
    with ws.connect(read_only=True) as con:
        events = con.execute("SELECT work_id, event FROM catalog_events WHERE event <> 'added' ORDER BY seq").fetchall()
    assert events == [("w3", "deleted"), ("w1", "tombstoned")]


def test_unknown_work_remove(invoke, ws):
    r = invoke("works", "remove", "ghost")
    assert r.exit_code == 1 and "work 'ghost': no such work" in r.output


def test_catalog_hash_changes_with_content(ws, tmp_path, write_jsonl):
    from tribute.core.readers import read_records
    from tribute.market.catalog import catalog_hash, import_works, works_from_records

    f = write_jsonl(tmp_path / "a.jsonl", WORKS)
    with ws.connect() as con:
        h0 = catalog_hash(con)
        import_works(con, works_from_records(read_records(f)))
        h1 = catalog_hash(con)
        import_works(con, works_from_records(read_records(f)))
        assert catalog_hash(con) == h1
        import_works(con, works_from_records(read_records(write_jsonl(tmp_path / "b.jsonl", [dict(WORKS[0], text="new")]))), replace=True)
        assert len({h0, h1, catalog_hash(con)}) == 3
