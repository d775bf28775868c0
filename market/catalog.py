"""The catalog: rights holders and their works.

Each work stores its text and a content hash. Importing is all-or-nothing (one transaction,
validated before anything is written) and idempotent: the same work again changes nothing; the
same id with other content or metadata is a :class:`ConflictError` unless ``replace=True``.
Removing a work that evidence or money points at tombstones it instead of deleting it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..core.errors import ConflictError, InputError, NotFoundError
from ..core.hashing import content_hash
from ..core.readers import Record

WORK_COLUMNS = (
    "work_id", "holder_id", "holder", "title", "licence", "opt_out", "content_hash",
    "n_chars", "n_words", "status", "source", "created_at", "updated_at",
    "tombstoned_at", "tombstone_reason",
)
_TRUE = {"true", "yes", "1", "y", "t"}
_FALSE = {"false", "no", "0", "n", "f", ""}


@dataclass(frozen=True)
class WorkInput:
    """A work to register: its id, text, holder's name and title, plus licence signals."""

    id: str
    text: str
    holder: str
    title: str
    licence: str | None = None
    opt_out: bool = False
    source: str | None = None

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


@dataclass
class ImportResult:
    """What an import did, by work id."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    holders_added: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "added": self.added, "replaced": self.replaced,
            "unchanged": self.unchanged, "holders_added": self.holders_added,
        }


def holder_slug(name: str) -> str:
    """A stable, file-name-safe id for a holder name (``"Harbor Lane Books"`` -> ``harbor-lane-books``)."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")[:64]
    if not slug:
        slug = "h-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
    return slug


def parse_bool(value: Any, where: str, name: str) -> bool:
    """A boolean from JSON/CSV/Parquet values (true/false, yes/no, 1/0)."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise InputError(f"{where}: {name!r} must be true or false, got {value!r}")


def works_from_records(
    records: Iterable[Record],
    *,
    holder: str | None = None,
    title: str | None = None,
    licence: str | None = None,
    opt_out: bool | None = None,
    source: str | None = None,
) -> list[WorkInput]:
    """Turn reader records into :class:`WorkInput` s; options override the records' own columns.

    Raises:
        InputError: a record has no holder or title and no option supplies one.
    """
    out = []
    for rec in records:
        f = rec.fields
        h = holder if holder is not None else f.get("holder")
        t = title if title is not None else (f.get("title") or (rec.id if holder is not None else None))
        if not isinstance(h, str) or not h.strip():
            raise InputError(f"{rec.where}: missing 'holder' for work {rec.id!r}; add a holder column or pass --holder")
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"{rec.where}: missing 'title' for work {rec.id!r}; add a title column or pass --title")
        lic = licence if licence is not None else (f.get("licence", f.get("license")))
        if lic is not None and not isinstance(lic, str):
            raise InputError(f"{rec.where}: 'licence' must be text, got {lic!r}")
        oo = opt_out if opt_out is not None else parse_bool(f.get("opt_out"), rec.where, "opt_out")
        out.append(WorkInput(rec.id, rec.text, h.strip(), t.strip(), lic or None, oo, source or rec.where))
    return out


def import_works(con, works: Iterable[WorkInput], *, replace: bool = False) -> ImportResult:
    """Register ``works`` in one transaction (all or nothing).

    Returns an :class:`ImportResult`. Raises :class:`ConflictError` when a work id exists with
    other content or metadata and ``replace`` is false, or a work is tombstoned.
    """
    import pyarrow as pa

    works = list(works)
    seen: dict[str, WorkInput] = {}
    for w in works:
        if w.id in seen:
            raise InputError(f"{w.source}: duplicate work id {w.id!r} (also at {seen[w.id].source}); ids must be unique")
        seen[w.id] = w
    result = ImportResult()
    if not works:
        return result
    existing = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT w.work_id, w.content_hash, h.name, w.title, w.licence, w.opt_out, w.status "
            "FROM works w JOIN holders h USING (holder_id) WHERE w.work_id IN (SELECT unnest(?))",
            [list(seen)],
        ).fetchall()
    }
    holders = dict(con.execute("SELECT holder_id, name FROM holders").fetchall())
    new_holders: dict[str, str] = {}
    to_add, to_replace = [], []
    for w in works:
        slug = holder_slug(w.holder)
        known = holders.get(slug, new_holders.get(slug))
        if known is None:
            new_holders[slug] = w.holder
        elif known != w.holder:
            raise ConflictError(
                f"{w.source}: holder {w.holder!r} clashes with existing holder {known!r} (same id {slug!r}); "
                "use the existing name"
            )
        old = existing.get(w.id)
        if old is None:
            to_add.append(w)
            continue
        old_hash, old_holder, old_title, old_lic, old_oo, status = old
        if status == "tombstoned":
            raise ConflictError(f"{w.source}: work {w.id!r} was removed (tombstoned); give the new work another id")
        if (old_hash, old_holder, old_title, old_lic, old_oo) == (
            w.content_hash, w.holder, w.title, w.licence, w.opt_out
        ):
            result.unchanged.append(w.id)
        elif replace:
            to_replace.append(w)
        else:
            what = "content" if old_hash != w.content_hash else "metadata"
            raise ConflictError(
                f"{w.source}: work {w.id!r} already exists with different {what}; pass --replace to overwrite it"
            )

    def table(ws: list[WorkInput]) -> "pa.Table":
        return pa.table({
            "work_id": [w.id for w in ws],
            "holder_id": [holder_slug(w.holder) for w in ws],
            "title": [w.title for w in ws],
            "licence": pa.array([w.licence for w in ws], pa.string()),
            "opt_out": pa.array([w.opt_out for w in ws], pa.bool_()),
            "content_hash": [w.content_hash for w in ws],
            "n_chars": pa.array([len(w.text) for w in ws], pa.int64()),
            "n_words": pa.array([len(w.text.split()) for w in ws], pa.int64()),
            "text": [w.text for w in ws],
            "source": pa.array([w.source for w in ws], pa.string()),
        })

    con.execute("BEGIN TRANSACTION")
    try:
        if new_holders:
            hs = pa.table({"holder_id": list(new_holders), "name": list(new_holders.values())})
            con.register("_new_holders", hs)
            con.execute("INSERT INTO holders (holder_id, name) SELECT holder_id, name FROM _new_holders")
            con.unregister("_new_holders")
        cols = "work_id, holder_id, title, licence, opt_out, content_hash, n_chars, n_words, text, source"
        if to_add:
            con.register("_new_works", table(to_add))
            con.execute(f"INSERT INTO works ({cols}) SELECT {cols} FROM _new_works")
            con.execute(
                "INSERT INTO catalog_events (work_id, event, content_hash) "
                "SELECT work_id, 'added', content_hash FROM _new_works ORDER BY work_id"
            )
            con.unregister("_new_works")
        if to_replace:
            con.register("_rep_works", table(to_replace))
            con.execute(
                "INSERT INTO catalog_events (work_id, event, content_hash, detail) "
                "SELECT r.work_id, 'replaced', r.content_hash, 'was ' || w.content_hash "
                "FROM _rep_works r JOIN works w USING (work_id) ORDER BY r.work_id"
            )
            con.execute(
                "UPDATE works SET holder_id = r.holder_id, title = r.title, licence = r.licence, "
                "opt_out = r.opt_out, content_hash = r.content_hash, n_chars = r.n_chars, "
                "n_words = r.n_words, text = r.text, source = r.source, updated_at = current_timestamp "
                "FROM _rep_works r WHERE works.work_id = r.work_id"
            )
            con.unregister("_rep_works")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    result.added = sorted(w.id for w in to_add)
    result.replaced = sorted(w.id for w in to_replace)
    result.unchanged.sort()
    result.holders_added = sorted(new_holders.values())
    return result


def _rows(cur) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


_SELECT_WORKS = (
    "SELECT w.work_id, w.holder_id, h.name AS holder, w.title, w.licence, w.opt_out, w.content_hash, "
    "w.n_chars, w.n_words, w.status, w.source, w.created_at, w.updated_at, w.tombstoned_at, "
    "w.tombstone_reason{text} FROM works w JOIN holders h USING (holder_id)"
)


def list_works(con, *, holder: str | None = None, include_tombstoned: bool = False) -> list[dict[str, Any]]:
    """Works sorted by id (active only unless ``include_tombstoned``), optionally of one holder."""
    where, params = [], []
    if not include_tombstoned:
        where.append("w.status = 'active'")
    if holder is not None:
        where.append("(h.name = ? OR h.holder_id = ?)")
        params += [holder, holder]
    sql = _SELECT_WORKS.format(text="") + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY w.work_id"
    return _rows(con.execute(sql, params))


def get_work(con, work_id: str, *, with_text: bool = False) -> dict[str, Any]:
    """One work by id (tombstoned ones too). Raises :class:`NotFoundError`."""
    sql = _SELECT_WORKS.format(text=", w.text" if with_text else "") + " WHERE w.work_id = ?"
    rows = _rows(con.execute(sql, [work_id]))
    if not rows:
        raise NotFoundError(f"work {work_id!r}: no such work; see `tribute works list`")
    return rows[0]


def list_holders(con) -> list[dict[str, Any]]:
    """Holders sorted by name, with their counts of active and tombstoned works."""
    return _rows(con.execute(
        "SELECT h.holder_id, h.name, "
        "count(w.work_id) FILTER (WHERE w.status = 'active') AS works, "
        "count(w.work_id) FILTER (WHERE w.status = 'tombstoned') AS tombstoned, "
        "coalesce(sum(w.n_words) FILTER (WHERE w.status = 'active'), 0) AS words "
        "FROM holders h LEFT JOIN works w USING (holder_id) GROUP BY h.holder_id, h.name ORDER BY h.name"
    ))


def resolve_holder(con, holder: str) -> dict[str, Any]:
    """A holder by name or id. Raises :class:`NotFoundError`."""
    rows = _rows(con.execute("SELECT holder_id, name FROM holders WHERE name = ? OR holder_id = ?", [holder, holder]))
    if not rows:
        raise NotFoundError(f"holder {holder!r}: no such holder; see `tribute holders list`")
    return rows[0]


def work_references(con, work_id: str) -> dict[str, int]:
    """``{what: rows}`` for every registered table that points at ``work_id``."""
    refs: dict[str, int] = {}
    for table, column, what in con.execute(
        "SELECT table_name, column_name, what FROM work_references ORDER BY table_name, column_name"
    ).fetchall():
        n = con.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}" = ?', [work_id]).fetchone()[0]
        if n:
            refs[what] = refs.get(what, 0) + int(n)
    return refs


def remove_work(con, work_id: str, *, reason: str | None = None) -> str:
    """Remove a work: ``"deleted"`` when nothing points at it, else ``"tombstoned"`` (kept, hidden).

    A tombstoned work keeps its row and hash so evidence, payments and reports stay traceable.
    """
    work = get_work(con, work_id)
    if work["status"] == "tombstoned":
        return "tombstoned"
    refs = work_references(con, work_id)
    con.execute("BEGIN TRANSACTION")
    try:
        if refs:
            detail = ", ".join(f"{n} {what} rows" for what, n in sorted(refs.items()))
            con.execute(
                "UPDATE works SET status = 'tombstoned', tombstoned_at = current_timestamp, "
                "tombstone_reason = ?, updated_at = current_timestamp WHERE work_id = ?",
                [reason, work_id],
            )
            con.execute(
                "INSERT INTO catalog_events (work_id, event, content_hash, detail) VALUES (?, 'tombstoned', ?, ?)",
                [work_id, work["content_hash"], (reason + "; " if reason else "") + "kept for " + detail],
            )
            outcome = "tombstoned"
        else:
            con.execute("DELETE FROM works WHERE work_id = ?", [work_id])
            con.execute(
                "INSERT INTO catalog_events (work_id, event, content_hash, detail) VALUES (?, 'deleted', ?, ?)",
                [work_id, work["content_hash"], reason],
            )
            outcome = "deleted"
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return outcome


def catalog_hash(con) -> str:
    """A hash of the active catalog (ids and content hashes): indexes compare it to detect staleness."""
    h = hashlib.sha256()
    for wid, ch in con.execute(
        "SELECT work_id, content_hash FROM works WHERE status = 'active' ORDER BY work_id"
    ).fetchall():
        h.update(f"{wid}\t{ch}\n".encode("utf-8"))
    return "sha256:" + h.hexdigest()


def work_texts(con, work_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """``[{work_id, holder_id, holder, title, text, content_hash}]`` of active works, sorted by id."""
    sql = (
        "SELECT w.work_id, w.holder_id, h.name AS holder, w.title, w.text, w.content_hash "
        "FROM works w JOIN holders h USING (holder_id) WHERE w.status = 'active'"
    )
    params: list[Any] = []
    if work_ids is not None:
        sql += " AND w.work_id IN (SELECT unnest(?))"
        params.append(list(work_ids))
    return _rows(con.execute(sql + " ORDER BY w.work_id", params))


def as_json_ready(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with timestamps as ISO strings, for ``--json`` output."""
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
