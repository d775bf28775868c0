"""`tribute scan corpus` on the sharded stage: the same evidence on every engine, worker count and slicing."""

from __future__ import annotations

import json

import pytest

from tribute.cli.demo import build_training_corpus, corpus_root


@pytest.fixture
def demo_ws(ws, invoke, tmp_path):
    from importlib import resources

    with resources.as_file(corpus_root() / "works.jsonl") as works:
        assert invoke("works", "import", works).exit_code == 0
    build_training_corpus(tmp_path / "data")
    assert invoke("index", "build", "--kinds", "exact,minhash").exit_code == 0
    return tmp_path / "data" / "training.jsonl"


def evidence(ws) -> list[tuple]:
    """Every match and exposure row of the latest corpus scan, without the scan id."""
    with ws.connect(read_only=True) as con:
        sid = con.execute("SELECT scan_id FROM scans ORDER BY finished_at DESC LIMIT 1").fetchall()[0][0]
        m = con.execute("SELECT doc_id, work_id, kind, score, matched_words, spans FROM scan_matches "
                        "WHERE scan_id = ? ORDER BY ALL", [sid]).fetchall()
        e = con.execute("SELECT doc_id, work_id, covered_words, weight FROM scan_exposure WHERE scan_id = ? "
                        "ORDER BY ALL", [sid]).fetchall()
    return [json.dumps(r, sort_keys=True, default=str) for r in m + e]


def test_engines_and_slices_give_identical_evidence(ws, invoke, demo_ws):
    assert invoke("scan", "corpus", demo_ws, "--no-progress").exit_code == 0
    reference = evidence(ws)
    assert len(reference) > 50
    r = invoke("scan", "corpus", demo_ws, "--shard-size", "20", "--workers", "2", "--no-progress")
    assert r.exit_code == 0, r.output
    assert evidence(ws) == reference
    # Three Slurm-style slices store nothing; the final run reads their shards and stores the evidence.
    for i in range(3):
        r = invoke("scan", "corpus", demo_ws, "--shard-size", "20", "--shard", f"{i}/3")
        assert r.exit_code == 0 and f"Slice {i}/3" in r.output, r.output
    assert "All shards are finished" in r.output
    with ws.connect(read_only=True) as con:
        n_scans = con.execute("SELECT count(*) FROM scans").fetchall()[0][0]
    r = invoke("scan", "corpus", demo_ws, "--shard-size", "20", "--json")
    assert r.exit_code == 0
    with ws.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM scans").fetchall()[0][0] == n_scans + 1
    assert evidence(ws) == reference
    assert not any((ws.path / "stages").iterdir())  # spent shard files are removed


@pytest.mark.slow
def test_ray_engine_gives_identical_evidence(ws, invoke, demo_ws):
    pytest.importorskip("ray")
    assert invoke("scan", "corpus", demo_ws, "--no-progress").exit_code == 0
    reference = evidence(ws)
    r = invoke("scan", "corpus", demo_ws, "--engine", "ray", "--workers", "2", "--shard-size", "40", "--no-progress")
    assert r.exit_code == 0, r.output
    assert evidence(ws) == reference


def test_engine_flags_are_refused_for_outputs(ws, invoke, demo_ws, tmp_path, write_jsonl):
    outs = write_jsonl(tmp_path / "o.jsonl", [{"id": "o1", "text": "hello there"}])
    r = invoke("scan", "outputs", outs, "--workers", "2")
    assert r.exit_code == 2  # scan outputs has no engine options
