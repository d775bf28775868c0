"""Reports: JSON equals the workspace, golden files, escaping, determinism, a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden" / "report"
UPDATE = os.environ.get("TRIBUTE_UPDATE_GOLDEN") == "1"
EVIL = "<script>alert(1)</script>"
WORKS = [
    {"id": "w1", "text": "It was a bright cold day in April, and the clocks were striking.", "holder": "Acme Press",
     "title": "One & Only", "licence": "CC-BY-4.0"},
    {"id": "w2", "text": "Call me Ishmael. Some years ago, never mind how long.", "holder": "Acme Press",
     "title": EVIL, "opt_out": True},
    {"id": "w3", "text": "Happy families are all alike.", "holder": 'Bee "Books" <b>', "title": "Three"},
]
FIXED_TIME = "2026-01-01T00:00:00+00:00"


@pytest.fixture
def filled(ws, invoke, tmp_path, write_jsonl):
    r = invoke("works", "import", write_jsonl(tmp_path / "w.jsonl", WORKS))
    assert r.exit_code == 0, r.output
    return ws


def _write(ws, out, **kw):
    from tribute.market.reports import write_reports

    with ws.connect(read_only=True) as con:
        return write_reports(con, out, generated_at=FIXED_TIME, **kw)


def test_json_numbers_equal_the_workspace(filled, tmp_path):
    _write(filled, tmp_path / "r")
    data = json.loads((tmp_path / "r" / "acme-press" / "report.json").read_text())
    with filled.connect(read_only=True) as con:
        expected = con.execute(
            "SELECT work_id, title, n_words, content_hash, opt_out FROM works WHERE holder_id = 'acme-press' ORDER BY work_id"
        ).fetchall()
    got = [(w["work_id"], w["title"], w["n_words"], w["content_hash"], w["opt_out"]) for w in data["works"]["works"]]
    assert got == [tuple(r) for r in expected]
    assert data["holder"] == {"holder_id": "acme-press", "name": "Acme Press"}
    csv_text = (tmp_path / "r" / "acme-press" / "works.csv").read_text()
    assert csv_text.splitlines()[0].split(",")[:3] == ["content_hash", "licence", "n_words"]
    assert len(csv_text.splitlines()) == 3


def test_golden_files(filled, tmp_path):
    _write(filled, tmp_path / "r")
    for rel in ["acme-press/report.json", "acme-press/report.html", "index.html"]:
        got = (tmp_path / "r" / rel).read_text()
        gold = GOLDEN / rel.replace("/", "__")
        if UPDATE:
            gold.parent.mkdir(parents=True, exist_ok=True)
            gold.write_text(got)
        assert gold.exists(), f"missing golden file {gold}; run with TRIBUTE_UPDATE_GOLDEN=1"
        assert got == gold.read_text(), f"{rel} differs from {gold}"


def test_holder_supplied_text_is_escaped(filled, tmp_path):
    _write(filled, tmp_path / "r")
    html = (tmp_path / "r" / "acme-press" / "report.html").read_text()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "One &amp; Only" in html
    bee = next((tmp_path / "r").glob("bee-*/report.html")).read_text()
    assert "Bee &#34;Books&#34; &lt;b&gt;" in bee
    assert "<script" not in html.lower().replace("&lt;script", "")


def test_output_is_deterministic(filled, tmp_path):
    _write(filled, tmp_path / "a")
    _write(filled, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_cli_report(filled, invoke, tmp_path):
    r = invoke("report", "--all", "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "index.html").is_file() and "Index:" in r.output
    r = invoke("report", "--holder", "Acme Press", "--format", "json", "--out", tmp_path / "one")
    assert r.exit_code == 0 and (tmp_path / "one" / "acme-press" / "report.json").is_file()
    assert not (tmp_path / "one" / "acme-press" / "report.html").exists()
    assert invoke("report", "--out", tmp_path / "x").exit_code == 2
    r = invoke("report", "--holder", "Nobody", "--out", tmp_path / "x")
    assert r.exit_code == 1 and "holder 'Nobody': no such holder" in r.output
    r = invoke("report", "--all", "--format", "pdf", "--out", tmp_path / "x")
    assert r.exit_code == 1 and "--format pdf: unknown" in r.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed (.ci/run installs it)")
def test_report_renders_in_a_real_browser(filled, tmp_path):
    assert CHROMIUM, "CI must have chromium (.ci/run installs it)"
    _write(filled, tmp_path / "r")
    page = (tmp_path / "r" / "acme-press" / "report.html").resolve()
    artifacts = Path(os.environ.get("TRIBUTE_TEST_ARTIFACTS", tmp_path / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "report-acme-press.png"
    base = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    r = subprocess.run(base + ["--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1200,1600",
                               page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 5000, r.stderr[-2000:]
    console = [l for l in r.stderr.splitlines() if ":CONSOLE" in l]
    assert console == [], console
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "<h1>Acme Press</h1>" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and not re.search(r"<script[\s>]", dom)


def test_evidence_sections_equal_the_workspace(filled, tmp_path, write_jsonl):
    """With a corpus scan and an outputs scan, the report's numbers are the workspace's."""
    from tribute.cli.index_cmds import build_index, run_scan

    w1 = WORKS[0]["text"]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [
        {"id": "d1", "text": "Some unrelated opening words here. " + w1 + " And a tail of other words."},
        {"id": "d2", "text": "Nothing to see in this document at all, just ordinary filler text."},
    ])
    outputs = write_jsonl(tmp_path / "outputs.jsonl", [{"id": "o1", "text": "The model said: " + w1}])
    build_index(filled, kinds="exact")
    run_scan(filled, corpus, "corpus")
    run_scan(filled, outputs, "outputs")
    _write(filled, tmp_path / "r")
    data = json.loads((tmp_path / "r" / "acme-press" / "report.json").read_text())
    with filled.connect(read_only=True) as con:
        covered = dict(con.execute(
            "SELECT work_id, sum(covered_words) FROM scan_exposure JOIN scans USING (scan_id) "
            "WHERE holder_id = 'acme-press' AND target = 'corpus' GROUP BY ALL").fetchall())
    got = {r["work_id"]: r["covered_words"] for r in data["exposure"]["exposure_by_work"]}
    assert got == {"w1": covered["w1"], "w2": 0} and covered["w1"] == len(w1.split())
    assert data["exposure"]["top_documents"][0]["doc_id"] == "d1"
    ex = data["exposure"]["corpus_examples"][0]
    assert "".join(s["text"] for s in ex["doc"] if s["mark"]).split() == w1.rstrip(".").split()
    assert [o["output_id"] for o in data["outputs"]["reproducing_outputs"]] == ["o1"]
    html = (tmp_path / "r" / "acme-press" / "report.html").read_text()
    assert "<mark>" in html and "Where the works were found" in html and "<svg" in html
    assert "1 of 1 scanned model outputs reproduce" in html
