"""Attribution runs in the workspace: the run row, per-output shares, and the score matrix file.

A run is a folder ``<workspace>/attribution/<run_id>/`` holding ``scores.npy`` (float64,
``[n_outputs, n_train]``, no pickles), ``ids.json`` (output and training-document ids, in row and
column order) and ``manifest.json``; plus one ``attribution_runs`` row and its
``attribution_shares`` rows, written in one transaction. The files are written first (atomically)
and removed again if the transaction fails, so nothing is half-written.

Sign convention: score > 0 means including the training document raises the output.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..core.errors import InputError, IntegrityError, NotFoundError
from ..core.manifest import atomic_write_text

SHARE_TOLERANCE = 1e-9


def new_run_id(method: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"attr-{method}-{stamp}-{secrets.token_hex(3)}"


def check_shares(shares) -> None:
    """Each output's shares are in [0, 1] and sum to 1 with exactly one unattributed row."""
    outs = shares.column("output_id").to_pylist()
    works = shares.column("work_id").to_pylist()
    vals = shares.column("share").to_pylist()
    total: dict[str, float] = {}
    unatt: dict[str, int] = {}
    seen: set[tuple] = set()
    for o, w, s in zip(outs, works, vals):
        if s is None or not (-SHARE_TOLERANCE <= s <= 1 + SHARE_TOLERANCE):
            raise IntegrityError(f"shares of output {o!r}: share {s} outside [0, 1]")
        if (o, w) in seen:
            raise IntegrityError(f"shares of output {o!r}: work {w!r} appears twice")
        seen.add((o, w))
        total[o] = total.get(o, 0.0) + s
        if w is None:
            unatt[o] = unatt.get(o, 0) + 1
    for o, t in total.items():
        if abs(t - 1.0) > 1e-6:
            raise IntegrityError(f"shares of output {o!r} sum to {t:.9f}, not 1")
        if unatt.get(o) != 1:
            raise IntegrityError(f"shares of output {o!r}: need exactly one unattributed row")


def save_run(con, runs_dir: str | os.PathLike, *, run_id: str, method: str, scores: np.ndarray,
             output_ids: Sequence[str], train_ids: Sequence[str], shares, manifest: Mapping[str, Any],
             config: Mapping[str, Any], rollup_rule: Mapping[str, Any], model: str | None = None,
             outputs_path: str | None = None, train_path: str | None = None,
             exposure_scan: str | None = None) -> Path:
    """Write the run folder, then the run row and its shares in one transaction; returns the folder."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(output_ids), len(train_ids)):
        raise InputError(f"scores {scores.shape} do not match {len(output_ids)} outputs x {len(train_ids)} docs")
    check_shares(shares)
    if set(shares.column("output_id").to_pylist()) != set(output_ids):
        raise IntegrityError("shares do not cover exactly the attributed outputs")
    folder = Path(runs_dir) / run_id
    if folder.exists():
        raise InputError(f"{folder}: a run with this id exists already; choose another run id")
    folder.mkdir(parents=True)
    try:
        tmp = folder / ".scores.tmp.npy"
        np.save(tmp, scores, allow_pickle=False)
        os.replace(tmp, folder / "scores.npy")
        atomic_write_text(folder / "ids.json", json.dumps({"outputs": list(output_ids), "train": list(train_ids)}))
        atomic_write_text(folder / "manifest.json",
                          json.dumps(dict(manifest), indent=2, sort_keys=True, default=str) + "\n")
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                "INSERT INTO attribution_runs (run_id, method, config, n_queries, n_train, path, model,"
                " outputs_path, train_path, exposure_scan, rollup_rule) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [run_id, method, json.dumps(dict(config), sort_keys=True, default=str), len(output_ids),
                 len(train_ids), str(folder), model, outputs_path, train_path, exposure_scan,
                 json.dumps(dict(rollup_rule), sort_keys=True)],
            )
            rows = shares.append_column("run_id", _const(run_id, shares.num_rows))  # noqa: F841
            con.execute("INSERT INTO attribution_shares SELECT run_id, output_id, work_id, holder_id, share, score "
                        "FROM rows ORDER BY output_id, work_id NULLS LAST")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def _const(value: str, n: int):
    import pyarrow as pa

    return pa.array([value] * n, pa.string())


def _rows(cur) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def list_runs(con) -> list[dict[str, Any]]:
    """Runs, newest first."""
    return _rows(con.execute(
        "SELECT run_id, method, created_at, n_queries, n_train, lds, lds_sd, model, path "
        "FROM attribution_runs ORDER BY created_at DESC, run_id DESC"))


def get_run(con, run_id: str | None = None) -> dict[str, Any]:
    """One run (the newest when ``run_id`` is None)."""
    if run_id is None:
        rows = _rows(con.execute("SELECT * FROM attribution_runs ORDER BY created_at DESC, run_id DESC LIMIT 1"))
        if not rows:
            raise NotFoundError("no attribution run in this workspace; run `tribute attribute run` first")
        return rows[0]
    rows = _rows(con.execute("SELECT * FROM attribution_runs WHERE run_id = ?", [run_id]))
    if not rows:
        raise NotFoundError(f"attribution run {run_id!r}: not found; see `tribute attribute list`")
    return rows[0]


def load_scores(run: Mapping[str, Any]) -> tuple[np.ndarray, list[str], list[str]]:
    """``(scores, output_ids, train_ids)`` of a run, from its folder."""
    folder = Path(run["path"])
    try:
        scores = np.load(folder / "scores.npy", allow_pickle=False)
        ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise NotFoundError(f"{folder}: the run's score files are missing; rerun the attribution") from e
    if scores.shape != (len(ids["outputs"]), len(ids["train"])):
        raise IntegrityError(f"{folder}: scores.npy does not match ids.json; rerun the attribution")
    return scores, ids["outputs"], ids["train"]


def work_shares(con, run_id: str, output_id: str | None = None) -> list[dict[str, Any]]:
    """Shares per (output, work), largest first, the unattributed row last."""
    sql = ("SELECT s.output_id, s.work_id, w.title, s.holder_id, s.share, s.score FROM attribution_shares s "
           "LEFT JOIN works w USING (work_id) WHERE s.run_id = ?")
    args: list[Any] = [run_id]
    if output_id is not None:
        sql += " AND s.output_id = ?"
        args.append(output_id)
    return _rows(con.execute(sql + " ORDER BY s.output_id, s.work_id IS NULL, s.share DESC, s.work_id", args))


def holder_totals(con, run_id: str, output_id: str | None = None) -> list[dict[str, Any]]:
    """Shares per (output, holder): the sum of the holder's works' shares (NULL = unattributed)."""
    sql = ("SELECT s.output_id, s.holder_id, h.name AS holder, sum(s.share) AS share, sum(s.score) AS score "
           "FROM attribution_shares s LEFT JOIN holders h USING (holder_id) WHERE s.run_id = ?")
    args: list[Any] = [run_id]
    if output_id is not None:
        sql += " AND s.output_id = ?"
        args.append(output_id)
    sql += " GROUP BY s.output_id, s.holder_id, h.name ORDER BY s.output_id, s.holder_id IS NULL, share DESC, s.holder_id"
    return _rows(con.execute(sql, args))


def set_lds(con, run_id: str, lds: float, lds_sd: float, lds_config: Mapping[str, Any]) -> None:
    """Record a measured LDS on a run."""
    get_run(con, run_id)
    con.execute("UPDATE attribution_runs SET lds = ?, lds_sd = ?, lds_config = ? WHERE run_id = ?",
                [float(lds), float(lds_sd), json.dumps(dict(lds_config), sort_keys=True), run_id])
