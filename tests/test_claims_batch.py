"""Batched retraining end to end on a SISA model tribute trains itself, the certificate checks
of `claims close-batch`, and the claims section of the holder report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

POLICY = Path(__file__).resolve().parents[1] / "cli" / "demo_corpus" / "policy.toml"
WORK = ("Naomi said to her two daughters in law go return each of you to her mother's house and the Lord deal "
        "kindly with you as ye have dealt with the dead and with me the Lord grant you that ye may find rest "
        "each of you in the house of her husband")
FILLER = ("harvest barley field gleaning reapers sheaves threshing floor winnow grain bread water jar cloak "
          "sandal gate elders city wall road journey").split()


@pytest.fixture
def sisa_ws(ws, invoke, tmp_path, write_jsonl):
    import random

    import torch

    from tribute.attribution.lm import LMConfig, WordTokenizer
    from tribute.attribution.unlearn import SISAConfig, sisa_train

    torch.set_num_threads(1)
    rng = random.Random(3)
    docs = [(f"bg-{i:02d}", " ".join(rng.choice(FILLER) for _ in range(30))) for i in range(16)]
    docs += [(f"copy-{k}", WORK) for k in range(4)]
    train = write_jsonl(tmp_path / "train.jsonl", [{"id": d, "text": t} for d, t in docs])
    works = [{"id": "naomi", "holder": "Northwind Press", "title": "Naomi", "text": WORK}]
    assert invoke("works", "import", write_jsonl(tmp_path / "w.jsonl", works)).exit_code == 0
    assert invoke("index", "build", "--kinds", "exact").exit_code == 0
    assert invoke("scan", "corpus", train, "--kinds", "exact").exit_code == 0
    tok = WordTokenizer.fit([t for _, t in docs])
    lmc = LMConfig(vocab_size=len(tok), max_len=32, d_model=16, n_head=2, d_ff=32)
    sisa_train(docs, tok, lmc, SISAConfig(shards=4, slices=2, steps_per_slice=6, batch_size=4), tmp_path / "sisa")
    return {"train": train, "sisa": tmp_path / "sisa", "tmp": tmp_path}


def test_close_batch_retrains_only_affected_shards_and_checks_the_model(sisa_ws, invoke):
    at = "2026-12-01T09:00:00Z"
    r = invoke("claims", "file", "--holder", "Northwind Press", "--works", "naomi", "--remedy", "unlearn",
               "--at", at, "--json")
    cid = json.loads(r.output)["claim_id"]
    assert invoke("claims", "review", cid, "--policy", POLICY, "--at", at).exit_code == 0
    r = invoke("claims", "execute", cid, "--policy", POLICY, "--at", at)
    assert r.exit_code == 0 and "executed" in r.output, r.output
    r = invoke("claims", "plan", "--policy", POLICY, "--json")
    plan = json.loads(r.output)
    assert plan["exclude_docs"] == ["copy-0", "copy-1", "copy-2", "copy-3"]
    assert plan["works"] == [{"work_id": "naomi", "docs": 4}]
    out = sisa_ws["tmp"] / "sisa-v2"
    r = invoke("claims", "close-batch", "--policy", POLICY, "--sisa", sisa_ws["sisa"], "--sisa-out", out,
               "--training", sisa_ws["train"], "--at", "2027-01-15T00:00:00Z", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    sisa = res["checks"]["sisa"]
    assert sisa["forgotten"] == plan["exclude_docs"] and sisa["retrain_steps"] <= sisa["full_train_steps"]
    assert res["checks"]["passed"] is True and res["checks"]["works"]["naomi"]["probes"] > 0
    assert res["model_hash"].startswith("sha256:") and res["closed"] == [cid]
    state = json.loads((out / "sisa.json").read_text())
    assert state["removed"] == plan["exclude_docs"]
    r = invoke("claims", "show", cid, "--json")
    hist = json.loads(r.output)["history"]
    assert [h["state"] for h in hist][-1] == "closed" and hist[-1]["evidence"]["model_hash"] == res["model_hash"]


def test_model_checks_flag_a_model_that_reproduces_the_work(tmp_path):
    """A model trained on nothing but the work reproduces it: the checks must fail it."""
    import torch

    from tribute.attribution.lm import LMConfig, TinyGPT, TrainConfig, WordTokenizer, train_lm
    from tribute.cli.claims_cmds import model_checks

    torch.set_num_threads(1)
    tok = WordTokenizer.fit([WORK])
    model = TinyGPT(LMConfig(vocab_size=len(tok), max_len=64, d_model=32, n_head=2, d_ff=64, seed=0))
    train_lm(model, tok, [WORK] * 8, TrainConfig(steps=150, batch_size=8, lr=1e-2, checkpoints=1, seed=0),
             out_dir=tmp_path / "lm")
    res = model_checks(tmp_path / "lm", [("naomi", WORK)], 8, prompt_len=8, cont_len=24)
    assert res["passed"] is False and res["works"]["naomi"]["verbatim_spans"] > 0
    assert "reproduces naomi verbatim" in res["note"]


def test_holder_report_shows_claims_history_and_flags(ws, invoke, tmp_path, write_jsonl):
    works = [{"id": "naomi", "holder": "Northwind Press", "title": "Naomi", "text": WORK}]
    assert invoke("works", "import", write_jsonl(tmp_path / "w.jsonl", works)).exit_code == 0
    r = invoke("claims", "file", "--holder", "Northwind Press", "--works", "naomi", "--remedy", "compensate",
               "--deadline", "2020-01-01", "--at", "2019-12-01T00:00:00Z", "--json")
    cid = json.loads(r.output)["claim_id"]
    from tribute.market.reports import write_reports

    with ws.connect(read_only=True) as con:
        write_reports(con, tmp_path / "r", generated_at="2026-01-01T00:00:00+00:00")
    data = json.loads((tmp_path / "r" / "northwind-press" / "report.json").read_text())
    c = data["claims"]["claims"][0]
    assert c["claim_id"] == cid and c["overdue"] is True and c["claim_history"][0]["state"] == "filed"
    assert "overdue: " + cid in data["claims"]["summary"]
    page = (tmp_path / "r" / "northwind-press" / "report.html").read_text()
    assert "History of claim" in page and "OVERDUE" in page
    # deadlines are judged on --as-of: before the deadline the claim is not overdue, and the same
    # workspace with the same date gives the same bytes
    for out in ("a", "b"):
        r = invoke("report", "--holder", "Northwind Press", "--format", "json", "--as-of", "2019-12-02",
                   "--out", tmp_path / out)
        assert r.exit_code == 0, r.output
    early = (tmp_path / "a" / "northwind-press" / "report.json").read_bytes()
    assert early == (tmp_path / "b" / "northwind-press" / "report.json").read_bytes()
    c = json.loads(early)["claims"]
    assert c["as_of"] == "2019-12-02" and c["claims"][0]["overdue"] is False
