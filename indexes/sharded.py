"""Corpus scans as a sharded stage, so they run on the local or the Ray engine with identical results.

The worker :func:`scan_shard` loads the saved :class:`WorkIndex` once per process, scans the
records of one shard (contiguous record range, read with
:func:`tribute.core.stages.read_shard_records`) and returns one Arrow row per document, in record
order: the document's counts, its matches and the words each work's spans cover, the latter two
as canonical JSON. The driver reads the shards back in shard order, so the evidence does not
depend on the engine, the number of workers, or the order in which shards finished.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Iterator, Mapping

from .work_index import DocResult, Match, WorkIndex


def match_row(doc_id: str, m: Match) -> dict[str, Any]:
    """A match as the plain dict the evidence store takes."""
    return {"doc_id": doc_id, "work_id": m.work_id, "holder_id": m.holder_id, "kind": m.kind,
            "score": float(m.score), "matched_words": int(m.matched_words), "doc_words": int(m.doc_words),
            "spans": [s.as_dict() for s in m.spans]}


def _schema():
    import pyarrow as pa

    return pa.schema([("doc_id", pa.string()), ("n_words", pa.int64()), ("n_chars", pa.int64()),
                      ("matches", pa.string()), ("covered", pa.string())])


@functools.lru_cache(maxsize=2)
def _load(index_dir: str, index_sha256: str) -> WorkIndex:
    # index_sha256 is part of the key: a rebuilt index in the same folder is loaded afresh.
    return WorkIndex.load(index_dir)


def scan_shard(shard: Mapping[str, Any], config: Mapping[str, Any]):
    """Stage worker: scan one shard's records; returns an Arrow table (one row per document)."""
    import pyarrow as pa

    from ..core.stages import read_shard_records

    idx = _load(config["index_dir"], config["index_sha256"])
    cols: dict[str, list] = {n: [] for n in _schema().names}
    for res in idx.scan(read_shard_records(shard), tuple(config["kinds"]),
                        minhash_threshold=config.get("minhash_threshold"),
                        semantic_threshold=config.get("semantic_threshold")):
        cols["doc_id"].append(res.doc_id)
        cols["n_words"].append(int(res.n_words))
        cols["n_chars"].append(int(res.n_chars))
        cols["matches"].append(json.dumps([match_row(res.doc_id, m) for m in res.matches], sort_keys=True))
        cols["covered"].append(json.dumps(
            sorted([wid, idx.holder_id(wid), int(words)] for wid, words in res.covered.items())))
    return pa.table(cols, schema=_schema())


def iter_shard_docs(tables) -> Iterator[tuple[str, int, int, list[dict], dict[str, tuple[str, int]]]]:
    """``(doc_id, n_words, n_chars, match rows, {work_id: (holder_id, words)})`` from shard tables."""
    for t in tables:
        for row in t.to_pylist():
            covered = {wid: (hid, words) for wid, hid, words in json.loads(row["covered"])}
            yield row["doc_id"], row["n_words"], row["n_chars"], json.loads(row["matches"]), covered


__all__ = ["DocResult", "iter_shard_docs", "match_row", "scan_shard"]
