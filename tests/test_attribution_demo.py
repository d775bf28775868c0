"""The demo stages: train the tiny LM and generate outputs, then attribute them to holders."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

pytest.importorskip("torch")


@pytest.mark.slow
def test_demo_train_and_attribute_steps(tmp_path):
    from importlib import resources

    from tribute.cli.attribute_cmds import demo_attribute_step, demo_train_step
    from tribute.cli.demo import build_training_corpus, corpus_root
    from tribute.cli.index_cmds import demo_step as index_demo_step
    from tribute.core.readers import read_records
    from tribute.market.catalog import import_works, works_from_records
    from tribute.market.workspace import Workspace

    # the demo's stages 1-4 (workspace, works, corpus, scan); test_demo.py runs the whole demo
    lines: list[str] = []
    ws = Workspace(tmp_path / "demo")
    ws.init()
    with resources.as_file(corpus_root() / "works.jsonl") as works_file:
        items = works_from_records(read_records(works_file))
    with ws.connect() as con:
        import_works(con, items)
    build_training_corpus(ws.subdir("data"))
    index_demo_step(ws, echo=lines.append)
    t = demo_train_step(ws, echo=lines.append, steps=40)
    rows = [json.loads(x) for x in (ws.path / "data" / "outputs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert t["outputs"] == len(rows) and 20 <= len(rows) <= 40
    for r in rows:
        assert {"id", "prompt", "text", "model", "revenue", "currency", "at"} <= set(r)
        assert Decimal(r["revenue"]) > 0 and r["currency"] == "EUR"
    sources = {r["prompt_source"] for r in rows}
    assert "background" in sources and "philemon" in sources and len(sources) >= 8
    assert any(r["prompt_seen_in_training"] for r in rows) and any(not r["prompt_seen_in_training"] for r in rows)
    assert sorted(p.name for p in (ws.path / "models" / "demo-lm").glob("ckpt-*.safetensors"))

    a = demo_attribute_step(ws, echo=lines.append)
    from tribute.market.attribution_store import get_run, holder_totals

    with ws.connect(read_only=True) as con:
        run = get_run(con, a["run_id"])
        totals = holder_totals(con, a["run_id"])
    assert run["n_queries"] == len(rows) and run["n_train"] == 215
    per_output: dict[str, float] = {}
    for r in totals:
        per_output[r["output_id"]] = per_output.get(r["output_id"], 0.0) + r["share"]
    assert len(per_output) == len(rows) and all(abs(v - 1) < 1e-9 for v in per_output.values())
    assert any(r["holder_id"] is not None and r["share"] > 0 for r in totals)
    assert any("[attribute]" in x for x in lines)
