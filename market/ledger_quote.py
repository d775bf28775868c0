"""`tribute quote`: unlearning a work versus paying for it, side by side.

Compensation is projected from the ledger: the royalties a work earned per period so far (output
pool, training pool and fees), averaged over the periods booked and multiplied by the policy's
``quote.horizon_periods``. With nothing booked yet, a dry-run allocation of the unallocated
revenue events stands in (and the output says so).

The cost of unlearning comes from one of two sources, named in the output per work:

``measured``    an unlearning run covered the work (tables ``unlearning_certificates`` and
                ``unlearning_run_works``, written by ``tribute unlearn``); the latest run wins:
                compute = its cost_seconds / works in the run / 3600 x gpu_hour_price, utility
                cost = (retain_ppl_after / retain_ppl_before - 1, at least 0) x projected
                revenue over the horizon.
``cost model``  the policy's ``[unlearning]`` table: forget-set tokens = tokens_per_word x the
                work's words x the number of training documents that carry it (exposure; 1 when
                no exposure is known); compute = tokens x seconds_per_forgotten_token / 3600 x
                gpu_hour_price + fixed_cost; utility cost = utility_loss_per_work x projected
                revenue over the horizon.

All money is computed in ``Decimal`` and rounded half-even to minor units.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from ..core.errors import InputError
from .policy import PricingPolicy


def _minor(d: Decimal, policy: PricingPolicy) -> int:
    return int((d * policy.scale).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _certificates(con, works: list[str]) -> dict[str, dict[str, Any]]:
    """Measured cost per work from the latest unlearning run that covered it.

    A run's ``cost_seconds`` is shared evenly by the works it unlearned; its utility loss is the
    relative rise of the retain-set perplexity (``retain_ppl_after / retain_ppl_before - 1``,
    at least 0).
    """
    from .ledger import _table_exists

    if not (_table_exists(con, "unlearning_certificates") and _table_exists(con, "unlearning_run_works")):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for w, run, secs, before, after, n in con.execute(
            "SELECT w.work_id, c.run_id, c.cost_seconds::VARCHAR, c.retain_ppl_before::VARCHAR, "
            "c.retain_ppl_after::VARCHAR, (SELECT count(*) FROM unlearning_run_works x WHERE x.run_id = c.run_id) "
            "FROM unlearning_certificates c JOIN unlearning_run_works w USING (run_id) "
            "WHERE w.work_id IN (SELECT unnest(?)) ORDER BY c.created_at, c.run_id", [works]).fetchall():
        if secs is None:
            continue
        loss = Decimal(0)
        if before is not None and after is not None and Decimal(before) > 0:
            loss = max(Decimal(0), Decimal(after) / Decimal(before) - 1)
        out[w] = {"run_id": run, "gpu_seconds": Decimal(secs) / max(int(n), 1), "utility_loss": loss}  # latest wins
    return out


def quote(con, policy: PricingPolicy, *, works: list[str] | None = None, holder: str | None = None,
          exposure=None) -> dict[str, Any]:
    """Unlearning cost against projected compensation for ``works`` or every work of ``holder``."""
    from .catalog import get_work, list_works, resolve_holder
    from .ledger import wrap

    con = wrap(con)
    if bool(works) == bool(holder):
        raise InputError("quote: give --works W1,W2 or --holder H (one of them)")
    if holder:
        h = resolve_holder(con, holder)
        rows = list_works(con, holder=h["holder_id"])
        if not rows:
            raise InputError(f"holder {holder!r}: has no active works to quote")
    else:
        rows = [get_work(con, w) for w in dict.fromkeys(works or [])]
    ids = [r["work_id"] for r in rows]
    # compensation booked so far
    periods = con.execute("SELECT count(DISTINCT period) FROM ledger_batches WHERE currency = ?",
                          [policy.currency]).fetchall()[0][0]
    earned = dict(con.execute(
        "SELECT a.work_id, sum(a.amount)::BIGINT FROM ledger_allocations a JOIN ledger_batches b USING (batch_id) "
        "WHERE b.currency = ? AND a.pool IN ('output', 'training', 'fee') AND a.account LIKE 'holder:%' "
        "AND a.work_id IN (SELECT unnest(?)) GROUP BY a.work_id", [policy.currency, ids]).fetchall())
    revenue = con.execute("SELECT coalesce(sum(e.amount), 0)::BIGINT FROM ledger_events e JOIN ledger_batch_events "
                          "USING (event_key) WHERE e.currency = ?", [policy.currency]).fetchall()[0][0]
    basis = "booked"
    if not periods:
        earned, revenue, periods = _dry_run_estimate(con, policy, ids, exposure)
        basis = "dry-run of unallocated revenue" if periods else "no revenue yet"
    per = max(int(periods), 1)
    horizon = policy.horizon_periods
    rev_horizon = Decimal(int(revenue)) / policy.scale / per * horizon
    docs: dict[str, int] = {}
    if exposure is not None and exposure.num_rows:
        import pyarrow.compute as pc

        t = exposure.group_by("work_id").aggregate([("doc_id" if "doc_id" in exposure.column_names else "weight",
                                                      "count_distinct")])
        docs = dict(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))
        del pc
    certs = _certificates(con, ids)
    m = policy.unlearning
    out_rows = []
    for r in rows:
        w = r["work_id"]
        comp = Decimal(int(earned.get(w, 0) or 0)) / policy.scale / per * horizon
        if w in certs:
            c = certs[w]
            compute = c["gpu_seconds"] / 3600 * m.gpu_hour_price
            utility = c["utility_loss"] * rev_horizon
            source = f"measured (unlearning run {c['run_id']})"
            gpu_hours = c["gpu_seconds"] / 3600
        else:
            n_docs = int(docs.get(w, 0)) or 1
            tokens = m.tokens_per_word * int(r["n_words"]) * n_docs
            gpu_hours = tokens * m.seconds_per_forgotten_token / 3600
            compute = gpu_hours * m.gpu_hour_price + m.fixed_cost
            utility = m.utility_loss_per_work * rev_horizon
            source = "cost model (policy [unlearning])" + ("" if w in docs else ", no exposure: 1 copy assumed")
        unlearn = _minor(compute, policy) + _minor(utility, policy)
        pay = _minor(comp, policy)
        out_rows.append({
            "work_id": w, "holder": r["holder"], "title": r["title"],
            "compensation": pay, "unlearning_compute": _minor(compute, policy),
            "unlearning_utility": _minor(utility, policy), "unlearning": unlearn,
            "gpu_hours": float(round(gpu_hours, 4)), "cheaper": "pay" if pay <= unlearn else "unlearn",
            "cost_source": source,
        })
    total_pay = sum(r["compensation"] for r in out_rows)
    total_un = sum(r["unlearning"] for r in out_rows)
    return {"currency": policy.currency, "minor_units": policy.minor_units, "horizon_periods": horizon,
            "periods_observed": int(periods), "compensation_basis": basis, "works": out_rows,
            "total_compensation": total_pay, "total_unlearning": total_un,
            "retrain_gpu_hours": float(m.retrain_gpu_hours),
            "retrain_cost": _minor(m.retrain_gpu_hours * m.gpu_hour_price, policy),
            "cheaper": "pay" if total_pay <= total_un else "unlearn"}


def _dry_run_estimate(con, policy: PricingPolicy, ids: list[str], exposure):
    """Royalties per work from a dry-run allocation of every unallocated period."""
    from .ledger import _plan_batch

    earned: dict[str, int] = {}
    revenue = 0
    periods = [r[0] for r in con.execute(
        "SELECT DISTINCT period FROM ledger_events WHERE currency = ? ORDER BY 1", [policy.currency]).fetchall()]
    for p in periods:
        plan = _plan_batch(con, policy, p, None, exposure)
        if plan is None:
            continue
        d = plan["allocation"].detail
        revenue += plan["allocation"].stats["revenue"]
        for pool, w, acc, amt in zip(*(d.column(c).to_pylist() for c in ("pool", "work_id", "account", "amount"))):
            if pool in ("output", "training", "fee") and w in ids and acc.startswith("holder:"):
                earned[w] = earned.get(w, 0) + int(amt)
    return earned, revenue, len(periods)


def render_quote(q: dict[str, Any]) -> str:
    from .policy import format_minor

    mu = q["minor_units"]
    cur = q["currency"]
    hdr = ["WORK", "HOLDER", "PAY (PROJECTED)", "UNLEARN COMPUTE", "UNLEARN UTILITY", "UNLEARN TOTAL", "CHEAPER",
           "COST SOURCE"]
    rows = [[r["work_id"], r["holder"], format_minor(r["compensation"], mu), format_minor(r["unlearning_compute"], mu),
             format_minor(r["unlearning_utility"], mu), format_minor(r["unlearning"], mu), r["cheaper"],
             r["cost_source"]] for r in q["works"]]
    widths = [max(len(h), *(len(x[i]) for x in rows)) for i, h in enumerate(hdr)]
    lines = [f"Quote in {cur} over {q['horizon_periods']} periods (compensation: {q['compensation_basis']}, "
             f"{q['periods_observed']} periods observed)",
             "  ".join(h.ljust(w) for h, w in zip(hdr, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip() for x in rows]
    lines.append(f"Total: pay {format_minor(q['total_compensation'], mu)} vs unlearn "
                 f"{format_minor(q['total_unlearning'], mu)} -> {q['cheaper']} is cheaper"
                 + (f"; retraining from scratch: {format_minor(q['retrain_cost'], mu)}" if q["retrain_cost"] else ""))
    return "\n".join(lines) + "\n"
