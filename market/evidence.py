"""Evidence: the scans of corpora and model outputs, their matches, and each work's exposure.

A scan streams its rows into temporary Parquet files (bounded memory), then :meth:`EvidenceWriter.commit`
inserts the scan, its matches and its exposure rows in ONE DuckDB transaction and moves the Parquet
files into ``<workspace>/scans/<scan_id>/``. A scan that fails before or during the commit leaves no
rows and no files.

Exposure (the contract other stages build on): per (work, training document), ``weight`` = the
fraction of the document's words covered by that work's matched spans of any index kind, in (0, 1].

Example::

    with ws.connect(read_only=True) as con:
        table = exposure(con)            # latest corpus scan: work_id, doc_id, weight, holder_id
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import InputError, NotFoundError
from ..core.manifest import build_manifest, write_manifest

TARGETS = ("corpus", "outputs")


def _schemas():
    import pyarrow as pa

    span = pa.struct([("doc_start", pa.int64()), ("doc_end", pa.int64()),
                      ("work_start", pa.int64()), ("work_end", pa.int64())])
    matches = pa.schema([
        ("doc_id", pa.string()), ("work_id", pa.string()), ("holder_id", pa.string()), ("kind", pa.string()),
        ("score", pa.float64()), ("matched_words", pa.int64()), ("doc_words", pa.int64()),
        ("spans", pa.list_(span)),
    ])
    exposure_ = pa.schema([
        ("work_id", pa.string()), ("doc_id", pa.string()), ("holder_id", pa.string()),
        ("covered_words", pa.int64()), ("doc_words", pa.int64()), ("weight", pa.float64()),
    ])
    return matches, exposure_


def exposure_schema():
    """The schema of :func:`exposure`'s table."""
    import pyarrow as pa

    return pa.schema([("work_id", pa.string()), ("doc_id", pa.string()), ("weight", pa.float64()),
                      ("holder_id", pa.string())])


def new_scan_id(target: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{target}-{stamp}-{secrets.token_hex(3)}"


@dataclass
class ScanInfo:
    """What a scan was run on and with; stored in ``scans``."""

    scan_id: str
    target: str
    source: str
    source_sha256: str
    kinds: list[str]
    config: Mapping[str, Any]
    catalog_hash: str
    stale: bool = False


class EvidenceWriter:
    """Stream match and exposure rows of one scan into temporary Parquet files, then commit."""

    BATCH = 4096

    def __init__(self, workspace_path: str | os.PathLike, info: ScanInfo):
        import pyarrow.parquet as pq

        if info.target not in TARGETS:
            raise InputError(f"scan target {info.target!r}: use one of {', '.join(TARGETS)}")
        self.info = info
        self.root = Path(workspace_path) / "scans"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp = self.root / f".{info.scan_id}.tmp"
        self.tmp.mkdir()
        self._mschema, self._eschema = _schemas()
        self._mw = pq.ParquetWriter(self.tmp / "matches.parquet", self._mschema)
        self._ew = pq.ParquetWriter(self.tmp / "exposure.parquet", self._eschema)
        self._m: list[dict] = []
        self._e: list[dict] = []
        self.n_docs = self.n_words = self.n_chars = self.n_matches = 0
        self._started = datetime.now(timezone.utc)
        self._open = True

    def add_doc(self, doc_id: str, n_words: int, n_chars: int, matches: list[dict],
                covered: Mapping[str, tuple[str, int]]) -> None:
        """One scanned document: its match rows (dicts in the matches schema) and, per work id,
        ``(holder_id, covered_words)``."""
        self.n_docs += 1
        self.n_words += n_words
        self.n_chars += n_chars
        self.n_matches += len(matches)
        self._m.extend(matches)
        for work_id, (holder_id, words) in covered.items():
            if words > 0 and n_words > 0:
                self._e.append({"work_id": work_id, "doc_id": doc_id, "holder_id": holder_id,
                                "covered_words": int(words), "doc_words": int(n_words),
                                "weight": min(1.0, words / n_words)})
        if len(self._m) >= self.BATCH or len(self._e) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._m:
            self._mw.write_table(pa.Table.from_pylist(self._m, schema=self._mschema))
            self._m = []
        if self._e:
            self._ew.write_table(pa.Table.from_pylist(self._e, schema=self._eschema))
            self._e = []

    def abort(self) -> None:
        """Drop everything written so far (no rows, no files)."""
        if self._open:
            self._open = False
            for w in (self._mw, self._ew):
                try:
                    w.close()
                except Exception:  # noqa: BLE001 - best effort on an already failing path
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def commit(self, con) -> dict[str, Any]:
        """Insert the scan and its rows in one transaction; move the Parquet files into place."""
        self._flush()
        self._mw.close()
        self._ew.close()
        self._open = False
        final = self.root / self.info.scan_id
        info = self.info
        mpath, epath = str(self.tmp / "matches.parquet"), str(self.tmp / "exposure.parquet")
        write_manifest(self.tmp, build_manifest(
            f"scan-{info.target}", {"kinds": info.kinds, **dict(info.config)}, inputs=[info.source],
            packages=("tribute", "numpy", "pyarrow", "duckdb", "datasketch", "faiss-cpu"),
            extra={"scan_id": info.scan_id, "catalog_hash": info.catalog_hash, "stale": info.stale,
                   "n_docs": self.n_docs, "n_matches": self.n_matches},
        ))
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                "INSERT INTO scans (scan_id, target, source, source_sha256, kinds, config, catalog_hash, stale, "
                "n_docs, n_words, n_chars, n_matches, parquet_path, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [info.scan_id, info.target, info.source, info.source_sha256, ",".join(info.kinds),
                 json.dumps(dict(info.config), sort_keys=True), info.catalog_hash, info.stale, self.n_docs,
                 self.n_words, self.n_chars, self.n_matches, str(final / "matches.parquet"), self._started],
            )
            con.execute(
                "INSERT INTO scan_matches SELECT ?, doc_id, work_id, holder_id, kind, score, matched_words, "
                "doc_words, spans FROM read_parquet(?) ORDER BY doc_id, work_id, kind", [info.scan_id, mpath])
            con.execute(
                "INSERT INTO scan_exposure SELECT ?, work_id, doc_id, holder_id, covered_words, doc_words, weight "
                "FROM read_parquet(?) ORDER BY work_id, doc_id", [info.scan_id, epath])
            os.replace(self.tmp, final)
            try:
                con.execute("COMMIT")
            except BaseException:
                os.replace(final, self.tmp)
                raise
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - the transaction may already be gone
                pass
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return {"scan_id": info.scan_id, "target": info.target, "docs": self.n_docs, "words": self.n_words,
                "chars": self.n_chars, "matches": self.n_matches, "parquet": str(final / "matches.parquet")}


def _rows(cur) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def list_scans(con, target: str | None = None) -> list[dict[str, Any]]:
    """Scans, newest first."""
    sql = ("SELECT scan_id, target, source, kinds, stale, n_docs, n_words, n_matches, parquet_path, "
           "started_at, finished_at FROM scans")
    params: list[Any] = []
    if target is not None:
        sql += " WHERE target = ?"
        params.append(target)
    return _rows(con.execute(sql + " ORDER BY finished_at DESC, scan_id DESC", params))


def latest_scan_id(con, target: str = "corpus") -> str | None:
    rows = con.execute("SELECT scan_id FROM scans WHERE target = ? ORDER BY finished_at DESC, scan_id DESC LIMIT 1",
                       [target]).fetchall()
    return rows[0][0] if rows else None


def get_scan(con, scan_id: str) -> dict[str, Any]:
    rows = _rows(con.execute("SELECT * FROM scans WHERE scan_id = ?", [scan_id]))
    if not rows:
        raise NotFoundError(f"scan {scan_id!r}: no such scan; see `tribute scan list`")
    return rows[0]


def exposure(con, scan_id: str | None = None):
    """``work_id, doc_id, weight, holder_id`` of a corpus scan (the latest when ``scan_id`` is None).

    ``weight`` is the fraction of the document's words covered by the work's matched spans, in
    (0, 1]. An empty table (same schema) when there is no corpus scan yet.
    """
    import pyarrow as pa

    if scan_id is None:
        scan_id = latest_scan_id(con, "corpus")
        if scan_id is None:
            return exposure_schema().empty_table()
    else:
        scan = get_scan(con, scan_id)
        if scan["target"] != "corpus":
            raise InputError(f"scan {scan_id!r}: scans model outputs, not a training corpus; give a corpus scan")
    t = con.sql(
        "SELECT work_id, doc_id, weight, holder_id FROM scan_exposure WHERE scan_id = ? ORDER BY work_id, doc_id",
        params=[scan_id]).to_arrow_table()
    return pa.Table.from_arrays([t.column(n).cast(f.type) for n, f in zip(t.column_names, exposure_schema())],
                                schema=exposure_schema())


def scan_summary(con, scan_id: str) -> dict[str, Any]:
    """Per work and per holder: documents matched, words covered, best score per kind."""
    scan = get_scan(con, scan_id)
    per_work = _rows(con.execute(
        "SELECT m.work_id, m.holder_id, h.name AS holder, count(DISTINCT m.doc_id) AS docs, "
        "max(m.score) FILTER (WHERE m.kind = 'exact') AS exact, "
        "max(m.score) FILTER (WHERE m.kind = 'minhash') AS minhash, "
        "max(m.score) FILTER (WHERE m.kind = 'semantic') AS semantic, "
        "coalesce((SELECT sum(e.covered_words) FROM scan_exposure e WHERE e.scan_id = m.scan_id "
        "          AND e.work_id = m.work_id), 0) AS covered_words "
        "FROM scan_matches m LEFT JOIN holders h ON h.holder_id = m.holder_id WHERE m.scan_id = ? "
        "GROUP BY m.scan_id, m.work_id, m.holder_id, h.name ORDER BY docs DESC, m.work_id", [scan_id]))
    per_holder = _rows(con.execute(
        "SELECT m.holder_id, h.name AS holder, count(DISTINCT m.work_id) AS works, count(DISTINCT m.doc_id) AS docs, "
        "coalesce((SELECT sum(e.covered_words) FROM scan_exposure e WHERE e.scan_id = m.scan_id "
        "          AND e.holder_id = m.holder_id), 0) AS covered_words "
        "FROM scan_matches m LEFT JOIN holders h ON h.holder_id = m.holder_id WHERE m.scan_id = ? "
        "GROUP BY m.scan_id, m.holder_id, h.name ORDER BY covered_words DESC, m.holder_id", [scan_id]))
    for r in per_holder:
        r["share_of_words"] = (r["covered_words"] / scan["n_words"]) if scan["n_words"] else 0.0
    return {"scan_id": scan_id, "target": scan["target"], "source": scan["source"], "docs": scan["n_docs"],
            "words": scan["n_words"], "matches": scan["n_matches"], "stale": scan["stale"],
            "kinds": scan["kinds"].split(","), "parquet": scan["parquet_path"],
            "per_work": per_work, "per_holder": per_holder}


def doc_matches(con, scan_id: str) -> list[dict[str, Any]]:
    """``doc_id, work_id, holder_id, kind, score, matched_words, doc_words`` of a scan, sorted."""
    return _rows(con.execute(
        "SELECT doc_id, work_id, holder_id, kind, score, matched_words, doc_words FROM scan_matches "
        "WHERE scan_id = ? ORDER BY doc_id, work_id, kind", [scan_id]))
