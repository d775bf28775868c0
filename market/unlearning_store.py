"""Storage of unlearning certificates (table ``unlearning_certificates`` + ``unlearning_run_works``).

Example::

    with ws.connect() as con:
        save_certificate(con, cert)                  # one transaction
        list_certificates(con, holder="northwind-press")
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from ..core.errors import ConflictError, InputError, NotFoundError

COLUMNS = ("run_id", "created_at", "holder_id", "method", "model_in", "model_out", "cost_seconds",
           "retrain_seconds", "cost_ratio", "retain_ppl_before", "retain_ppl_after", "holdout_ppl_before",
           "holdout_ppl_after", "forget_rougeL_before", "forget_rougeL_after", "mia_auc_before", "mia_auc_after",
           "privleak", "relearn_rougeL_after", "targets_met", "reference", "certificate", "path")


def certificate_row(cert: Mapping[str, Any]) -> dict[str, Any]:
    """The table row of a certificate dict (as built by ``tribute.attribution.unlearn``)."""
    try:
        run, before, after, cost = cert["run"], cert["before"], cert["after"], cert["cost"]
        return {
            "run_id": run["run_id"], "created_at": run["created_at"], "holder_id": run.get("holder_id"),
            "method": run["method"], "model_in": run["model_in"], "model_out": run["model_out"],
            "cost_seconds": cost["seconds"], "retrain_seconds": cost.get("retrain_seconds"),
            "cost_ratio": cost.get("ratio"),
            "retain_ppl_before": before.get("retain_ppl"), "retain_ppl_after": after.get("retain_ppl"),
            "holdout_ppl_before": before.get("holdout_ppl"), "holdout_ppl_after": after.get("holdout_ppl"),
            "forget_rougeL_before": before.get("forget_rougeL"), "forget_rougeL_after": after.get("forget_rougeL"),
            "mia_auc_before": before.get("mia_auc_mink"), "mia_auc_after": after.get("mia_auc_mink"),
            "privleak": cert["checks"]["privleak"].get("signed") if cert.get("reference") else None,
            "relearn_rougeL_after": after.get("relearn_rougeL"),
            "targets_met": bool(cert["targets_met"]),
            "reference": "retrain" if cert.get("reference") else "proxy",
            "certificate": json.dumps(cert, sort_keys=True, default=str),
            "path": cert.get("path") or "",
        }
    except (KeyError, TypeError) as e:
        raise InputError(f"certificate: missing field {e}; give a certificate written by `tribute unlearn`") from e


def save_certificate(con, cert: Mapping[str, Any]) -> str:
    """Insert the certificate and its works in one transaction; return the run id."""
    row = certificate_row(cert)
    works = sorted(set(cert["run"].get("work_ids") or []))
    if con.execute("SELECT 1 FROM unlearning_certificates WHERE run_id = ?", [row["run_id"]]).fetchone():
        raise ConflictError(f"unlearning run {row['run_id']!r}: already stored")
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"INSERT INTO unlearning_certificates ({', '.join(COLUMNS)}) VALUES "
                    f"({', '.join('?' for _ in COLUMNS)})", [row[c] for c in COLUMNS])
        for w in works:
            con.execute("INSERT INTO unlearning_run_works VALUES (?, ?)", [row["run_id"], w])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return row["run_id"]


def _rows(cur) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def list_certificates(con, *, holder: str | None = None, work_id: str | None = None) -> list[dict[str, Any]]:
    """Headline rows (without the JSON), newest first, optionally of one holder id or one work."""
    cols = [c for c in COLUMNS if c != "certificate"]
    sql = f"SELECT {', '.join('c.' + c for c in cols)}, " \
          "(SELECT list(work_id ORDER BY work_id) FROM unlearning_run_works w WHERE w.run_id = c.run_id) AS work_ids " \
          "FROM unlearning_certificates c"
    where, params = [], []
    if holder is not None:
        where.append("c.holder_id = ?")
        params.append(holder)
    if work_id is not None:
        where.append("c.run_id IN (SELECT run_id FROM unlearning_run_works WHERE work_id = ?)")
        params.append(work_id)
    if where:
        sql += " WHERE " + " AND ".join(where)
    return _rows(con.execute(sql + " ORDER BY c.created_at DESC, c.run_id", params))


def get_certificate(con, run_id: str) -> dict[str, Any]:
    """The full certificate dict of one run."""
    row = con.execute("SELECT certificate FROM unlearning_certificates WHERE run_id = ?", [run_id]).fetchone()
    if not row:
        raise NotFoundError(f"unlearning run {run_id!r}: no such run; see `tribute unlearn --help`")
    return json.loads(row[0])
