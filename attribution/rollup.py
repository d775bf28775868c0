"""Roll scores over training documents up to works and holders, and normalise them into shares.

The rule (stated in docs/attribution.md; the ledger pays by it):

1. Negative influence is clipped: a document that *lowered* an output earns nothing, and does
   not reduce what other documents earn: ``s+ = max(score, 0)``.
2. A document carries works through exposure rows ``(work_id, doc_id, weight in (0, 1])``:
   the work earns ``weight x s+`` of that document. Where a document's weights sum above 1 they
   are scaled to sum to 1; the part of a document carried by no work (``1 - sum of weights``)
   stays unattributed.
3. A work's share of an output is its earnings over the output's total positive score
   ``sum_docs s+``. Works below ``floor`` (a share) or beyond the ``top_k`` largest go to the
   remainder. The explicit ``unattributed`` row (work_id and holder_id NULL) holds what is left,
   so the shares of an output sum to 1. An output with no positive score is 100 % unattributed.
4. A holder's share is the sum of its works' shares (:func:`holder_shares`).

Scores follow the sign convention: > 0 means the document raises the output.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.errors import InputError

EXPOSURE_COLUMNS = ("work_id", "doc_id", "weight", "holder_id")


def _check_exposure(exposure):
    missing = [c for c in EXPOSURE_COLUMNS if c not in exposure.column_names]
    if missing:
        raise InputError(f"exposure table: missing columns {missing}; it needs {list(EXPOSURE_COLUMNS)}")
    w = np.asarray(exposure.column("weight").to_pylist(), dtype=np.float64)
    if len(w) and (not np.isfinite(w).all() or (w <= 0).any() or (w > 1).any()):
        raise InputError("exposure table: weight must be in (0, 1]; fix the exposure rows")
    return w


def rollup(scores: np.ndarray, doc_ids: Sequence[str], output_ids: Sequence[str], exposure,
           top_k: int | None = None, floor: float = 0.0):
    """Shares per (output, work) as a pyarrow table.

    Args:
        scores: ``[n_outputs, n_docs]`` attribution scores (sign convention: > 0 raises the output).
        doc_ids, output_ids: ids of the columns and rows of ``scores``.
        exposure: pyarrow table ``work_id, doc_id, weight, holder_id`` (docs not in ``doc_ids``
            are ignored; a doc with no row carries no work).
        top_k: keep at most this many works per output (the rest go to the remainder).
        floor: drop works whose share is below this (to the remainder).

    Returns:
        pyarrow table ``output_id, work_id, holder_id, share, score`` sorted by output then
        descending share, with one ``unattributed`` row (work_id, holder_id null) per output.
    """
    import pyarrow as pa

    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(output_ids), len(doc_ids)):
        raise InputError(f"scores {scores.shape}: expected [outputs, docs] = {(len(output_ids), len(doc_ids))}")
    if not np.isfinite(scores).all():
        raise InputError("scores: NaN or infinite values; rerun the attribution")
    if top_k is not None and top_k < 1:
        raise InputError(f"top_k={top_k}: must be >= 1")
    if not 0 <= floor < 1:
        raise InputError(f"floor={floor}: must be a share in [0, 1)")
    w = _check_exposure(exposure)
    col = {d: i for i, d in enumerate(doc_ids)}
    works = exposure.column("work_id").to_pylist()
    holders = exposure.column("holder_id").to_pylist()
    docs = exposure.column("doc_id").to_pylist()
    keep = [r for r, d in enumerate(docs) if d in col]
    work_ids = sorted({works[r] for r in keep})
    widx = {x: j for j, x in enumerate(work_ids)}
    holder_of: dict[str, str] = {}
    for r in keep:
        h = holder_of.setdefault(works[r], holders[r])
        if h != holders[r]:
            raise InputError(f"exposure table: work {works[r]!r} has two holders ({h!r}, {holders[r]!r})")
    # carry[doc, work]: fraction of the doc's positive score the work earns
    carry = np.zeros((len(doc_ids), len(work_ids)))
    for r in keep:
        carry[col[docs[r]], widx[works[r]]] += w[r]
    over = carry.sum(1)
    carry[over > 1] /= over[over > 1, None]
    pos = np.clip(scores, 0.0, None)
    total = pos.sum(1)                                    # [n_outputs]
    earned = pos @ carry                                  # [n_outputs, n_works]
    rows = {"output_id": [], "work_id": [], "holder_id": [], "share": [], "score": []}
    for q, oid in enumerate(output_ids):
        kept = []
        if total[q] > 0:
            share = earned[q] / total[q]
            order = sorted(range(len(work_ids)), key=lambda j: (-share[j], work_ids[j]))
            kept = [j for j in order if share[j] > 0 and share[j] >= floor][: top_k or None]
        got = 0.0
        for j in kept:
            s = float(earned[q, j] / total[q])
            got += s
            rows["output_id"].append(oid)
            rows["work_id"].append(work_ids[j])
            rows["holder_id"].append(holder_of[work_ids[j]])
            rows["share"].append(s)
            rows["score"].append(float(earned[q, j]))
        rows["output_id"].append(oid)
        rows["work_id"].append(None)
        rows["holder_id"].append(None)
        rows["share"].append(max(0.0, 1.0 - got))
        rows["score"].append(float(total[q] - sum(earned[q, j] for j in kept)))
    return pa.table({
        "output_id": pa.array(rows["output_id"], pa.string()),
        "work_id": pa.array(rows["work_id"], pa.string()),
        "holder_id": pa.array(rows["holder_id"], pa.string()),
        "share": pa.array(rows["share"], pa.float64()),
        "score": pa.array(rows["score"], pa.float64()),
    })


def holder_shares(shares):
    """Sum a :func:`rollup` table's shares per (output, holder); the unattributed row stays null."""
    import pyarrow as pa

    acc: dict[tuple, list[float]] = {}
    for o, h, s, sc in zip(shares.column("output_id").to_pylist(), shares.column("holder_id").to_pylist(),
                           shares.column("share").to_pylist(), shares.column("score").to_pylist()):
        a = acc.setdefault((o, h), [0.0, 0.0])
        a[0] += s
        a[1] += sc
    keys = sorted(acc, key=lambda k: (k[0], k[1] is None, -acc[k][0], k[1] or ""))
    return pa.table({
        "output_id": pa.array([k[0] for k in keys], pa.string()),
        "holder_id": pa.array([k[1] for k in keys], pa.string()),
        "share": pa.array([acc[k][0] for k in keys], pa.float64()),
        "score": pa.array([acc[k][1] for k in keys], pa.float64()),
    })
