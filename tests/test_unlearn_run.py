"""Unlearning runs end to end on a tiny seeded LM: files written, input untouched, bad input,
SISA exactness, certificate storage and the CLI."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

WORDS = ("the a man woman city river king stone bread light went saw took gave said came over under "
         "into from with and but then when old new great small dark red quick slow").split()
WORK_A = ("Naomi walked to Bethlehem with her daughter in the season of barley and the fields were gold . "
          "She said to her daughter that the Lord had dealt bitterly with her .")
WORK_B = ("Jonah went down to Joppa and found a ship going to Tarshish , and he paid the fare and went down into it .")


def make_corpus(seed=0, n_background=30):
    rng = random.Random(seed)
    docs = []
    for i in range(n_background):
        sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))) + " ." for _ in range(rng.randint(3, 6))]
        docs.append((f"bg-{i:03d}", " ".join(sents).capitalize()))
    forget = []
    for k in range(3):
        docs.append((f"copy-a-{k}", WORK_A))
        forget.append(f"copy-a-{k}")
    docs.append(("copy-b-0", WORK_B))
    holdout = []
    for i in range(6):
        sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))) + " ." for _ in range(4)]
        holdout.append((f"hold-{i}", " ".join(sents).capitalize()))
    return docs, forget, holdout


def train_tiny(docs, out_dir, steps=80, seed=0):
    from tribute.attribution.lm import LMConfig, TinyGPT, TrainConfig, WordTokenizer, train_lm

    texts = [t for _, t in docs]
    tok = WordTokenizer.fit(texts)
    model = TinyGPT(LMConfig(vocab_size=len(tok), max_len=32, d_model=16, n_head=2, d_ff=32, seed=seed))
    train_lm(model, tok, texts, TrainConfig(steps=steps, batch_size=8, lr=1e-2, checkpoints=1, seed=seed), out_dir=out_dir)
    return model, tok


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-lm")
    docs, forget, holdout = make_corpus()
    train_tiny(docs, root / "lm")
    return {"root": root, "model": root / "lm", "docs": docs, "forget": forget, "holdout": holdout}


def _hashes(folder: Path):
    from tribute.core.hashing import file_sha256

    return {p.name: file_sha256(p) for p in sorted(folder.iterdir())}


def _fast(method="calibrated", **kw):
    from tribute.attribution.unlearn import preset

    return preset(method, steps=kw.pop("steps", 6), batch_size=4, **kw)


def _eval_fast():
    from tribute.attribution.unlearn import EvalConfig

    return EvalConfig(prompt_len=6, cont_len=6, probes_per_doc=2, relearn_steps=2)


def _run(tiny, out, method="calibrated", **kw):
    from tribute.attribution.unlearn import run_unlearning

    return run_unlearning(tiny["model"], tiny["docs"], kw.pop("forget", tiny["forget"]), tiny["holdout"], out,
                          kw.pop("config", None) or _fast(method), work_ids=["work-a"], holder_id="northwind",
                          work_texts=[WORK_A], eval_config=_eval_fast(), retain_size=16,
                          share=kw.pop("share", False), **kw)


@pytest.mark.parametrize("method", ["ga", "gd", "kl", "npo", "simnpo", "calibrated"])
def test_every_method_writes_new_folder_and_leaves_input(tiny, tmp_path, method):
    before = _hashes(tiny["model"])
    out = tmp_path / f"out-{method}"
    cert = _run(tiny, out, method, relearn=(method == "calibrated"))
    assert _hashes(tiny["model"]) == before
    assert sorted(p.name for p in out.iterdir()) == ["certificate.json", "config.json", "manifest.json",
                                                     "model.safetensors", "tokenizer.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    on_disk = json.loads((out / "certificate.json").read_text())
    assert on_disk["run"]["method"] == method and on_disk["run"]["work_ids"] == ["work-a"]
    assert set(on_disk["checks"]) == {"verbatim", "privleak", "retain_ppl", "holdout_ppl", "cost", "relearn"}
    assert "not met" in cert["statement"] and "proxies" in cert["statement"]
    assert 0.0 <= cert["after"]["mia_auc_mink"] <= 1.0
    from tribute.attribution.unlearn import load_model

    model, tok = load_model(out)                      # the unlearned model loads
    assert json.loads((out / "config.json").read_text())["unlearned"]["method"] == method
    if method == "ga":                                # gradient ascent raises the forget loss
        assert cert["after"]["forget_ppl"] > cert["before"]["forget_ppl"]


def test_calibrated_stops_at_target_and_is_seeded(tiny):
    from tribute.attribution.unlearn import build_data, unlearn
    from tribute.attribution.unlearn.run import load_model

    model, tok = load_model(tiny["model"])
    data = build_data(tok, 32, tiny["docs"], tiny["forget"], tiny["holdout"], retain_size=16, work_texts=[WORK_A])
    assert data.span_source == "work-ngrams"
    cfg = _fast(steps=200, check_every=2, lr=3e-3)
    r1 = unlearn(model, data, cfg)
    r2 = unlearn(model, data, cfg)
    assert r1.history == r2.history                  # seeded
    assert r1.stopped == "target" and r1.steps < 200
    last = r1.history[-1]
    assert last["auc"] <= r1.tau["target_auc"] < 1.0
    assert all(h["auc"] > r1.tau["target_auc"] for h in r1.history[:-1] if "auc" in h)   # first time at target
    # the target is the bigram estimate of the retrain-like level, not a constant
    want = data.background.membership_auc(data.forget, data.holdout, cfg.min_k)
    assert r1.tau["target_auc"] == pytest.approx(want, abs=1e-4) and r1.tau["basis"].startswith("retrain-like")


def test_spans_weight_only_the_work_tokens():
    from tribute.attribution.unlearn.data import span_marks

    text = "Hello there, Naomi walked home."
    # tokens: Hello there , Naomi walked home .
    assert span_marks(text, [(13, 25)]) == [0, 0, 0, 1, 1, 0, 0]


def test_bad_inputs(tiny, tmp_path):
    from tribute.attribution.unlearn import build_data, run_unlearning
    from tribute.attribution.unlearn.run import load_model
    from tribute.core.errors import ConflictError, InputError, NotFoundError

    _, tok = load_model(tiny["model"])
    with pytest.raises(InputError, match="nothing to forget"):
        build_data(tok, 32, tiny["docs"], [], tiny["holdout"])
    with pytest.raises(InputError, match="larger than the retain set"):
        build_data(tok, 32, tiny["docs"], [d for d, _ in tiny["docs"][:20]], tiny["holdout"])
    with pytest.raises(InputError, match="not in the training data"):
        build_data(tok, 32, tiny["docs"], ["nope"], tiny["holdout"])
    with pytest.raises(InputError, match="tokenizer mismatch"):
        foreign = [(f"x{i}", "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich") for i in range(10)]
        build_data(tok, 32, foreign, ["x0"], foreign[1:3])
    with pytest.raises(ConflictError, match="input model folder"):
        _run(tiny, tiny["model"] / "inside")
    (tmp_path / "exists").mkdir()
    with pytest.raises(ConflictError, match="already exists"):
        _run(tiny, tmp_path / "exists")
    with pytest.raises(NotFoundError):
        run_unlearning(tmp_path / "nomodel", tiny["docs"], tiny["forget"], tiny["holdout"], tmp_path / "o", _fast())
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny["model"].iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="does not load"):
        run_unlearning(broken, tiny["docs"], tiny["forget"], tiny["holdout"], tmp_path / "o", _fast())
    assert not (tmp_path / "o").exists()


def test_nan_loss_stops_and_writes_nothing(tiny, tmp_path):
    from tribute.attribution.unlearn import DivergedError, run_unlearning

    before = _hashes(tiny["model"])
    # an absurd learning rate: the weights overflow, the loss turns NaN
    with pytest.raises(DivergedError, match="input model is untouched"):
        run_unlearning(tiny["model"], tiny["docs"], tiny["forget"], tiny["holdout"], tmp_path / "out",
                       _fast("ga", lr=1e30, steps=5), eval_config=_eval_fast(), relearn=False, retain_size=16)
    assert _hashes(tiny["model"]) == before
    assert list(tmp_path.iterdir()) == []


def test_non_finite_model_is_refused(tiny, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from tribute.attribution.unlearn import run_unlearning
    from tribute.core.errors import InputError

    bad = tmp_path / "nan-model"
    bad.mkdir()
    for f in tiny["model"].iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    sd = load_file(str(bad / "model.safetensors"))
    sd["head.weight"] = torch.full_like(sd["head.weight"], float("nan"))
    save_file(sd, str(bad / "model.safetensors"))
    with pytest.raises(InputError, match="not finite"):
        run_unlearning(bad, tiny["docs"], tiny["forget"], tiny["holdout"], tmp_path / "out", _fast("gd"),
                       eval_config=_eval_fast(), relearn=False, retain_size=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan-model"]


def test_interrupted_run_leaves_no_half_written_model(tiny, tmp_path, monkeypatch):
    import tribute.attribution.lm as lm

    real = lm.save_weights

    def interrupted(model, path):
        real(model, path)
        raise KeyboardInterrupt("killed midway")

    monkeypatch.setattr(lm, "save_weights", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny, tmp_path / "out", "ga", relearn=False)
    assert list(tmp_path.iterdir()) == []


def test_sisa_exact_unlearning_equals_training_without(tiny, tmp_path):
    from safetensors.torch import load_file

    from tribute.attribution.lm import LMConfig
    from tribute.attribution.unlearn import SISAConfig, load_sisa, sisa_train, sisa_unlearn
    from tribute.attribution.unlearn.run import load_model

    _, tok = load_model(tiny["model"])
    docs = tiny["docs"]
    lmc = LMConfig(vocab_size=len(tok), max_len=32, d_model=16, n_head=2, d_ff=32)
    cfg = SISAConfig(shards=3, slices=2, steps_per_slice=4, batch_size=4)
    sisa_train(docs, tok, lmc, cfg, tmp_path / "v1")
    rep = sisa_unlearn(tmp_path / "v1", docs, ["copy-b-0"], tmp_path / "v2")
    assert len(rep["shards"]) == 1 and rep["retrain_steps"] < rep["full_train_steps"]
    keep = [(d, t) for d, t in docs if d != "copy-b-0"]
    sisa_train(keep, tok, lmc, cfg, tmp_path / "without")
    for s in range(3):
        a = load_file(str(tmp_path / "v2" / f"shard{s:02d}-slice01.safetensors"))
        b = load_file(str(tmp_path / "without" / f"shard{s:02d}-slice01.safetensors"))
        assert all((a[k] == b[k]).all() for k in a), f"shard {s} differs from training without the doc"
    ens, _ = load_sisa(tmp_path / "v2")
    import torch

    assert ens(torch.tensor([[2, 5, 6]])).shape == (1, 3, len(tok))
    state = json.loads((tmp_path / "v2" / "sisa.json").read_text())
    assert state["removed"] == ["copy-b-0"]
    from tribute.core.errors import InputError

    with pytest.raises(InputError, match="nothing to forget"):
        sisa_unlearn(tmp_path / "v2", docs, ["copy-b-0"], tmp_path / "v3")


def test_certificate_store_roundtrip(tiny, tmp_path, ws):
    from tribute.market.unlearning_store import get_certificate, list_certificates, save_certificate
    from tribute.core.errors import ConflictError

    cert = _run(tiny, tmp_path / "out", "gd", relearn=False)
    with ws.connect() as con:
        run_id = save_certificate(con, cert)
        with pytest.raises(ConflictError):
            save_certificate(con, cert)
        rows = list_certificates(con, holder="northwind")
        assert [r["run_id"] for r in rows] == [run_id]
        assert rows[0]["work_ids"] == ["work-a"] and rows[0]["method"] == "gd"
        assert rows[0]["forget_rougeL_after"] == cert["after"]["forget_rougeL"]
        assert rows[0]["privleak"] is None and rows[0]["reference"] == "proxy"
        assert get_certificate(con, run_id)["run"]["run_id"] == run_id
        assert list_certificates(con, work_id="other") == []
        refs = con.execute("SELECT what FROM work_references WHERE table_name = 'unlearning_run_works'").fetchall()
        assert refs == [("evidence",)]


def test_reference_gives_privleak(tiny, tmp_path):
    keep = [(d, t) for d, t in tiny["docs"] if d not in tiny["forget"]]
    # same tokenizer: copy the input's tokenizer next to a model retrained on the rest
    from tribute.attribution.lm import LMConfig, TinyGPT, TrainConfig, train_lm
    from tribute.attribution.unlearn.run import load_model

    _, tok = load_model(tiny["model"])
    m = TinyGPT(LMConfig(vocab_size=len(tok), max_len=32, d_model=16, n_head=2, d_ff=32))
    train_lm(m, tok, [t for _, t in keep], TrainConfig(steps=40, batch_size=8, lr=1e-2, checkpoints=1),
             out_dir=tmp_path / "ref")
    cert = _run(tiny, tmp_path / "out", "npo", reference_dir=tmp_path / "ref", relearn=False)
    assert cert["reference"] is not None and cert["checks"]["verbatim"]["basis"] == "retrain"
    assert "proxies" not in cert["statement"]


# ----------------------------------------------------------------------------- CLI
@pytest.fixture
def cli_ws(ws, tiny, write_jsonl):
    from tribute.market.catalog import WorkInput, import_works

    with ws.connect() as con:
        import_works(con, [WorkInput(id="work-a", holder="Northwind Press", title="A", text=WORK_A),
                           WorkInput(id="work-b", holder="Harbor Lane", title="B", text=WORK_B),
                           WorkInput(id="unseen", holder="Harbor Lane", title="U",
                                     text=" ".join(t for _, t in tiny["holdout"]))])
    data = ws.subdir("data")
    write_jsonl(data / "training.jsonl", [{"id": d, "text": t} for d, t in tiny["docs"]])
    write_jsonl(data / "training_truth.jsonl", [{"doc_id": d, "work_id": "work-a", "kind": "verbatim"}
                                                for d in tiny["forget"]] +
                [{"doc_id": "copy-b-0", "work_id": "work-b", "kind": "verbatim"}])
    return ws


def test_cli_unlearn_holder(cli_ws, tiny, invoke, tmp_path):
    out = tmp_path / "cli-out"
    res = invoke("unlearn", "--holder", "Northwind Press", "--model", tiny["model"], "--method", "gd",
                 "--steps", "3", "--no-relearn", "--retain-size", "8", "--threads", "1", "--out", out)
    assert res.exit_code == 0, res.output
    assert "verbatim memorisation" in res.output and "targets:" in res.output
    assert (out / "model.safetensors").is_file()
    with cli_ws.connect(read_only=True) as con:
        row = con.execute("SELECT holder_id, method, model_out FROM unlearning_certificates").fetchone()
    assert row[0] == "northwind-press" and row[1] == "gd" and row[2] == str(out.resolve())


def test_cli_bad_input(cli_ws, tiny, invoke, tmp_path):
    res = invoke("unlearn", "--works", "work-a", "--holder", "Northwind Press", "--model", tiny["model"])
    assert res.exit_code == 2
    res = invoke("unlearn", "--works", "work-a", "--model", tmp_path / "missing")
    assert res.exit_code == 1 and "Error:" in res.output and "missing" in res.output
    res = invoke("unlearn", "--works", "nope", "--model", tiny["model"])
    assert res.exit_code == 1 and "no such work" in res.output
    res = invoke("unlearn", "--works", "unseen", "--model", tiny["model"])
    assert res.exit_code == 1 and "nothing to forget" in res.output


def test_attribution_share_in_certificate_store_and_report(cli_ws, tiny, tmp_path):
    from tribute.market.reports import write_reports
    from tribute.market.unlearning_store import get_certificate, save_certificate

    cert = _run(tiny, tmp_path / "out", "gd", relearn=False, share=True)
    share = cert["attribution_share"]
    assert share["method"] == "graddot" and share["queries"] > 0
    assert 0.0 <= share["before"] <= 1.0 and 0.0 <= share["after"] <= 1.0
    assert not any("attribution share" in n for n in cert["not_measured"])
    on_disk = json.loads((tmp_path / "out" / "certificate.json").read_text())
    assert on_disk["attribution_share"] == share
    with cli_ws.connect() as con:
        run_id = save_certificate(con, cert)
        assert get_certificate(con, run_id)["attribution_share"] == share
        write_reports(con, tmp_path / "reports", holders=["northwind-press"], formats=["html", "json"])
    html = (tmp_path / "reports" / "northwind-press" / "report.html").read_text()
    row = re.search(r"attribution share \(graddot.*?</tr>", html, re.S)
    assert row, "the unlearning section shows the works' attribution share"
    assert f"{100 * share['before']:.1f} %" in row.group(0) and f"{100 * share['after']:.1f} %" in row.group(0)
    from tribute.cli.unlearn_cmds import headline

    assert any("attribution share" in line and f"{share['before']:.1%}" in line for line in headline(cert))


def test_cli_sisa_train_and_forget(cli_ws, invoke, tmp_path):
    v1, v2 = tmp_path / "sisa-v1", tmp_path / "sisa-v2"
    common = ("--threads", "1", "--json")
    res = invoke("unlearn", "sisa", "train", "--out", v1, "--shards", "3", "--slices", "2", "--steps-per-slice", "3",
                 "--max-len", "32", "--d-model", "16", *common)
    assert res.exit_code == 0, res.output
    state = json.loads(res.output)
    assert state["config"]["shards"] == 3 and state["train_steps"] == 3 * 2 * 3
    # the holder's exposure (work-a: three copies) is the forget set; only the shards holding them retrain
    res = invoke("unlearn", "sisa", "forget", "--model", v1, "--holder", "Northwind Press", "--out", v2, *common)
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    assert rep["forgotten"] == ["copy-a-0", "copy-a-1", "copy-a-2"]
    from tribute.attribution.unlearn.sisa import assign

    where = assign(state["doc_ids"], 3, 2, 0)
    want = {}
    for d in rep["forgotten"]:
        want[str(where[d][0])] = min(want.get(str(where[d][0]), 2), where[d][1])
    assert rep["shards"] == want
    assert rep["retrain_steps"] == sum(3 * (2 - j) for j in want.values()) and rep["full_train_steps"] == 18
    res = invoke("unlearn", "sisa", "forget", "--model", v2, "--docs", "copy-b-0", "--out", tmp_path / "v3")
    assert res.exit_code == 0 and "retrained 1 shard(s)" in res.output and "training steps" in res.output
    # bad input: one line, exit 1 / usage error exit 2, nothing written
    res = invoke("unlearn", "sisa", "forget", "--model", v2, "--docs", "copy-a-0", "--out", tmp_path / "v4")
    assert res.exit_code == 1 and "nothing to forget" in res.output and not (tmp_path / "v4").exists()
    res = invoke("unlearn", "sisa", "forget", "--model", v2, "--docs", "x", "--works", "work-a", "--out", tmp_path / "v5")
    assert res.exit_code == 2
    res = invoke("unlearn", "--works", "work-a")
    assert res.exit_code == 2 and "--model" in res.output


@pytest.mark.slow
def test_demo_step(cli_ws, tiny):
    import shutil

    from tribute.cli.unlearn_cmds import demo_step

    lines = []
    assert demo_step(cli_ws, lines.append) == {"skipped": "no demo model"}
    shutil.copytree(tiny["model"], cli_ws.path / "models" / "demo-lm")
    got = demo_step(cli_ws, lines.append)
    assert got["model_out"].endswith("demo-lm-unlearned") and "run_id" in got
    assert any("verbatim memorisation" in line for line in lines)
    with cli_ws.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM unlearning_run_works WHERE work_id = 'work-a'").fetchone()[0] == 1


@pytest.mark.slow
def test_benchmark_core_runs_every_method():
    """The benchmark script's core at a tiny size: every method, the retrain reference and SISA."""
    import importlib.util
    import math

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_unlearn.py"
    spec = importlib.util.spec_from_file_location("bench_unlearn", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    lines = []
    out = bench.run(size_name="tiny", log=lines.append)
    names = [r["method"] for r in out["rows"]]
    assert names == ["original", "retrain", "ga", "gd", "kl", "npo", "simnpo", "calibrated", "sisa(exact)"]
    for r in out["rows"]:
        assert 0.0 <= r["rougeL"] <= 1.0 and 0.0 <= r["auc"] <= 1.0 and math.isfinite(r["holdout_ppl"])
    assert any("targets met" in line for line in lines)
    cal = out["rows"][names.index("calibrated")]
    assert "retrain-like estimate" in cal["note"]          # calibrated aims at the estimated retrain level
