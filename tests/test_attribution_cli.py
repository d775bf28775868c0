"""`tribute attribute ...` end to end on a tiny corpus, and the workspace storage of runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("torch")

DOCS = [
    ("d-sea", "the ship sailed over the grey sea and the sailors sang of the sea"),
    ("d-farm", "the farmer sowed barley in the field and the rain fell on the field"),
    ("d-king", "the king sat on his throne and the people bowed before the king"),
    ("d-sea2", "waves rolled on the sea while the ship carried the sailors home"),
    ("d-bird", "a small bird sang in the tree at dawn and flew over the field"),
    ("d-city", "the city gates were shut at night and the watchmen walked the walls"),
]
OUTPUTS = [
    {"id": "o1", "prompt": "the ship sailed", "text": "over the grey sea", "revenue": "0.25", "currency": "EUR"},
    {"id": "o2", "prompt": "the farmer sowed", "text": "barley in the field", "revenue": "0.10", "currency": "EUR"},
    {"id": "o3", "prompt": "the king sat", "text": "on his throne", "revenue": "1.00", "currency": "EUR"},
]


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _fake_scan(ws, rows):
    """A corpus scan with exposure rows, inserted by hand (the scanner is another module)."""
    with ws.connect() as con:
        con.execute("INSERT INTO scans (scan_id, target, source, source_sha256, kinds, config, catalog_hash, "
                    "n_docs, n_words, n_chars, n_matches, started_at) VALUES "
                    "('scan-1', 'corpus', 'train.jsonl', 'x', 'exact', '{}', 'x', 6, 1, 1, 1, now())")
        for work, doc, w, holder in rows:
            con.execute("INSERT INTO scan_exposure VALUES ('scan-1', ?, ?, ?, 1, 1, ?)", [work, doc, holder, w])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tribute.cli.attribute_cmds import train_tiny_lm

    d = tmp_path_factory.mktemp("lm")
    train = _write(d / "train.jsonl", [{"id": i, "text": t} for i, t in DOCS])
    res = train_tiny_lm(train, d / "model", steps=30, checkpoints=2, context=32, d_model=16, layers=1,
                        batch_size=8, lr=1e-2)
    return d / "model", train, res


def test_train_lm_writes_safe_checkpoints(tiny_model):
    model_dir, _, res = tiny_model
    names = sorted(p.name for p in model_dir.iterdir())
    assert names == ["ckpt-000015.safetensors", "ckpt-000030.safetensors", "config.json", "model.safetensors",
                     "tokenizer.json"]
    assert res["params"] > 0


def test_attribute_run_show_list_evaluate(ws, invoke, tiny_model, tmp_path):
    model_dir, train, _ = tiny_model
    outputs = _write(tmp_path / "outputs.jsonl", OUTPUTS)
    _fake_scan(ws, [("sea-work", "d-sea", 1.0, "sea-press"), ("sea-work", "d-sea2", 0.5, "sea-press"),
                    ("farm-work", "d-farm", 0.8, "farm-house")])
    r = invoke("attribute", "run", "--model", model_dir, "--outputs", outputs, "--train", train,
               "--method", "tracin", "--proj-dim", "0", "--projector", "none", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    run_id = res["run_id"]
    from tribute.market.attribution_store import get_run, load_scores, work_shares

    with ws.connect(read_only=True) as con:
        run = get_run(con, run_id)
        shares = work_shares(con, run_id)
        refs = con.execute("SELECT what FROM work_references WHERE table_name = 'attribution_shares'").fetchall()
    assert refs == [("evidence",)]
    assert run["n_queries"] == 3 and run["n_train"] == 6 and run["exposure_scan"] == "scan-1"
    scores, out_ids, train_ids = load_scores(run)
    assert scores.shape == (3, 6) and out_ids == ["o1", "o2", "o3"] and train_ids[0] == "d-sea"
    for o in out_ids:
        rows = [s for s in shares if s["output_id"] == o]
        assert sum(s["share"] for s in rows) == pytest.approx(1.0)
        assert sum(1 for s in rows if s["work_id"] is None) == 1
    # the stored shares are the roll-up of the stored matrix
    from tribute.attribution import rollup

    expo = pa.table({"work_id": ["sea-work", "sea-work", "farm-work"], "doc_id": ["d-sea", "d-sea2", "d-farm"],
                     "weight": [1.0, 0.5, 0.8], "holder_id": ["sea-press", "sea-press", "farm-house"]})
    again = {(x["output_id"], x["work_id"]): x["share"] for x in rollup(scores, train_ids, out_ids, expo).to_pylist()}
    assert {(s["output_id"], s["work_id"]): s["share"] for s in shares} == pytest.approx(again)
    # the sea output owes more to the sea documents than the farm output does
    sea = {s["output_id"]: s["share"] for s in shares if s["work_id"] == "sea-work"}
    assert sea.get("o1", 0) > sea.get("o2", 0)

    r = invoke("attribute", "show", run_id, "--by", "work")
    assert r.exit_code == 0 and "(unattributed)" in r.output
    r = invoke("attribute", "list", "--json")
    assert [x["run_id"] for x in json.loads(r.output)] == [run_id]
    r = invoke("attribute", "evaluate", run_id, "--subsets", "3", "--steps", "3", "--json")
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output)
    assert -1 <= ev["lds"] <= 1 and ev["n_subsets"] == 3
    with ws.connect(read_only=True) as con:
        assert get_run(con, run_id)["lds"] == pytest.approx(ev["lds"])


def test_run_refuses_without_a_corpus_scan(ws, invoke, tiny_model, tmp_path):
    model_dir, train, _ = tiny_model
    outputs = _write(tmp_path / "outputs.jsonl", OUTPUTS)
    r = invoke("attribute", "run", "--model", model_dir, "--outputs", outputs, "--train", train)
    assert r.exit_code == 1 and "tribute scan corpus" in r.output
    assert not (ws.path / "attribution").exists() or not any((ws.path / "attribution").glob("attr-*"))


def test_run_refuses_a_query_longer_than_the_context(ws, invoke, tiny_model, tmp_path):
    model_dir, train, _ = tiny_model
    _fake_scan(ws, [("sea-work", "d-sea", 1.0, "sea-press")])
    long = [{"id": "o-long", "prompt": "the sea " * 20, "text": "the sea " * 10}]
    r = invoke("attribute", "run", "--model", model_dir, "--outputs", _write(tmp_path / "o.jsonl", long),
               "--train", train)
    assert r.exit_code == 1 and "longer than the model's context" in r.output
    with ws.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM attribution_runs").fetchone()[0] == 0


def test_save_run_is_all_or_nothing(ws, tmp_path):
    from tribute.core.errors import IntegrityError
    from tribute.market.attribution_store import save_run

    bad = pa.table({"output_id": ["o"], "work_id": pa.array([None], pa.string()),
                    "holder_id": pa.array([None], pa.string()), "share": [0.5], "score": [1.0]})
    with ws.connect() as con, pytest.raises(IntegrityError, match="sum to"):
        save_run(con, tmp_path / "runs", run_id="r1", method="graddot", scores=np.ones((1, 2)), output_ids=["o"],
                 train_ids=["a", "b"], shares=bad, manifest={}, config={}, rollup_rule={})
    assert not (tmp_path / "runs" / "r1").exists()


def test_cli_shards_share_a_features_folder(ws, invoke, tiny_model, tmp_path):
    model_dir, train, _ = tiny_model
    outputs = _write(tmp_path / "outputs.jsonl", OUTPUTS)
    _fake_scan(ws, [("sea-work", "d-sea", 1.0, "sea-press")])
    feats = tmp_path / "feats"
    common = ["attribute", "run", "--model", model_dir, "--outputs", outputs, "--train", train, "--method",
              "graddot", "--proj-dim", "64", "--batch-size", "2", "--chunk", "2", "--json"]
    r = invoke(*common, "--shard", "0/2")
    assert r.exit_code == 1 and "--features" in r.output
    r0 = json.loads(invoke(*common, "--features", feats, "--shard", "0/2").output)
    assert r0["complete"] is False
    with ws.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM attribution_runs").fetchone()[0] == 0
    r1 = json.loads(invoke(*common, "--features", feats, "--shard", "1/2").output)
    assert r1["complete"] is True
    r2 = invoke(*common, "--features", feats, "--proj-dim", "32")
    assert r2.exit_code == 1 and "other settings" in r2.output


def test_run_refuses_a_scan_of_another_corpus(ws, invoke, tiny_model, tmp_path):
    model_dir, train, _ = tiny_model
    _fake_scan(ws, [("sea-work", "some-other-doc", 1.0, "sea-press")])
    r = invoke("attribute", "run", "--model", model_dir, "--outputs", _write(tmp_path / "o.jsonl", OUTPUTS),
               "--train", train, "--method", "graddot")
    assert r.exit_code == 1 and "covers none of the documents" in r.output


def test_influence_curvature_from_the_cli(ws, invoke, tiny_model, tmp_path):
    """explicit / cg on a language model use the Fisher; the exact Gauss-Newton is refused in one line."""
    model_dir, train, _ = tiny_model
    outputs = _write(tmp_path / "outputs.jsonl", OUTPUTS[:2])
    _fake_scan(ws, [("sea-work", "d-sea", 1.0, "sea-press")])
    base = ("attribute", "run", "--model", model_dir, "--outputs", outputs, "--train", train,
            "--method", "influence", "--hessian", "explicit", "--checkpoints", "last", "--params", "head")
    r = invoke(*base, "--curvature", "gn")
    assert r.exit_code == 1 and "curvature='fisher'" in r.output and len(r.output.strip().splitlines()) == 1
    r = invoke(*base, "--json")
    assert r.exit_code == 0, r.output
    from tribute.market.attribution_store import get_run

    with ws.connect(read_only=True) as con:
        run = get_run(con, json.loads(r.output)["run_id"])
    cfg = json.loads(run["config"])
    assert cfg["method"] == "influence" and cfg["hessian"] == "explicit" and cfg["curvature"] == "fisher"


def test_engine_options_with_an_in_process_method_are_refused_before_ray_starts(ws, invoke, tiny_model, tmp_path,
                                                                                  monkeypatch):
    """trak and influence run in this process: --engine ray is refused at once, without touching ray."""
    import sys

    model_dir, train, _ = tiny_model
    monkeypatch.setitem(sys.modules, "ray", None)  # importing ray would fail: it must not be tried
    outputs = _write(tmp_path / "outputs.jsonl", OUTPUTS[:1])
    r = invoke("attribute", "run", "--model", model_dir, "--outputs", outputs, "--train", train,
               "--method", "influence", "--engine", "ray")
    assert r.exit_code == 1 and "influence runs in this process: drop them" in r.output
    assert len(r.output.strip().splitlines()) == 1
