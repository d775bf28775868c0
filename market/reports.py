"""Per-holder reports: one self-contained HTML page, plus JSON and CSV with the same numbers.

A report is assembled from the workspace by *sections*; each section reads the tables it needs
and is left out (with a note) when the workspace has none yet, so the same code serves a
workspace with only a catalog and one with scans, attribution runs, certificates and a ledger.

Everything holder-supplied is escaped by the template engine (Jinja2 with autoescaping on);
charts are inline SVG with a title and description and their numbers repeated in tables.
Output is deterministic: the same workspace gives the same bytes, apart from the generation
timestamp (which ``generated_at`` lets a caller fix).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from ..core.errors import InputError
from ..core.manifest import atomic_write_text
from .catalog import list_holders, list_works, resolve_holder
from .svg import bar_chart

FORMATS = ("html", "json", "csv")


def table_exists(con, name: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
    ).fetchone()[0])


def _rows(cur) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _plain(v: Any) -> Any:
    """JSON-ready scalars: timestamps to ISO strings, Decimals to strings, numpy to Python."""
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if type(v).__name__ == "Decimal":
        return str(v)
    if hasattr(v, "item"):
        return v.item()
    return v


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return _plain(obj)


# --------------------------------------------------------------------------- sections

def section_works(con, holder_id: str, period: str | None) -> dict[str, Any]:
    works = list_works(con, holder=holder_id, include_tombstoned=True)
    keep = ("work_id", "title", "licence", "opt_out", "n_words", "content_hash", "status", "tombstone_reason")
    return {"works": [{k: w[k] for k in keep} for w in works]}


Section = Callable[[Any, str, "str | None"], "dict[str, Any] | None"]
SECTIONS: list[tuple[str, Section]] = [("works", section_works)]
DATED: set[str] = set()


def register_section(name: str, fn: Section, *, dated: bool = False) -> None:
    """Add a section builder (``fn(con, holder_id, period) -> dict | None``) after the others.

    A ``dated`` section judges something against a date (deadlines) and is called as
    ``fn(con, holder_id, period, as_of=date)``.
    """
    SECTIONS.append((name, fn))
    if dated:
        DATED.add(name)


# --------------------------------------------------------------------------- assembly

def holder_report(con, holder: str, *, period: str | None = None, as_of: date | None = None) -> dict[str, Any]:
    """All report data for one holder, JSON-ready (no timestamp of generation).

    ``as_of`` is the date deadlines are judged against (default: today, UTC); the same workspace
    and the same ``as_of`` give the same data.
    """
    from . import report_sections  # noqa: F401  (registers the evidence/attribution/ledger sections)

    h = resolve_holder(con, holder)
    data: dict[str, Any] = {"holder": {"holder_id": h["holder_id"], "name": h["name"]}, "period": period}
    for name, fn in SECTIONS:
        part = fn(con, h["holder_id"], period, as_of=as_of or _today()) if name in DATED else fn(con, h["holder_id"], period)
        data[name] = _clean(part) if part is not None else None
    return data


def _today() -> date:
    return datetime.now(timezone.utc).date()


@dataclass
class ReportFiles:
    holder_id: str
    paths: list[Path]


def _write_csvs(data: dict[str, Any], folder: Path) -> list[Path]:
    """One CSV per list-of-records in the data (``works.csv``, ``exposure_by_work.csv``, ...)."""
    out = []
    for key, rows in sorted(_tables(data).items()):
        buf = io.StringIO()
        cols = sorted({k for r in rows for k in r})
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for k, v in r.items()})
        path = folder / f"{key}.csv"
        atomic_write_text(path, buf.getvalue())
        out.append(path)
    return out


def _tables(data: dict[str, Any]) -> dict[str, list[dict]]:
    """The lists of flat records inside the report data, keyed by their own key (unique by design)."""
    found: dict[str, list[dict]] = {}
    for k, v in data.items():
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            found[k] = v
        elif isinstance(v, dict):
            found.update(_tables(v))
    return found


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tribute.market", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["bar_chart"] = lambda *a, **k: __import__("markupsafe").Markup(bar_chart(*a, **k))
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * float(v):.1f} %"
    env.filters["num"] = lambda v, nd=3: "-" if v is None else (f"{v:,}" if isinstance(v, int) else f"{float(v):.{nd}f}")
    return env


def render_html(data: dict[str, Any], generated_at: str) -> str:
    return _env().get_template("report.html").render(d=data, generated_at=generated_at)


def render_index(holders: list[dict[str, Any]], generated_at: str, period: str | None) -> str:
    return _env().get_template("index.html").render(holders=holders, generated_at=generated_at, period=period)


def write_reports(
    con,
    out_dir: str | os.PathLike,
    *,
    holders: Iterable[str] | None = None,
    formats: Iterable[str] = FORMATS,
    period: str | None = None,
    generated_at: str | None = None,
    as_of: date | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[ReportFiles]:
    """Write reports for ``holders`` (all when None) into ``out_dir/<holder_id>/``.

    Each holder gets ``report.html``, ``report.json`` and CSVs (per ``formats``); with all
    holders an ``index.html`` links them. Files are written atomically. Claim deadlines are
    judged on ``as_of`` (default: the date of ``generated_at``).
    """
    formats = list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(f"--format {','.join(bad) or '(none)'}: unknown; use one or more of {', '.join(FORMATS)}")
    generated_at = generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    as_of = as_of or date.fromisoformat(generated_at[:10])  # deadlines: judged on the day of generation by default
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; give --out a folder")
    all_holders = list_holders(con)
    wanted = [resolve_holder(con, h)["holder_id"] for h in holders] if holders is not None else [h["holder_id"] for h in all_holders]
    items = progress(wanted) if progress else wanted
    written: list[ReportFiles] = []
    summaries = []
    for hid in items:
        data = holder_report(con, hid, period=period, as_of=as_of)
        folder = out / hid
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        if "json" in formats:
            p = folder / "report.json"
            atomic_write_text(p, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            paths.append(p)
        if "csv" in formats:
            paths += _write_csvs(data, folder)
        if "html" in formats:
            p = folder / "report.html"
            atomic_write_text(p, render_html(data, generated_at))
            paths.append(p)
        written.append(ReportFiles(hid, paths))
        summaries.append({"holder_id": hid, "name": data["holder"]["name"], "works": len(data["works"]["works"])})
    if holders is None and "html" in formats:
        atomic_write_text(out / "index.html", render_index(summaries, generated_at, period))
    return written
