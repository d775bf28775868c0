"""Resumable sharded stages: one output file plus one completion marker per shard.

A *stage* is a picklable top-level worker function, an ordered list of JSON-able shard specs
(for inputs read with :mod:`tribute.core.readers`, the record ranges of :func:`plan_record_shards`),
a JSON-able config dict and an output folder. :func:`run_stage` runs every shard that has no
completion marker yet on an :class:`~tribute.core.engine.Engine`, or only the slice ``--shard I/N``
without any engine (one Slurm array task each), and returns the shard files in shard order.

The output folder holds::

    manifest.json                 kind, config, versions, input hashes (core.manifest)
    shards.json                   the shard plan, written once, reused by every rerun and slice
    shard-00003-of-00016.parquet  the worker's Arrow table (or .npy for a numpy array)
    shard-00003-of-00016.done     completion marker: rows, bytes, sha256 of the shard file

Each shard file and marker is written to a temp file and renamed, marker last, so a job killed
at any point (SIGKILL, a lost node, a Slurm timeout) resumes: finished shards are skipped and the
others rerun from scratch. Rerunning into a folder made with other settings is refused
(:func:`~tribute.core.manifest.check_manifest`).

A worker function has the signature ``fn(shard: dict, config: dict) -> pyarrow.Table | numpy.ndarray``;
it must be deterministic (seeded hashes, rows sorted), which makes the result the same bytes on
every engine and for every number of workers.

Example::

    from tribute.core.engine import get_engine
    from tribute.core.stages import record_stage, run_stage

    stage = record_stage("fingerprints", fingerprint_shard, "corpus.jsonl", "out/fp",
                         config={"n": 8, "num_perm": 64, "seed": 1}, num_shards=16)
    with get_engine("ray", workers=8) as eng:
        result = run_stage(stage, eng)
    table = result.read_table()  # all shards, in shard order
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .engine import Engine, LocalEngine
from .errors import ConfigError, InputError, IntegrityError
from .manifest import MANIFEST_NAME, atomic_write, atomic_write_text, build_manifest, check_manifest, write_manifest
from .readers import Record, detect_format, parse_jsonl_line, read_records, read_txt_file, to_record

PLAN_NAME = "shards.json"
STAGE_FORMAT = 1

ShardFn = Callable[[dict, dict], Any]


# --------------------------------------------------------------------------------------------
# Shard plans over record inputs


def plan_record_shards(
    path: str | os.PathLike,
    *,
    num_shards: int | None = None,
    records_per_shard: int | None = None,
    fmt: str | None = None,
    id_field: str = "id",
    text_field: str = "text",
) -> list[dict]:
    """Split an input into contiguous record ranges, deterministically.

    One streaming pass over ``path`` with :func:`~tribute.core.readers.read_records` (so the whole
    input is validated: malformed lines and duplicate ids fail here, before any work starts).
    Give either ``num_shards`` (ranges as even as possible) or ``records_per_shard``.

    Returns a list of shard specs (JSON-able dicts) ``{"index", "count", "path", "fmt", "start",
    "stop", "offset", "line"}``: records ``[start, stop)``; for uncompressed JSONL ``offset`` is
    the byte offset and ``line`` the line number of the shard's first record, so a worker seeks
    straight to it. Other formats are read by skipping (Parquet by row group).
    """
    if (num_shards is None) == (records_per_shard is None):
        raise ConfigError("give exactly one of num_shards or records_per_shard")
    for name, v in (("num_shards", num_shards), ("records_per_shard", records_per_shard)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"{name}={v!r}: must be a whole number >= 1")
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder; check the path")
    p = p.resolve()  # workers may run in another working directory
    fmt = fmt or detect_format(p)
    seekable = fmt == "jsonl" and p.suffix.lower() != ".gz"
    every = records_per_shard
    if seekable:  # one validating pass; remember where every k-th record starts
        total, marks = _jsonl_scan(p, id_field, text_field, every)
    else:
        total, marks = sum(1 for _ in read_records(p, fmt=fmt, id_field=id_field, text_field=text_field)), {}
    if total == 0:
        raise InputError(f"{p}: no records; give an input with at least one record")
    if num_shards is None:
        num_shards = -(-total // records_per_shard)  # type: ignore[operator]
        bounds = [min(k * records_per_shard, total) for k in range(num_shards + 1)]  # type: ignore[operator]
    else:
        num_shards = min(num_shards, total)
        bounds = [total * k // num_shards for k in range(num_shards + 1)]
        if seekable:  # a second, light pass for the starts of uneven shards
            marks = _jsonl_offsets(p, set(bounds[:-1]))
    shards = []
    for k in range(num_shards):
        start, stop = bounds[k], bounds[k + 1]
        offset, line = marks[start] if seekable else (None, None)
        shards.append({"index": k, "count": num_shards, "path": str(p), "fmt": fmt,
                       "start": start, "stop": stop, "total": total, "offset": offset,
                       "line": line, "id_field": id_field, "text_field": text_field})
    return shards


def _jsonl_from(p: Path, offset: int, first_line: int) -> Iterator[tuple[int, str, dict]]:
    """(byte offset, where, object) for each non-blank line of a JSONL file from ``offset``.

    Same validation and messages as :func:`tribute.core.readers.read_records` for JSONL.
    """
    with open(p, "rb") as fh:
        fh.seek(offset)
        pos = offset
        for lineno, raw in enumerate(fh, start=first_line):
            start, pos = pos, pos + len(raw)
            obj = parse_jsonl_line(p, lineno, raw)
            if obj is None:
                continue
            yield start, f"{p}:{lineno}", obj


def _jsonl_scan(p: Path, id_field: str, text_field: str, every: int | None) -> tuple[int, dict[int, tuple[int, int]]]:
    """Validate a JSONL file like ``read_records``; return its record count and the (byte
    offset, line) of every ``every``-th record. Memory: the set of ids (for duplicates) only."""
    marks: dict[int, tuple[int, int]] = {}
    seen: dict[str, int] = {}
    count = 0
    for offset, where, obj in _jsonl_from(p, 0, 1):
        rec = to_record(where, obj, id_field, text_field)
        lineno = int(where.rsplit(":", 1)[1])
        first = seen.get(rec.id)
        if first is not None:
            raise InputError(
                f"{where}: duplicate id {rec.id!r} (first at {p}:{first}); ids must be unique within a file"
            )
        seen[rec.id] = lineno
        if every and count % every == 0:
            marks[count] = (offset, lineno)
        count += 1
    return count, marks


def _jsonl_offsets(p: Path, wanted: set[int]) -> dict[int, tuple[int, int]]:
    """(byte offset, line) of the records numbered in ``wanted`` of an already validated JSONL file."""
    marks: dict[int, tuple[int, int]] = {}
    count, pos = 0, 0
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            start, pos = pos, pos + len(raw)
            text = raw.decode("utf-8")
            if lineno == 1:
                text = text.lstrip("\ufeff")
            if not text.strip():
                continue
            if count in wanted:
                marks[count] = (start, lineno)
            count += 1
    return marks


def read_shard_records(shard: Mapping[str, Any]) -> Iterator[Record]:
    """The records ``[start, stop)`` of a shard made by :func:`plan_record_shards`, in input order.

    Raises :class:`InputError` when the input no longer has the records the plan expects.
    """
    p = Path(shard["path"])
    start, stop = int(shard["start"]), int(shard["stop"])
    id_field, text_field = shard.get("id_field", "id"), shard.get("text_field", "text")
    fmt = shard["fmt"]
    if not p.exists():
        raise InputError(f"{p}: no such file or folder (the shard plan needs it); check the path")
    if shard.get("offset") is not None:
        rows = ((where, obj) for _, where, obj in _jsonl_from(p, int(shard["offset"]), int(shard["line"])))
        recs: Iterator[Record] = (to_record(w, o, id_field, text_field) for w, o in rows)
    elif fmt == "parquet":
        recs = _parquet_range(p, start, stop, id_field, text_field)
    elif fmt == "txtdir":
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".txt")
        if len(files) != int(shard["total"]):
            raise InputError(f"{p}: has {len(files)} .txt files, the shard plan {shard['total']}; "
                             "the input changed, write to a new output folder")
        recs = (to_record(str(f), {"id": f.stem, "text": read_txt_file(f)}, "id", "text")
                for f in files[start:stop])
    else:  # CSV, gzipped input, a single .txt: stream and skip
        import itertools

        recs = itertools.islice(read_records(p, fmt=fmt, id_field=id_field, text_field=text_field), start, None)
    n = 0
    for rec in recs:
        if n >= stop - start:
            break
        n += 1
        yield rec
    if n != stop - start:
        raise InputError(f"{p}: ended after {start + n} records, the shard plan expects {stop}; "
                         "the input changed, write to a new output folder")


def _parquet_range(p: Path, start: int, stop: int, id_field: str, text_field: str) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
        first = 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            lo, hi = max(start, first), min(stop, first + n)
            if lo < hi:
                rows = pf.read_row_group(g).slice(lo - first, hi - lo).to_pylist()
                for k, obj in enumerate(rows):
                    row = lo + k + 1
                    for key, v in obj.items():
                        if isinstance(v, bytes):
                            try:
                                obj[key] = v.decode("utf-8")
                            except UnicodeDecodeError as e:
                                raise InputError(f"{p}: row {row}: column {key!r} is not valid UTF-8; "
                                                 "store text as UTF-8 strings") from e
                    yield to_record(f"{p}: row {row}", obj, id_field, text_field)
            first += n
            if first >= stop:
                break
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{p}: unreadable Parquet data ({e}); re-export it") from e


# --------------------------------------------------------------------------------------------
# Stages


@dataclass(frozen=True)
class Stage:
    """What to run: ``fn(shard, config)`` for every shard spec, written into ``out_dir``.

    Attributes:
        kind: the stage's name in the manifest (``"scan-corpus"``, ``"featurise"``...).
        fn: a top-level function of an importable module, ``fn(shard: dict, config: dict)``
            returning a ``pyarrow.Table`` or a numpy array (not of dtype object).
        out_dir: the output folder (shared storage when the workers are on other machines).
        config: JSON-able settings; passed to ``fn`` and recorded in the manifest; a rerun with
            another config is refused. Put everything that changes the output in it.
        shards: the JSON-able shard specs in order, or a function making them (called once;
            its result is saved as ``shards.json`` and reused by reruns and ``--shard`` slices).
        inputs: ``{path: sha256}`` of the inputs, recorded in the manifest.
        context: shared read-only inputs too big or too rich for ``config`` (examples, a
            picklable-by-reference model builder), passed as ``fn(shard, config, context)``
            when not ``None``. Not recorded in the manifest: put their fingerprints in
            ``config``. Ray stores it once per run (``ray.put``), not once per shard.
    """

    kind: str
    fn: ShardFn
    out_dir: str | os.PathLike
    config: Mapping[str, Any]
    shards: Sequence[Mapping[str, Any]] | Callable[[], Sequence[Mapping[str, Any]]]
    inputs: Mapping[str, str] = field(default_factory=dict)
    context: Any = None

    def manifest_config(self) -> dict[str, Any]:
        """The config the manifest records and compares: the user's plus the worker's name."""
        return {**dict(self.config), "stage_worker": f"{self.fn.__module__}.{self.fn.__qualname__}",
                "stage_format": STAGE_FORMAT}


def shard_name(index: int, count: int) -> str:
    """``shard-00003-of-00016``: the stem of a shard's output file and marker."""
    return f"shard-{index:05d}-of-{count:05d}"


@dataclass
class StageResult:
    """The markers of the shards a run covered, in shard order, and what it did."""

    out_dir: Path
    kind: str
    markers: list[dict]
    ran: list[int]
    skipped: list[int]
    num_shards: int
    complete: bool

    @property
    def files(self) -> list[Path]:
        """The shard output files, in shard order."""
        return [self.out_dir / m["file"] for m in self.markers]

    @property
    def rows(self) -> int:
        return sum(int(m["rows"]) for m in self.markers)

    def checksum(self) -> str:
        """``sha256:...`` over the shard files' names and hashes in shard order (the result's identity)."""
        h = hashlib.sha256()
        for m in self.markers:
            h.update(f"{m['file']}\0{m['sha256']}\n".encode("utf-8"))
        return "sha256:" + h.hexdigest()

    def _require_complete(self) -> None:
        if not self.complete:
            raise IntegrityError(f"{self.out_dir}: not all {self.num_shards} shards are finished; "
                                 "run the remaining shards before reading the result")
        if len(self.markers) != self.num_shards:
            raise IntegrityError(f"{self.out_dir}: this result covers {len(self.markers)} of {self.num_shards} "
                                 "shards (one --shard slice); run without --shard to read the whole result")

    def iter_tables(self):
        """Each shard's Arrow table, in shard order (a reduction reads them in this order)."""
        import pyarrow.parquet as pq

        for path in self.files:
            yield pq.read_table(path)

    def read_table(self):
        """All shards' tables concatenated in shard order (needs every shard finished)."""
        import pyarrow as pa

        self._require_complete()
        return pa.concat_tables(list(self.iter_tables()))

    def read_array(self):
        """All shards' arrays concatenated along axis 0, in shard order."""
        import numpy as np

        self._require_complete()
        return np.concatenate([np.load(p, allow_pickle=False) for p in self.files], axis=0)

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "kind": self.kind, "num_shards": self.num_shards,
                "ran": len(self.ran), "skipped": len(self.skipped), "rows": self.rows,
                "complete": self.complete, "checksum": self.checksum() if self.complete else None}


def stage_status(out_dir: str | os.PathLike) -> dict[str, Any]:
    """How far a stage folder got: ``{"kind", "num_shards", "done", "missing": [indices]}``."""
    out = Path(out_dir)
    plan = _read_plan(out)
    if plan is None:
        raise InputError(f"{out}: no shard plan (shards.json); run the stage first")
    done = [s["index"] for s in plan["shards"] if _finished_marker(out, s, verify=False) is not None]
    missing = sorted(set(range(len(plan["shards"]))) - set(done))
    return {"kind": plan["kind"], "num_shards": len(plan["shards"]), "done": len(done), "missing": missing}


def prepare_stage(stage: Stage) -> list[dict]:
    """Check the settings against ``out_dir``, write the manifest and the shard plan, run nothing.

    Returns the plan. :func:`run_stage` calls it; call it alone to plan once before submitting a
    Slurm array (so the tasks do not each read the input to plan).
    """
    out = Path(stage.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = stage.manifest_config()
    check_manifest(out, stage.kind, config)
    if not (out / MANIFEST_NAME).exists():
        write_manifest(out, build_manifest(stage.kind, config, extra={"inputs": dict(stage.inputs)}))
    return _load_or_make_plan(out, stage)


def run_stage(
    stage: Stage,
    engine: Engine | None = None,
    *,
    shard: tuple[int, int] | None = None,
    progress: Callable[[dict], None] | None = None,
    verify: bool = True,
) -> StageResult:
    """Run the unfinished shards of ``stage`` and return every covered shard's marker in order.

    Args:
        stage: what to run (see :class:`Stage`).
        engine: where to run it; ``None`` runs serially in this process.
        shard: ``(I, N)`` from ``--shard I/N``: run only the I-th of N contiguous slices of the
            shard plan (one Slurm array task); the result then covers that slice only.
        progress: called in this process with each finished shard's marker, in shard order.
        verify: re-hash the files of already-finished shards before skipping them; a shard whose
            file does not match its marker is run again.

    Raises:
        ConfigError: ``out_dir`` holds a run of another kind or with other settings.
    """
    out = Path(stage.out_dir)
    plan = prepare_stage(stage)
    selected = plan if shard is None else _slice(plan, *shard)
    skipped, todo = [], []
    for spec in selected:
        (skipped if _finished_marker(out, spec, verify=verify) is not None else todo).append(spec)
    _remove_stale_temps(out, todo)
    engine = engine or LocalEngine(1)
    by_index: dict[int, dict] = {}
    args = (stage.fn, dict(stage.config), str(out)) + (() if stage.context is None else (stage.context,))
    for marker in engine.map(run_shard, todo, *args):
        by_index[marker["index"]] = marker
        if progress is not None:
            progress(marker)
    markers = []
    for spec in selected:
        m = by_index.get(spec["index"]) or _finished_marker(out, spec, verify=False)
        if m is None:  # pragma: no cover - a shard vanished while we ran
            raise IntegrityError(f"{out}: shard {spec['index']} has no completion marker after running; rerun")
        markers.append(m)
    complete = shard is None or all(_finished_marker(out, s, verify=False) is not None for s in plan)
    return StageResult(out, stage.kind, markers, [s["index"] for s in todo],
                       [s["index"] for s in skipped], len(plan), complete)


def _slice(plan: list[dict], i: int, n: int) -> list[dict]:
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {i}/{n}: need 0 <= I < N")
    s = len(plan)
    return plan[i * s // n:(i + 1) * s // n]


def _read_plan(out: Path) -> dict | None:
    path = out / PLAN_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        shards = data["shards"]
        if not isinstance(shards, list) or any(s.get("index") != k for k, s in enumerate(shards)):
            raise ValueError("shard indices out of order")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise IntegrityError(f"{path}: corrupt shard plan ({e}); delete {out} and run again") from e
    return data


def _load_or_make_plan(out: Path, stage: Stage) -> list[dict]:
    data = _read_plan(out)
    if data is not None:
        return data["shards"]
    specs = stage.shards() if callable(stage.shards) else stage.shards
    shards = []
    for k, spec in enumerate(specs):
        spec = dict(spec)
        if spec.setdefault("index", k) != k:
            raise ConfigError(f"stage {stage.kind}: shard {k} has index {spec['index']}; give shards in index order")
        shards.append(spec)
    if not shards:
        raise InputError(f"stage {stage.kind}: no shards to run; check the input")
    count = len(shards)
    for spec in shards:
        spec["count"] = count
    text = json.dumps({"kind": stage.kind, "shards": shards}, sort_keys=True, indent=1)
    atomic_write_text(out / PLAN_NAME, text + "\n")
    return json.loads(text)["shards"]


def _finished_marker(out: Path, spec: Mapping[str, Any], verify: bool) -> dict | None:
    """The shard's marker if the shard is finished (marker matches the plan and the file), else None."""
    path = out / (shard_name(spec["index"], spec["count"]) + ".done")
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("shard") != json.loads(json.dumps(dict(spec), sort_keys=True)):
        return None
    data = out / str(marker.get("file", ""))
    try:
        if data.stat().st_size != marker.get("bytes"):
            return None
    except OSError:
        return None
    if verify and _sha256(data) != marker.get("sha256"):
        return None
    return marker


def _remove_stale_temps(out: Path, todo: Sequence[Mapping[str, Any]]) -> None:
    """Delete temp files a killed run left for the shards about to run (only those: slices of
    other array tasks may be writing theirs right now)."""
    stems = {shard_name(s["index"], s["count"]) for s in todo}
    for f in out.glob(".shard-*"):
        m = re.match(r"\.(shard-\d+-of-\d+)\.", f.name)
        if m and m.group(1) in stems:
            f.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_shard(spec: dict, fn: ShardFn, config: dict, out_dir: str, context: Any = None) -> dict:
    """Run one shard: ``fn(spec, config[, context])``, write its file then its marker, return the marker.

    This is the function engines execute (top-level, so it pickles by reference).
    """
    out = Path(out_dir)
    stem = shard_name(spec["index"], spec["count"])
    result = fn(spec, config) if context is None else fn(spec, config, context)
    suffix, rows, write = _writer_for(result, fn)
    final = out / (stem + suffix)
    atomic_write(final, write)
    marker = {"index": spec["index"], "count": spec["count"], "file": final.name, "rows": rows,
              "bytes": final.stat().st_size, "sha256": _sha256(final), "shard": dict(spec)}
    text = json.dumps(marker, sort_keys=True)
    atomic_write_text(out / (stem + ".done"), text + "\n")
    return json.loads(text)


def _writer_for(result: Any, fn: ShardFn):
    import sys

    import numpy as np

    name = f"{fn.__module__}.{fn.__qualname__}"
    pa = sys.modules.get("pyarrow")   # a worker that made a table has imported pyarrow; numpy stages need not
    if pa is not None and isinstance(result, pa.Table):
        import pyarrow.parquet as pq

        def write(fh):
            pq.write_table(result, fh, compression="zstd")

        return ".parquet", result.num_rows, write
    if isinstance(result, np.ndarray):
        if result.dtype.hasobject:
            raise ConfigError(f"stage worker {name} returned an object array; return a numeric numpy array")

        def write(fh):
            np.save(fh, result, allow_pickle=False)

        return ".npy", int(result.shape[0]) if result.ndim else 1, write
    raise ConfigError(f"stage worker {name} returned {type(result).__name__}; return a pyarrow.Table or a numpy array")


def record_stage(
    kind: str,
    fn: ShardFn,
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: Mapping[str, Any],
    *,
    num_shards: int | None = None,
    records_per_shard: int | None = None,
    fmt: str | None = None,
    id_field: str = "id",
    text_field: str = "text",
) -> Stage:
    """A :class:`Stage` over the records of one input file or folder, in contiguous ranges.

    The input's sha256 and the sharding settings join ``config`` (so a changed input or another
    shard count is refused on resume); the plan is made on first run by
    :func:`plan_record_shards`. Workers read their records with :func:`read_shard_records`.
    """
    from .hashing import file_sha256

    p = Path(input_path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder; check the path")
    if (num_shards is None) == (records_per_shard is None):
        raise ConfigError("give exactly one of num_shards or records_per_shard")
    fmt = fmt or detect_format(p)
    sha = file_sha256(p)
    full = {**dict(config), "input_sha256": sha, "input_format": fmt, "num_shards": num_shards,
            "records_per_shard": records_per_shard, "id_field": id_field, "text_field": text_field}

    def plan() -> list[dict]:
        return plan_record_shards(p, num_shards=num_shards, records_per_shard=records_per_shard,
                                  fmt=fmt, id_field=id_field, text_field=text_field)

    return Stage(kind, fn, out_dir, full, plan, inputs={str(p): sha})


__all__ = [
    "Stage", "StageResult", "plan_record_shards", "prepare_stage", "read_shard_records", "record_stage",
    "run_stage", "run_shard", "shard_name", "stage_status",
]
