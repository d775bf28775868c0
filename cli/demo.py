"""`tribute demo`: the whole pipeline on the bundled public-domain corpus.

The corpus (``demo_corpus/``, see its PROVENANCE.md) holds eight works of four fictional rights
holders and fifteen unrelated books. The demo registers the works, and assembles a seeded
training corpus in which some works are planted verbatim, as excerpts inside unrelated text, or
lightly edited, with the ground truth written beside it. Later stages (index, scan, attribute,
ledger, unlearn, report) are added here as they land.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import click

from .common import workspace_option

DEMO_DIR = "tribute-demo"
SEED = 20261129
HOLDOUT_BOOKS = ("haggai", "nahum")   # never trained on: the unlearning stage's holdout text


def corpus_root():
    """The bundled demo corpus folder (a Traversable inside the installed package)."""
    return resources.files("tribute.cli") / "demo_corpus"


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _light_edit(words: list[str], rng: random.Random, rate: float) -> list[str]:
    """Drop, duplicate or swap about ``rate`` of the words (a typo-level edit)."""
    out = []
    for w in words:
        r = rng.random()
        if r < rate / 3:
            continue
        out.append(w)
        if r > 1 - rate / 3:
            out.append(w)
    for _ in range(int(len(out) * rate / 3)):
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


@dataclass(frozen=True)
class Planted:
    doc_id: str
    work_id: str
    kind: str          # verbatim | excerpt | embedded | edited
    n_words: int


def build_training_corpus(out: Path, seed: int = SEED) -> list[Planted]:
    """Write ``out/training.jsonl`` (id, text) and ``out/training_truth.jsonl``; return the truth.

    Background books are cut into documents of about 120-320 words. Each work except
    ``philemon`` is planted: verbatim copies of ruth, joel and james (each three times, as web
    crawls duplicate popular text, which is what makes language models memorise it), excerpts
    of 60-180 words standing alone or embedded in a background document, and one lightly edited
    excerpt (about 10 % of words dropped, doubled or swapped). ``philemon`` is never planted: a
    registered work the model never saw. The background books in ``HOLDOUT_BOOKS`` are kept out
    of training and written to ``out/holdout.jsonl``: text the model never saw, which unlearning
    needs as its reference for "forgotten".
    """
    rng = random.Random(seed)
    root = corpus_root()
    works = [json.loads(line) for line in (root / "works.jsonl").read_text(encoding="utf-8").splitlines() if line]
    docs: list[dict] = []
    holdout: list[dict] = []
    for f in sorted((root / "background").iterdir(), key=lambda p: p.name):
        if not f.name.endswith(".txt"):
            continue
        book = f.name[:-4]
        if book in HOLDOUT_BOOKS:
            paras = _paragraphs(f.read_text(encoding="utf-8"))
            holdout += [{"id": f"{book}-{i:03d}", "text": p} for i, p in enumerate(paras) if len(p.split()) >= 20]
            continue
        buf: list[str] = []
        n = 0
        for para in _paragraphs(f.read_text(encoding="utf-8")):
            buf.append(para)
            n += len(para.split())
            if n >= rng.randint(120, 320):
                docs.append({"id": f"{book}-{len(docs):04d}", "text": "\n\n".join(buf)})
                buf, n = [], 0
        if buf:
            docs.append({"id": f"{book}-{len(docs):04d}", "text": "\n\n".join(buf)})
    truth: list[Planted] = []
    planted_docs: list[dict] = []
    for w in works:
        if w["id"] == "philemon":
            continue
        words = w["text"].split()
        if w["id"] in ("ruth", "joel", "james"):
            for copy in "abc":
                planted_docs.append({"id": f"copy-{w['id']}-{copy}", "text": w["text"]})
                truth.append(Planted(f"copy-{w['id']}-{copy}", w["id"], "verbatim", len(words)))
        for k in range(3):
            size = rng.randint(60, 180)
            start = rng.randrange(max(1, len(words) - size))
            excerpt = words[start:start + size]
            kind = ("excerpt", "embedded", "edited")[k]
            if kind == "edited":
                excerpt = _light_edit(excerpt, rng, 0.10)
            text = " ".join(excerpt)
            if kind == "embedded":
                host = docs[rng.randrange(len(docs))]
                paras = _paragraphs(host["text"])
                cut = rng.randint(0, len(paras))
                text = "\n\n".join(paras[:cut] + [text] + paras[cut:])
            doc_id = f"{kind}-{w['id']}-{k}"
            planted_docs.append({"id": doc_id, "text": text})
            truth.append(Planted(doc_id, w["id"], kind, len(excerpt)))
    all_docs = docs + planted_docs
    rng.shuffle(all_docs)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "training.jsonl", "w", encoding="utf-8") as fh:
        for d in all_docs:
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(out / "holdout.jsonl", "w", encoding="utf-8") as fh:
        for d in holdout:
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(out / "training_truth.jsonl", "w", encoding="utf-8") as fh:
        for t in truth:
            fh.write(json.dumps(t.__dict__) + "\n")
    return truth


def run_demo(workspace: str | Path, *, force: bool = False, echo: Callable[[str], None] = print) -> dict:
    """Build a fresh demo workspace at ``workspace`` and run every stage that exists so far.

    Returns a summary dict. Refuses to touch a folder that exists and is not a tribute workspace.
    """
    from ..core.errors import WorkspaceError
    from ..core.readers import read_records
    from ..market.catalog import import_works, list_holders, works_from_records
    from ..market.workspace import Workspace

    ws = Workspace(workspace)
    if ws.path.exists():
        if not ws.exists() and any(ws.path.iterdir()):
            raise WorkspaceError(f"{ws.path}: folder exists and is not a tribute workspace; choose another --workspace")
        if ws.exists() and not force:
            raise WorkspaceError(f"{ws.path}: a workspace already exists; pass --force to rebuild the demo there")
        shutil.rmtree(ws.path)
    ws.init()
    echo(f"[1] Created workspace {ws.path}")

    with resources.as_file(corpus_root() / "works.jsonl") as works_file:
        items = works_from_records(read_records(works_file))
    with ws.connect() as con:
        res = import_works(con, items)
        holders = list_holders(con)
    echo(f"[2] Registered {len(res.added)} works of {len(holders)} rights holders "
         "(public-domain text; fictional holders):")
    for h in holders:
        echo(f"      {h['name']}: {h['works']} works, {h['words']} words")

    data = ws.subdir("data")
    truth = build_training_corpus(data)
    n_docs = sum(1 for _ in open(data / "training.jsonl", encoding="utf-8"))
    echo(f"[3] Built a training corpus of {n_docs} documents with {len(truth)} planted copies "
         f"of the works: {data / 'training.jsonl'}")
    summary: dict = {"workspace": str(ws.path), "works": len(res.added), "holders": len(holders),
                     "training_docs": n_docs, "planted": len(truth)}

    from . import attribute_cmds, index_cmds, ledger_cmds, unlearn_cmds

    echo("")
    echo("[4] Index the works and scan the training corpus (where are the works?)")
    summary["scan_corpus"] = index_cmds.demo_step(ws, echo)

    echo("")
    echo("[5] Train a tiny language model on the corpus and generate outputs")
    summary["train"] = attribute_cmds.demo_train_step(ws, echo)

    echo("")
    echo("[6] Scan the model's outputs (does it reproduce the works?)")
    summary["scan_outputs"] = index_cmds.demo_scan_outputs(ws, data / "outputs.jsonl", echo)

    echo("")
    echo("[7] Attribute the outputs to training documents, and through them to works and holders")
    summary["attribution"] = attribute_cmds.demo_attribute_step(ws, echo)

    echo("")
    echo("[8a] Pay for the use: book royalties in the ledger, close the period, verify")
    summary["ledger"] = ledger_cmds.demo_step(ws, echo)

    echo("")
    echo("[8b] Or remove it: unlearn Northwind Press's works and certify the result")
    summary["unlearning"] = unlearn_cmds.demo_step(ws, echo)

    echo("")
    echo("[8c] Claims: one claim of each remedy (unlearn, compensate, either), each carried to closed")
    from . import claims_cmds

    summary["claims"] = claims_cmds.demo_step(ws, echo)

    echo("")
    echo("[9] Write the reports")
    from ..market.reports import write_reports

    with ws.connect(read_only=True) as con:
        written = write_reports(con, ws.path / "reports")
    index_page = ws.path / "reports" / "index.html"
    echo(f"      {len(written)} holder reports (HTML, JSON, CSV); open {index_page}")
    summary["reports"] = str(index_page)
    echo("")
    echo(f"Next: `tribute works list --workspace {ws.path}`, or open {index_page} in a browser.")
    return summary


@click.command()
@workspace_option
@click.option("--force", is_flag=True, help="Rebuild the demo workspace if it already exists.")
def demo(workspace: str | None, force: bool) -> None:
    """Run the whole pipeline on the bundled public-domain corpus (default workspace ./tribute-demo)."""
    run_demo(workspace or DEMO_DIR, force=force, echo=click.echo)
