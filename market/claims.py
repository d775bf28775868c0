"""Claims: a rights holder's request ("remove my works" or "pay me for them") from filing to closing.

A claim moves through ``filed -> evidence_gathered -> quoted -> decided -> executed -> closed``
(or ``withdrawn`` from any open state). Every transition is a new row in ``claim_events`` with
the actor, the time (passed in as ``now``: the CLI gives the clock or ``--at``) and the evidence it
used as JSON; nothing is updated or deleted. An illegal transition is a :class:`ConflictError`.

The decision (:func:`decide_remedy`) follows the ``[claims]`` table of the pricing policy TOML:

* no exposure in any scanned training document and no attribution share -> ``none`` ("no
  exposure found"), closed without action;
* remedy ``compensate`` -> ``compensate``; remedy ``unlearn`` -> a removal;
* remedy ``either`` -> ``compensate`` below ``compensate_below``, a removal at or above
  ``unlearn_at``, in between the cheaper side of the quote;
* a removal is ``retrain`` (batched into the next scheduled exact retrain) when that retrain is
  on or before the deadline (or the claim has none), else ``unlearn`` (targeted unlearning now).

Execution: ``compensate`` books the quoted compensation from ``platform`` to the holder in the
ledger (one adjustment, idempotent on the claim id); ``unlearn`` attaches an unlearning
certificate that covers the claim's works; ``retrain`` schedules the claim into the next batch,
which :func:`close_batch` closes with the new model's hash (see :func:`retrain_plan`).

Example::

    with ws.connect() as con:
        c = file_claim(con, holder="Northwind Press", works=["ruth"], remedy="either", now=now)
        gather_evidence(con, c["claim_id"], now=now)
        quote_claim(con, c["claim_id"], policy, now=now)
        decide(con, c["claim_id"], policy, now=now)
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Mapping

from ..core.errors import ConflictError, InputError, NotFoundError
from .policy import ClaimsPolicy, PricingPolicy
from .workspace import transaction

REMEDIES = ("unlearn", "compensate", "either")
STATES = ("filed", "evidence_gathered", "quoted", "decided", "executed", "closed", "withdrawn")
OPEN_STATES = STATES[:5]
ACTIONS = ("compensate", "unlearn", "retrain", "none")
NEXT: dict[str, tuple[str, ...]] = {
    "filed": ("evidence_gathered", "withdrawn"),
    "evidence_gathered": ("quoted", "withdrawn"),
    "quoted": ("decided", "withdrawn"),
    "decided": ("executed", "closed", "withdrawn"),
    "executed": ("closed", "withdrawn"),
    "closed": (),
    "withdrawn": (),
}
SHARE_PLACES = Decimal("1e-12")


def _utc(now: datetime) -> datetime:
    if not isinstance(now, datetime):
        raise InputError(f"now: {now!r} is not a datetime; pass a timezone-aware datetime")
    return now.replace(tzinfo=timezone.utc) if now.tzinfo is None else now.astimezone(timezone.utc)


def parse_date(value: Any, what: str = "--deadline") -> date | None:
    """A date from ``None``, a ``date`` or an ISO string (``2027-01-15``)."""
    if value is None or isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as e:
        raise InputError(f"{what} {value!r}: not a date; write it like 2027-01-15") from e


def claim_key(holder_id: str, work_ids: Iterable[str], remedy: str) -> str:
    payload = json.dumps([holder_id, sorted(set(work_ids)), remedy])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _rows(cur) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _txn(con, fn):
    with transaction(con):
        return fn()


# --------------------------------------------------------------------------- filing and reading

def file_claim(con, *, holder: str, works: Iterable[str], remedy: str, now: datetime, actor: str = "holder",
               deadline: Any = None, policy: ClaimsPolicy | None = None) -> dict[str, Any]:
    """File a claim, or return the open claim with the same holder, works and remedy (idempotent).

    Returns the claim (see :func:`get_claim`) with ``created`` True when a new one was filed.
    """
    from .catalog import get_work, resolve_holder

    now = _utc(now)
    if remedy not in REMEDIES:
        raise InputError(f"--remedy {remedy!r}: use one of {', '.join(REMEDIES)}")
    h = resolve_holder(con, holder)
    ids = sorted({w.strip() for w in works if w and w.strip()})
    if not ids:
        raise InputError("--works: give at least one work id (comma-separated)")
    for w in ids:
        row = get_work(con, w)
        if row["holder_id"] != h["holder_id"]:
            raise InputError(f"work {w!r}: belongs to {row['holder']!r}, not {h['name']!r}; "
                             "a holder files claims for its own works")
    due = parse_date(deadline)
    if due is None and policy is not None and policy.default_deadline_days:
        due = now.date() + timedelta(days=policy.default_deadline_days)
    key = claim_key(h["holder_id"], ids, remedy)

    def work():
        found = con.execute(
            "SELECT c.claim_id FROM claims c WHERE c.claim_key = ? AND (SELECT e.state FROM claim_events e "
            "WHERE e.claim_id = c.claim_id ORDER BY e.seq DESC LIMIT 1) IN (SELECT unnest(?)) "
            "ORDER BY c.filed_at LIMIT 1", [key, list(OPEN_STATES)]).fetchall()
        if found:
            return found[0][0], False
        n = con.execute("SELECT count(*) FROM claims WHERE claim_key = ?", [key]).fetchall()[0][0]
        cid = f"clm-{key[:10]}" + (f"-{n + 1}" if n else "")
        con.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [cid, key, h["holder_id"], remedy, due, now, actor])
        for w in ids:
            con.execute("INSERT INTO claim_works VALUES (?, ?)", [cid, w])
        _append(con, cid, "filed", actor, now, f"{remedy} claim for {len(ids)} work(s)",
                {"works": ids, "remedy": remedy, "deadline": due.isoformat() if due else None})
        return cid, True

    cid, created = _txn(con, work)
    return {**get_claim(con, cid), "created": created}


def _append(con, claim_id: str, state: str, actor: str, now: datetime, note: str, evidence: Mapping) -> int:
    seq = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM claim_events WHERE claim_id = ?",
                      [claim_id]).fetchall()[0][0]
    con.execute("INSERT INTO claim_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                [claim_id, int(seq), state, actor, _utc(now), note,
                 json.dumps(evidence, sort_keys=True, default=str)])
    return int(seq)


def _transition(con, claim_id: str, to: str, actor: str, now: datetime, note: str, evidence: Mapping) -> dict:
    """Append ``to`` after checking it is a legal next state (inside one transaction)."""
    def work():
        state = current_state(con, claim_id)
        if to not in NEXT[state]:
            allowed = ", ".join(NEXT[state]) or "none (the claim is finished)"
            raise ConflictError(f"claim {claim_id}: cannot go from {state} to {to}; next allowed: {allowed}")
        last = con.execute("SELECT max(happened_at) FROM claim_events WHERE claim_id = ?", [claim_id]).fetchall()[0][0]
        if last is not None and _utc(now) < _utc(last):
            raise InputError(f"claim {claim_id}: time {_utc(now).isoformat()} is before its last event "
                             f"({_utc(last).isoformat()}); give a later --at")
        _append(con, claim_id, to, actor, now, note, evidence)

    _txn(con, work)
    return get_claim(con, claim_id)


def current_state(con, claim_id: str) -> str:
    rows = con.execute("SELECT state FROM claim_events WHERE claim_id = ? ORDER BY seq DESC LIMIT 1",
                       [claim_id]).fetchall()
    if not rows:
        raise NotFoundError(f"claim {claim_id!r}: no such claim; see `tribute claims list`")
    return rows[0][0]


def history(con, claim_id: str) -> list[dict[str, Any]]:
    """Every transition of a claim, oldest first, with its evidence decoded."""
    rows = _rows(con.execute("SELECT seq, state, actor, happened_at AS at, note, evidence FROM claim_events WHERE claim_id = ? "
                             "ORDER BY seq", [claim_id]))
    for r in rows:
        r["evidence"] = json.loads(r["evidence"])
    return rows


def _evidence_of(con, claim_id: str, state: str) -> dict[str, Any] | None:
    rows = con.execute("SELECT evidence FROM claim_events WHERE claim_id = ? AND state = ? ORDER BY seq DESC "
                       "LIMIT 1", [claim_id, state]).fetchall()
    return json.loads(rows[0][0]) if rows else None


def get_claim(con, claim_id: str) -> dict[str, Any]:
    """A claim: its row, works, current state, decision (once decided) and history."""
    rows = _rows(con.execute("SELECT c.*, h.name AS holder FROM claims c JOIN holders h USING (holder_id) "
                             "WHERE c.claim_id = ?", [claim_id]))
    if not rows:
        raise NotFoundError(f"claim {claim_id!r}: no such claim; see `tribute claims list`")
    c = rows[0]
    c.pop("claim_key")
    c["works"] = [r[0] for r in con.execute("SELECT work_id FROM claim_works WHERE claim_id = ? ORDER BY work_id",
                                            [claim_id]).fetchall()]
    c["history"] = history(con, claim_id)
    c["state"] = c["history"][-1]["state"]
    dec = _evidence_of(con, claim_id, "decided")
    c["action"] = dec["action"] if dec else None
    c["reason"] = dec["reason"] if dec else None
    return c


def list_claims(con, *, holder: str | None = None, state: str | None = None, today: date | None = None,
                policy: ClaimsPolicy | None = None) -> list[dict[str, Any]]:
    """Claims (oldest first) with state, action, deadline and the ``overdue`` / ``at_risk`` flags."""
    from .catalog import resolve_holder

    sql = "SELECT claim_id FROM claims"
    params: list[Any] = []
    if holder is not None:
        sql += " WHERE holder_id = ?"
        params.append(resolve_holder(con, holder)["holder_id"])
    out = []
    for (cid,) in con.execute(sql + " ORDER BY filed_at, claim_id", params).fetchall():
        c = get_claim(con, cid)
        if state is not None and c["state"] != state:
            continue
        c.update(deadline_flags(c, today or datetime.now(timezone.utc).date(), policy or ClaimsPolicy(),
                                next_retrain(con, policy)))
        out.append(c)
    return out


# --------------------------------------------------------------------------- deadlines and schedule

def next_retrain(con, policy: ClaimsPolicy | None) -> date | None:
    """The next scheduled retrain: the first date of the schedule after the last retrain recorded."""
    if policy is None or policy.next_retrain is None:
        return None
    d = policy.next_retrain
    last = con.execute("SELECT max(scheduled_for) FROM retrain_batches").fetchall()[0][0]
    while last is not None and d <= last:
        d += timedelta(days=policy.retrain_every_days)
    return d


def deadline_flags(claim: Mapping[str, Any], today: date, policy: ClaimsPolicy,
                   retrain: date | None) -> dict[str, Any]:
    """``overdue`` (open past its deadline), ``at_risk`` (open and due within ``at_risk_days``, or
    a removal still waiting for a retrain that comes after the deadline) and ``why``."""
    due = claim.get("deadline")
    open_ = claim["state"] in OPEN_STATES
    flags = {"overdue": False, "at_risk": False, "why": ""}
    if not open_ or due is None:
        return flags
    if due < today:
        return {"overdue": True, "at_risk": False, "why": f"deadline {due} passed"}
    if (due - today).days <= policy.at_risk_days:
        flags.update(at_risk=True, why=f"due in {(due - today).days} days")
    # a removal not yet decided, or batched into a retrain, depends on the schedule
    removal = claim.get("action") in (None, "retrain") and claim.get("remedy") != "compensate"
    if removal and retrain is not None and retrain > due:
        flags.update(at_risk=True, why=(flags["why"] + "; " if flags["why"] else "")
                     + f"next retrain {retrain} is after the deadline")
    return flags


# --------------------------------------------------------------------------- evidence, quote, decision

def _exposure_counts(con, works: list[str], exposure) -> dict[str, dict[str, Any]]:
    out = {w: {"docs": 0, "weight": "0"} for w in works}
    if exposure is None or not exposure.num_rows:
        return out
    for w, d, wt in zip(*(exposure.column(c).to_pylist() for c in ("work_id", "doc_id", "weight"))):
        if w in out:
            out[w]["docs"] += 1
            out[w]["weight"] = str(Decimal(out[w]["weight"]) + Decimal(repr(float(wt))))
    return out


def _attribution_share(con, works: list[str]) -> dict[str, Any]:
    """Mean share of the works over the outputs of the latest attribution run (exact Decimal)."""
    run = con.execute("SELECT run_id FROM attribution_runs ORDER BY created_at DESC, run_id DESC LIMIT 1").fetchall()
    if not run:
        return {"run_id": None, "share": "0", "outputs": 0}
    rid = run[0][0]
    n = con.execute("SELECT count(DISTINCT output_id) FROM attribution_shares WHERE run_id = ?", [rid]).fetchall()[0][0]
    total = sum((Decimal(repr(float(s))) for (s,) in con.execute(
        "SELECT share FROM attribution_shares WHERE run_id = ? AND work_id IN (SELECT unnest(?)) ORDER BY output_id, "
        "work_id", [rid, works]).fetchall()), Decimal(0))
    share = (total / n).quantize(SHARE_PLACES) if n else Decimal(0)
    return {"run_id": rid, "share": str(share), "outputs": int(n)}


def gather_evidence(con, claim_id: str, *, now: datetime, actor: str = "tribute", exposure=None) -> dict:
    """Record the scan exposure (documents per work) and the attribution share of the claim's works.

    ``exposure`` defaults to the latest corpus scan of the workspace.
    """
    from .evidence import exposure as workspace_exposure, latest_scan_id

    c = get_claim(con, claim_id)
    if exposure is None:
        exposure = workspace_exposure(con)
    per_work = _exposure_counts(con, c["works"], exposure)
    att = _attribution_share(con, c["works"])
    ev = {"scan_id": latest_scan_id(con, "corpus"), "exposure": per_work,
          "exposure_docs": sum(v["docs"] for v in per_work.values()), "attribution": att}
    note = f"{ev['exposure_docs']} training documents carry the works; attribution share {att['share']}"
    return _transition(con, claim_id, "evidence_gathered", actor, now, note, ev)


def quote_claim(con, claim_id: str, policy: PricingPolicy, *, now: datetime, actor: str = "tribute",
                exposure=None) -> dict:
    """Record the ``tribute quote`` comparison (compensation vs unlearning, minor units) for the works."""
    from .evidence import exposure as workspace_exposure
    from .ledger_quote import quote

    c = get_claim(con, claim_id)
    if exposure is None:
        exposure = workspace_exposure(con)
    q = quote(con, policy, works=c["works"], exposure=exposure)
    ev = {"currency": q["currency"], "minor_units": q["minor_units"], "compensation": q["total_compensation"],
          "unlearning": q["total_unlearning"], "cheaper": q["cheaper"], "basis": q["compensation_basis"],
          "horizon_periods": q["horizon_periods"], "policy": policy.name, "policy_hash": policy.policy_hash,
          "works": {r["work_id"]: {"compensation": r["compensation"], "unlearning": r["unlearning"],
                                   "cost_source": r["cost_source"]} for r in q["works"]}}
    note = (f"pay {policy.format(ev['compensation'])} vs unlearn {policy.format(ev['unlearning'])} "
            f"{q['currency']}: {q['cheaper']} is cheaper")
    return _transition(con, claim_id, "quoted", actor, now, note, ev)


def decide_remedy(*, remedy: str, share: Decimal, exposure_docs: int, compensation: int, unlearning: int,
                  deadline: date | None, retrain: date | None, policy: ClaimsPolicy) -> tuple[str, str]:
    """``(action, reason)`` for the numbers of a claim (pure; exact Decimal comparisons)."""
    if not isinstance(share, Decimal):
        raise InputError(f"share {share!r}: must be an exact Decimal")
    if exposure_docs == 0 and share == 0:
        return "none", ("no exposure found: the works are in no scanned training document and have no "
                        "attribution share; nothing to remove or pay")
    if remedy == "compensate":
        return "compensate", "the holder asked to be paid"
    if remedy == "either":
        if share < policy.compensate_below:
            return "compensate", f"share {share} is below compensate_below {policy.compensate_below}"
        if share < policy.unlearn_at:
            if compensation <= unlearning:
                return "compensate", (f"share {share} is between {policy.compensate_below} and {policy.unlearn_at} "
                                      f"and paying ({compensation}) costs no more than unlearning ({unlearning})")
            why = (f"share {share} is between {policy.compensate_below} and {policy.unlearn_at} and unlearning "
                   f"({unlearning}) costs less than paying ({compensation})")
        else:
            why = f"share {share} is at or above unlearn_at {policy.unlearn_at}"
    else:
        why = "the holder asked for removal"
    if retrain is not None and (deadline is None or retrain <= deadline):
        return "retrain", why + f"; the scheduled retrain on {retrain} comes " + (
            "before the deadline" if deadline else "and the claim has no deadline") + ": exact removal in that batch"
    when = f"the next retrain ({retrain}) is after the deadline {deadline}" if retrain else "no retrain is scheduled"
    return "unlearn", why + f"; {when}: targeted unlearning now"


def decide(con, claim_id: str, policy: PricingPolicy, *, now: datetime, actor: str = "tribute") -> dict:
    """Decide the claim under the policy's ``[claims]`` table, from its recorded evidence and quote."""
    c = get_claim(con, claim_id)
    ev = _evidence_of(con, claim_id, "evidence_gathered")
    q = _evidence_of(con, claim_id, "quoted")
    if ev is None or q is None:
        raise ConflictError(f"claim {claim_id}: gather evidence and quote it before deciding")
    cp = policy.claims
    retrain = next_retrain(con, cp)
    share = Decimal(ev["attribution"]["share"])
    action, reason = decide_remedy(remedy=c["remedy"], share=share, exposure_docs=int(ev["exposure_docs"]),
                                   compensation=int(q["compensation"]), unlearning=int(q["unlearning"]),
                                   deadline=c["deadline"], retrain=retrain, policy=cp)
    evidence = {"action": action, "reason": reason, "share": str(share), "exposure_docs": ev["exposure_docs"],
                "compensation": q["compensation"], "unlearning": q["unlearning"],
                "retrain_on": retrain.isoformat() if retrain and action == "retrain" else None,
                "policy": cp.name, "policy_hash": cp.policy_hash, "pricing_policy_hash": policy.policy_hash}
    return _transition(con, claim_id, "decided", actor, now, f"{action}: {reason}", evidence)


# --------------------------------------------------------------------------- execution

def execute_compensation(ws, claim_id: str, policy: PricingPolicy, *, now: datetime, actor: str = "tribute") -> dict:
    """Book the quoted compensation (platform -> holder) in the ledger, then record ``executed``."""
    from .ledger import Ledger, period_of

    with ws.connect(read_only=True) as con:
        c = _expect(con, claim_id, "decided", "compensate")
        q = _evidence_of(con, claim_id, "quoted")
    amount = int(q["compensation"])
    period = period_of(_utc(now), policy.period)
    seq, ref = None, f"claim:{claim_id}"
    with ws.connect(read_only=True) as con:   # booked by an earlier, interrupted execute: reuse it
        done = con.execute("SELECT seq, period FROM ledger_transactions WHERE ref = ?", [ref]).fetchall()
    if done:
        seq, period = int(done[0][0]), done[0][1]
    elif amount > 0:
        seq = Ledger(ws).adjust("platform", f"holder:{c['holder_id']}", amount, period,
                                f"compensation for claim {claim_id} ({', '.join(c['works'])})", policy, ref=ref)
    with ws.connect() as con:
        return _transition(con, claim_id, "executed", actor, now,
                           f"paid {policy.format(amount)} {policy.currency}" + (f" (ledger #{seq})" if seq else ""),
                           {"ledger_seq": seq, "amount": amount, "currency": policy.currency, "period": period})


def attach_certificate(con, claim_id: str, run_id: str, *, now: datetime, actor: str = "tribute") -> dict:
    """Record an unlearning certificate that covers every work of the claim as its execution."""
    from .unlearning_store import list_certificates

    c = _expect(con, claim_id, "decided", "unlearn")
    rows = [r for r in list_certificates(con) if r["run_id"] == run_id]
    if not rows:
        raise NotFoundError(f"unlearning run {run_id!r}: no such certificate; run `tribute unlearn` first")
    cert = rows[0]
    missing = sorted(set(c["works"]) - set(cert["work_ids"] or []))
    if missing:
        raise InputError(f"unlearning run {run_id}: does not cover {', '.join(missing)}; unlearn those works too")
    ev = {"run_id": run_id, "targets_met": bool(cert["targets_met"]), "model_out": cert["model_out"],
          "forget_rougeL_after": cert["forget_rougeL_after"], "mia_auc_after": cert["mia_auc_after"]}
    note = f"unlearning run {run_id} ({'met every target' if cert['targets_met'] else 'did NOT meet every target'})"
    return _transition(con, claim_id, "executed", actor, now, note, ev)


def schedule_retrain(con, claim_id: str, policy: ClaimsPolicy, *, now: datetime, actor: str = "tribute") -> dict:
    """Record the claim as scheduled into the next retrain batch."""
    _expect(con, claim_id, "decided", "retrain")
    retrain = next_retrain(con, policy)
    if retrain is None:
        raise ConflictError(f"claim {claim_id}: no retrain is scheduled in the policy's [claims] table")
    return _transition(con, claim_id, "executed", actor, now, f"scheduled into the retrain of {retrain}",
                       {"retrain_on": retrain.isoformat()})


def review(con, claim_id: str, policy: PricingPolicy, *, now: datetime, actor: str = "tribute",
           exposure=None) -> dict:
    """Gather evidence, quote and decide a filed claim: three recorded transitions."""
    from .evidence import exposure as workspace_exposure

    if exposure is None:
        exposure = workspace_exposure(con)
    gather_evidence(con, claim_id, now=now, actor=actor, exposure=exposure)
    quote_claim(con, claim_id, policy, now=now, actor=actor, exposure=exposure)
    return decide(con, claim_id, policy, now=now, actor=actor)


def execute(ws, claim_id: str, policy: PricingPolicy, *, now: datetime, actor: str = "tribute",
            run_id: str | None = None) -> dict:
    """Carry out a decided claim: pay (``compensate``), attach a certificate (``unlearn``: the
    given run, else the latest one covering every work of the claim) or schedule it (``retrain``)."""
    from .unlearning_store import list_certificates

    with ws.connect(read_only=True) as con:
        c = get_claim(con, claim_id)
    if c["state"] != "decided":
        raise ConflictError(f"claim {claim_id}: is {c['state']}; only a decided claim can be executed")
    if c["action"] == "compensate":
        return execute_compensation(ws, claim_id, policy, now=now, actor=actor)
    with ws.connect() as con:
        if c["action"] == "retrain":
            return schedule_retrain(con, claim_id, policy.claims, now=now, actor=actor)
        if c["action"] == "unlearn":
            if run_id is None:
                runs = [r["run_id"] for r in list_certificates(con) if set(c["works"]) <= set(r["work_ids"] or [])]
                if not runs:
                    raise NotFoundError(f"claim {claim_id}: no unlearning run covers {', '.join(c['works'])}; run "
                                        f"`tribute unlearn --works {','.join(c['works'])}` first")
                run_id = runs[0]   # newest first
            return attach_certificate(con, claim_id, run_id, now=now, actor=actor)
    raise ConflictError(f"claim {claim_id}: decided {c['action']}: nothing to execute; close it")


def close_claim(con, claim_id: str, *, now: datetime, actor: str = "tribute", note: str = "") -> dict:
    """Close an executed claim (or a decided one whose action is ``none``)."""
    c = get_claim(con, claim_id)
    if c["action"] == "retrain" and c["state"] == "executed":
        raise ConflictError(f"claim {claim_id}: waits for its retrain; `tribute claims close-batch` closes it")
    if c["state"] == "decided" and c["action"] != "none":
        raise ConflictError(f"claim {claim_id}: decided {c['action']} but not executed yet; execute it first")
    ev: dict[str, Any] = {"action": c["action"]}
    done = _evidence_of(con, claim_id, "executed") or {}
    if c["action"] == "unlearn":
        ev.update(run_id=done.get("run_id"), targets_met=done.get("targets_met"))
        if not done.get("targets_met"):
            note = (note + "; " if note else "") + (f"closed although unlearning run {done.get('run_id')} did not "
                                                    "meet every target (see its certificate)")
    return _transition(con, claim_id, "closed", actor, now, note or "closed", ev)


def withdraw(con, claim_id: str, *, now: datetime, actor: str = "holder", note: str = "") -> dict:
    return _transition(con, claim_id, "withdrawn", actor, now, note or "withdrawn by the holder", {})


def _expect(con, claim_id: str, state: str, action: str) -> dict:
    c = get_claim(con, claim_id)
    if c["state"] != state or c["action"] != action:
        raise ConflictError(f"claim {claim_id}: is {c['state']} (action {c['action'] or 'none yet'}); this step "
                            f"needs a {state} claim with action {action}")
    return c


# --------------------------------------------------------------------------- batched retraining

def retrain_plan(con, policy: ClaimsPolicy, exposure=None) -> dict[str, Any]:
    """What the next retrain must exclude: the exposure documents of every batched work, with counts."""
    from .evidence import exposure as workspace_exposure

    if exposure is None:
        exposure = workspace_exposure(con)
    batched = [c for c in (get_claim(con, cid) for (cid,) in con.execute(
        "SELECT claim_id FROM claims ORDER BY filed_at, claim_id").fetchall())
        if c["state"] == "executed" and c["action"] == "retrain"]
    works = sorted({w for c in batched for w in c["works"]})
    docs: dict[str, list[str]] = {w: [] for w in works}
    if exposure is not None and exposure.num_rows:
        for w, d in zip(exposure.column("work_id").to_pylist(), exposure.column("doc_id").to_pylist()):
            if w in docs:
                docs[w].append(d)
    exclude = sorted({d for ds in docs.values() for d in ds})
    nr = next_retrain(con, policy)
    return {"retrain_on": nr.isoformat() if nr else None,
            "claims": [{"claim_id": c["claim_id"], "holder_id": c["holder_id"], "works": c["works"],
                        "deadline": c["deadline"]} for c in batched],
            "works": [{"work_id": w, "docs": len(sorted(set(docs[w])))} for w in works],
            "exclude_docs": exclude, "n_exclude": len(exclude)}


def close_batch(con, policy: ClaimsPolicy, *, model_hash: str, now: datetime, actor: str = "tribute",
                checks: Mapping[str, Any] | None = None, exposure=None) -> dict[str, Any]:
    """Record that the scheduled retrain happened and close its claims.

    ``checks`` are the certificate checks run against the new model (``{"passed": bool, ...}``);
    when they fail nothing is written and the claims stay open.
    """
    if not model_hash or not str(model_hash).strip():
        raise InputError("--model-hash: give the hash of the retrained model")
    plan = retrain_plan(con, policy, exposure)
    if not plan["claims"]:
        raise ConflictError("retrain batch: no claims are scheduled for retraining; nothing to close")
    checks = dict(checks or {"passed": None, "note": "no model given: checks not run"})
    if checks.get("passed") is False:
        raise ConflictError(f"retrain batch: the new model fails the checks ({checks.get('note', '')}); "
                            "the claims stay open")
    if plan["retrain_on"] is None:
        raise ConflictError("retrain batch: the policy's [claims] table schedules no retrain (claims.next_retrain)")
    on = date.fromisoformat(plan["retrain_on"])
    batch_id = "rtb-" + hashlib.sha256(json.dumps([on.isoformat(), model_hash, plan["exclude_docs"]]).encode()
                                       ).hexdigest()[:12]
    now = _utc(now)

    def work():
        con.execute("INSERT INTO retrain_batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [batch_id, on, now, actor, model_hash, json.dumps(plan, sort_keys=True, default=str),
                     json.dumps(checks, sort_keys=True, default=str)])
        for c in plan["claims"]:
            if current_state(con, c["claim_id"]) != "executed":
                raise ConflictError(f"claim {c['claim_id']}: changed while the batch was closed; retry")
            _append(con, c["claim_id"], "closed", actor, now, f"removed by the retrain of {on} (model {model_hash})",
                    {"batch_id": batch_id, "model_hash": model_hash, "excluded_docs": plan["n_exclude"],
                     "checks": checks})

    _txn(con, work)
    return {"batch_id": batch_id, "retrain_on": on.isoformat(), "model_hash": model_hash,
            "closed": [c["claim_id"] for c in plan["claims"]], "excluded_docs": plan["n_exclude"], "checks": checks}


def guarded_works(con) -> list[dict[str, Any]]:
    """``[{work_id, claim_id, text}]``: works of open claims not settled by payment (the guard's list)."""
    from .catalog import work_texts

    ids: dict[str, str] = {}
    for (cid,) in con.execute("SELECT claim_id FROM claims ORDER BY filed_at, claim_id").fetchall():
        c = get_claim(con, cid)
        if c["state"] in OPEN_STATES and c["action"] not in ("compensate", "none") and c["remedy"] != "compensate":
            for w in c["works"]:
                ids.setdefault(w, cid)
    return [{"work_id": t["work_id"], "claim_id": ids[t["work_id"]], "text": t["text"]}
            for t in work_texts(con, list(ids))]


def claims_policy_from_workspace(con) -> PricingPolicy | None:
    """The pricing policy the ledger used last, re-read from its stored TOML (with its [claims])."""
    from .policy import parse_policy

    rows = con.execute("SELECT toml, policy_hash FROM ledger_policies ORDER BY last_used_at DESC, policy_hash "
                       "LIMIT 1").fetchall()
    if not rows or not rows[0][0]:
        return None
    return parse_policy(rows[0][0], f"stored policy {rows[0][1][:19]}")


__all__ = [
    "ACTIONS", "REMEDIES", "STATES", "attach_certificate", "close_batch", "close_claim", "current_state",
    "deadline_flags", "decide", "decide_remedy", "execute_compensation", "file_claim", "gather_evidence",
    "get_claim", "guarded_works", "history", "list_claims", "next_retrain", "quote_claim", "retrain_plan",
    "execute", "review", "schedule_retrain", "withdraw",
]
