"""One streaming reader for every input tribute takes: JSONL, CSV, Parquet, or a folder of .txt.

Every record has an ``id`` and a ``text``; other columns travel along in ``Record.fields``.
Malformed input raises :class:`~tribute.core.errors.InputError` with the file and the line (or
row) and what to do about it. Readers stream: only the set of ids seen so far is kept, to
report duplicates.

Example::

    for rec in read_records("corpus.jsonl"):
        print(rec.id, len(rec.text))
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

from .errors import InputError

FORMATS = ("jsonl", "csv", "parquet", "txtdir", "txt")
_SUFFIXES = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".txt": "txt",
}


@dataclass(frozen=True)
class Record:
    """One input row: ``id``, ``text``, any other columns, and where it came from."""

    id: str
    text: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""


def detect_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its suffix (``.gz`` allowed for JSONL and CSV), or a folder."""
    p = Path(path)
    if p.is_dir():
        return "txtdir"
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _SUFFIXES.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise InputError(
            f"{p}: unknown input format; use .jsonl, .csv, .parquet, .txt or a folder of .txt files"
        )
    return fmt


def read_records(
    path: str | os.PathLike,
    *,
    fmt: str | None = None,
    id_field: str = "id",
    text_field: str = "text",
) -> Iterator[Record]:
    """Stream the records of ``path``, validating each one.

    Args:
        path: a JSONL / CSV / Parquet file (JSONL and CSV may be gzipped), a single ``.txt``
            file (its stem is the id), or a folder of ``.txt`` files.
        fmt: force a format (one of ``FORMATS``) instead of guessing from the suffix.
        id_field, text_field: column names of the id and the text.

    Raises:
        InputError: the file is missing or malformed; the message names the file and line/row.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder; check the path")
    fmt = fmt or detect_format(p)
    if fmt not in FORMATS:
        raise InputError(f"{p}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "txtdir" and not p.is_dir():
        raise InputError(f"{p}: not a folder; give a folder of .txt files")
    raw = {
        "jsonl": _iter_jsonl, "csv": _iter_csv, "parquet": _iter_parquet,
        "txtdir": _iter_txtdir, "txt": _iter_txt,
    }[fmt](p)
    seen: dict[str, str] = {}
    for where, row in raw:
        rec = to_record(where, row, id_field, text_field)
        first = seen.get(rec.id)
        if first is not None:
            raise InputError(
                f"{where}: duplicate id {rec.id!r} (first at {first}); ids must be unique within a file"
            )
        seen[rec.id] = where
        yield rec


def to_record(where: str, row: Mapping[str, Any], id_field: str = "id", text_field: str = "text") -> Record:
    """Validate one raw row (from any format) into a :class:`Record`; ``where`` names it in errors."""
    if id_field not in row or row[id_field] is None or row[id_field] == "":
        raise InputError(f"{where}: missing {id_field!r}; every record needs a non-empty {id_field!r}")
    if text_field not in row or row[text_field] is None:
        raise InputError(f"{where}: missing {text_field!r}; every record needs a {text_field!r}")
    rid, text = row[id_field], row[text_field]
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise InputError(f"{where}: {id_field!r} must be a string or an integer, got {type(rid).__name__}")
    if not isinstance(text, str):
        raise InputError(f"{where}: {text_field!r} must be a string, got {type(text).__name__}")
    rid = str(rid)
    if rid != rid.strip() or any(c in rid for c in "\n\r\t\0"):
        raise InputError(f"{where}: id {rid!r} has surrounding or control whitespace; trim it")
    if not text.strip():
        raise InputError(f"{where}: empty text for id {rid!r}; give it text or drop the record")
    fields = {k: v for k, v in row.items() if k not in (id_field, text_field)}
    return Record(rid, text, fields, where)


def _open_binary(p: Path) -> IO[bytes]:
    if p.suffix.lower() == ".gz":
        return gzip.open(p, "rb")  # type: ignore[return-value]
    return open(p, "rb")


def _decode_line(p: Path, lineno: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{p}:{lineno}: not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); "
            "re-save the file as UTF-8"
        ) from e


def _decoded_lines(p: Path, fh: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(line number, decoded line) pairs; non-UTF-8 bytes are an error naming the line."""
    for lineno, raw in enumerate(fh, start=1):
        yield lineno, _decode_line(p, lineno, raw)


def parse_jsonl_line(p: Path, lineno: int, raw: bytes) -> dict | None:
    """One JSONL line as an object (``None`` for a blank line), validated with line-numbered errors."""
    line = _decode_line(p, lineno, raw)
    if lineno == 1 and line.startswith("\ufeff"):
        line = line[1:]
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(
            f"{p}:{lineno}: invalid JSON ({e.msg} at column {e.colno}); each line must be one JSON object"
        ) from e
    if not isinstance(obj, dict):
        raise InputError(f"{p}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _iter_jsonl(p: Path) -> Iterator[tuple[str, dict]]:
    with _open_binary(p) as fh:
        for lineno, raw in enumerate(fh, start=1):
            obj = parse_jsonl_line(p, lineno, raw)
            if obj is not None:
                yield f"{p}:{lineno}", obj


def _iter_csv(p: Path) -> Iterator[tuple[str, dict]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with _open_binary(p) as fh:
        lines = _decoded_lines(p, fh)
        text_lines = (line.lstrip("\ufeff") if n == 1 else line for n, line in lines)
        reader = csv.DictReader(text_lines)
        try:
            header = reader.fieldnames
        except csv.Error as e:
            raise InputError(f"{p}:1: unreadable CSV header ({e}); check quoting") from e
        if not header:
            raise InputError(f"{p}: empty CSV file; the first line must be a header with id and text")
        try:
            for row in reader:
                where = f"{p}:{reader.line_num}"
                if None in row:
                    raise InputError(f"{where}: more fields than the header has; check quoting and commas")
                yield where, row
        except csv.Error as e:
            raise InputError(f"{p}:{reader.line_num}: malformed CSV ({e}); check quoting") from e


def _iter_parquet(p: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{p}: not a readable Parquet file ({e}); re-export it") from e
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=4096):
            for obj in batch.to_pylist():
                row += 1
                for k, v in obj.items():
                    if isinstance(v, bytes):
                        try:
                            obj[k] = v.decode("utf-8")
                        except UnicodeDecodeError as e:
                            raise InputError(
                                f"{p}: row {row}: column {k!r} is not valid UTF-8; store text as UTF-8 strings"
                            ) from e
                yield f"{p}: row {row}", obj
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{p}: row {row + 1}: unreadable Parquet data ({e}); re-export it") from e


def read_txt_file(p: Path) -> str:
    """A text file's contents as UTF-8 (a BOM is dropped); bad bytes are an error naming the line."""
    data = p.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(
            f"{p}:{line}: not valid UTF-8 (byte {data[e.start]:#04x}); re-save the file as UTF-8"
        ) from e


def _iter_txt(p: Path) -> Iterator[tuple[str, dict]]:
    yield str(p), {"id": p.stem, "text": read_txt_file(p)}


def _iter_txtdir(p: Path) -> Iterator[tuple[str, dict]]:
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".txt")
    if not files:
        raise InputError(f"{p}: folder has no .txt files; put one .txt file per document in it")
    for f in files:
        yield str(f), {"id": f.stem, "text": read_txt_file(f)}


def iter_text_batches(records: Iterator[Record], batch_size: int = 1024) -> Iterator[list[Record]]:
    """Group a record stream into lists of at most ``batch_size`` records."""
    batch: list[Record] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


__all__ = ["FORMATS", "Record", "detect_format", "parse_jsonl_line", "read_records", "read_txt_file", "to_record", "iter_text_batches"]
