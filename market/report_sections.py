"""Report sections over the evidence, attribution, unlearning and ledger tables.

Each builder is ``fn(con, holder_id, period) -> dict | None`` and returns None when the workspace
has no data of its kind yet. Texts shown with highlights are returned as segment lists
(``[{"text": ..., "mark": bool}]``) so that the template, not this code, escapes them.
"""

from __future__ import annotations

from typing import Any, Iterable

from .reports import _rows, register_section, table_exists

TOP_DOCS = 8
CONTEXT = 160  # characters of context around a highlighted span
MAX_MARK = 600  # a longer highlighted span shows its start and end only


def _segments(text: str, spans: Iterable[tuple[int, int]], lo: int | None = None, hi: int | None = None) -> list[dict]:
    """Split ``text[lo:hi]`` into plain and marked segments for the given (start, end) spans."""
    spans = sorted((max(0, s), min(len(text), e)) for s, e in spans if e > s)
    if not spans:
        return [{"text": text[lo or 0: hi if hi is not None else len(text)], "mark": False}]
    lo = max(0, spans[0][0] - CONTEXT) if lo is None else lo
    hi = min(len(text), spans[-1][1] + CONTEXT) if hi is None else hi
    out: list[dict] = []
    pos = lo
    if lo > 0:
        out.append({"text": "…", "mark": False})
    for s, e in spans:
        s, e = max(s, pos), min(e, hi)
        if e <= s:
            continue
        if s > pos:
            gap = text[pos:s]
            if len(gap) > 2 * CONTEXT:
                gap = gap[:CONTEXT] + " … " + gap[-CONTEXT:]
            out.append({"text": gap, "mark": False})
        if e - s > MAX_MARK:
            head, tail = MAX_MARK * 2 // 3, MAX_MARK // 3
            out += [{"text": text[s:s + head], "mark": True},
                    {"text": f" … [{e - s - head - tail:,} more matching characters] … ", "mark": False},
                    {"text": text[e - tail:e], "mark": True}]
        else:
            out.append({"text": text[s:e], "mark": True})
        pos = e
    if pos < hi:
        out.append({"text": text[pos:hi], "mark": False})
    if hi < len(text):
        out.append({"text": "…", "mark": False})
    return out


def _doc_texts(source: str, ids: set[str]) -> dict[str, str]:
    """The texts of ``ids`` from a scanned source, if it is still readable (else an empty dict)."""
    from ..core.errors import TributeError
    from ..core.readers import read_records

    found: dict[str, str] = {}
    if not ids:
        return found
    try:
        for rec in read_records(source):
            if rec.id in ids:
                found[rec.id] = rec.text
                if len(found) == len(ids):
                    break
    except (TributeError, OSError):
        return {}
    return found


def _latest_scan(con, target: str) -> dict[str, Any] | None:
    if not table_exists(con, "scans"):
        return None
    rows = _rows(con.execute(
        "SELECT scan_id, source, n_docs, n_words, kinds, stale, finished_at FROM scans WHERE target = ? "
        "ORDER BY finished_at DESC, scan_id DESC LIMIT 1", [target]))
    return rows[0] if rows else None


def _work_text(con, work_id: str) -> str:
    row = con.execute("SELECT text FROM works WHERE work_id = ?", [work_id]).fetchone()
    return row[0] if row else ""


def _matches(con, scan_id: str, holder_id: str) -> list[dict[str, Any]]:
    return _rows(con.execute(
        "SELECT m.doc_id, m.work_id, w.title, m.kind, m.score, m.matched_words, m.doc_words, m.spans "
        "FROM scan_matches m LEFT JOIN works w USING (work_id) WHERE m.scan_id = ? AND m.holder_id = ? "
        "ORDER BY m.matched_words DESC, m.doc_id, m.work_id, m.kind", [scan_id, holder_id]))


def _examples(con, scan: dict, matches: list[dict], limit: int) -> list[dict[str, Any]]:
    """Side-by-side highlighted spans for the strongest (doc, work) pairs."""
    best: dict[tuple[str, str], dict] = {}
    for m in matches:
        key = (m["doc_id"], m["work_id"])
        if key not in best and m["spans"]:
            best[key] = m
    chosen = list(best.values())[:limit]
    texts = _doc_texts(scan["source"], {m["doc_id"] for m in chosen})
    out = []
    for m in chosen:
        spans = sorted(m["spans"], key=lambda s: (s["doc_start"], s["work_start"]))[:3]
        doc = texts.get(m["doc_id"])
        work = _work_text(con, m["work_id"])
        out.append({
            "doc_id": m["doc_id"], "work_id": m["work_id"], "title": m["title"], "kind": m["kind"],
            "score": m["score"], "matched_words": m["matched_words"], "doc_words": m["doc_words"],
            "doc": _segments(doc, [(s["doc_start"], s["doc_end"]) for s in spans]) if doc is not None else None,
            "work": _segments(work, [(s["work_start"], s["work_end"]) for s in spans]),
        })
    return out


def section_exposure(con, holder_id: str, period: str | None) -> dict[str, Any] | None:
    """Where the holder's works were found in the latest training-corpus scan."""
    scan = _latest_scan(con, "corpus")
    if scan is None:
        return None
    by_work = _rows(con.execute(
        "SELECT w.work_id, w.title, "
        "count(DISTINCT e.doc_id) AS documents, coalesce(sum(e.covered_words), 0) AS covered_words, "
        "(SELECT count(DISTINCT m.doc_id) FROM scan_matches m WHERE m.scan_id = ? AND m.work_id = w.work_id AND m.kind = 'exact') AS exact_docs, "
        "(SELECT count(DISTINCT m.doc_id) FROM scan_matches m WHERE m.scan_id = ? AND m.work_id = w.work_id AND m.kind = 'minhash') AS minhash_docs, "
        "(SELECT count(DISTINCT m.doc_id) FROM scan_matches m WHERE m.scan_id = ? AND m.work_id = w.work_id AND m.kind = 'semantic') AS semantic_docs "
        "FROM works w LEFT JOIN scan_exposure e ON e.work_id = w.work_id AND e.scan_id = ? "
        "WHERE w.holder_id = ? AND w.status = 'active' GROUP BY w.work_id, w.title ORDER BY covered_words DESC, w.work_id",
        [scan["scan_id"]] * 4 + [holder_id]))
    top_documents = _rows(con.execute(
        "SELECT doc_id, work_id, covered_words, doc_words, weight FROM scan_exposure "
        "WHERE scan_id = ? AND holder_id = ? ORDER BY covered_words DESC, doc_id, work_id LIMIT ?",
        [scan["scan_id"], holder_id, TOP_DOCS]))
    matches = _matches(con, scan["scan_id"], holder_id)
    n_docs = len({r["doc_id"] for r in _rows(con.execute(
        "SELECT doc_id FROM scan_exposure WHERE scan_id = ? AND holder_id = ?", [scan["scan_id"], holder_id]))})
    covered = sum(r["covered_words"] for r in by_work)
    found = [r for r in by_work if r["documents"]]
    share = covered / scan["n_words"] if scan["n_words"] else 0.0
    summary = (
        f"{len(found)} of {len(by_work)} works found in {n_docs} of {scan['n_docs']:,} training documents "
        f"({covered:,} words, {100 * share:.2f} % of the corpus) in the scan of {scan['source']}."
        if found else f"None of the {len(by_work)} works was found in the {scan['n_docs']:,} documents of {scan['source']}."
    )
    return {
        "summary": summary,
        "scan": {k: scan[k] for k in ("scan_id", "source", "n_docs", "n_words", "kinds", "stale")},
        "exposure_by_work": by_work,
        "top_documents": top_documents,
        "corpus_examples": _examples(con, scan, matches, TOP_DOCS // 2),
    }


def section_outputs(con, holder_id: str, period: str | None) -> dict[str, Any] | None:
    """Model outputs (latest outputs scan) that reproduce the holder's works."""
    scan = _latest_scan(con, "outputs")
    if scan is None:
        return None
    matches = _matches(con, scan["scan_id"], holder_id)
    per_output: dict[str, dict] = {}
    for m in matches:
        o = per_output.setdefault(m["doc_id"], {"output_id": m["doc_id"], "works": set(), "kinds": set(),
                                                "matched_words": 0, "output_words": m["doc_words"]})
        o["works"].add(m["work_id"])
        o["kinds"].add(m["kind"])
        o["matched_words"] = max(o["matched_words"], m["matched_words"])
    rows = sorted(per_output.values(), key=lambda o: (-o["matched_words"], o["output_id"]))
    for o in rows:
        o["works"] = ", ".join(sorted(o["works"]))
        o["kinds"] = ", ".join(sorted(o["kinds"]))
    summary = (f"{len(rows)} of {scan['n_docs']:,} scanned model outputs reproduce these works "
               f"(longest reproduced passage: {rows[0]['matched_words']} words)." if rows else
               f"None of the {scan['n_docs']:,} scanned model outputs reproduces these works.")
    return {
        "summary": summary,
        "scan": {k: scan[k] for k in ("scan_id", "source", "n_docs", "kinds", "stale")},
        "reproducing_outputs": rows,
        "output_examples": _examples(con, scan, matches, 6),
    }


register_section("exposure", section_exposure)
register_section("outputs", section_outputs)


def section_attribution(con, holder_id: str, period: str | None) -> dict[str, Any] | None:
    """The holder's attribution shares per output, from the latest attribution run."""
    if not table_exists(con, "attribution_runs"):
        return None
    runs = _rows(con.execute(
        "SELECT run_id, method, created_at, n_queries, n_train, lds, lds_sd, rollup_rule, outputs_path "
        "FROM attribution_runs ORDER BY created_at, run_id"))
    if not runs:
        return None
    run = runs[-1]
    per_output = _rows(con.execute(
        "SELECT s.output_id, string_agg(s.work_id, ', ' ORDER BY s.work_id) FILTER (WHERE s.share > 0) AS works, "
        "sum(s.share) AS share, sum(s.score) AS score FROM attribution_shares s WHERE s.run_id = ? AND s.holder_id = ? "
        "GROUP BY s.output_id HAVING sum(s.share) > 0 ORDER BY share DESC, s.output_id", [run["run_id"], holder_id]))
    by_work = _rows(con.execute(
        "SELECT w.work_id, w.title, coalesce(sum(s.share), 0) AS total_share, "
        "count(DISTINCT s.output_id) FILTER (WHERE s.share > 0) AS outputs "
        "FROM works w LEFT JOIN attribution_shares s ON s.work_id = w.work_id AND s.run_id = ? "
        "WHERE w.holder_id = ? AND w.status = 'active' GROUP BY w.work_id, w.title "
        "ORDER BY total_share DESC, w.work_id", [run["run_id"], holder_id]))
    history = _rows(con.execute(
        "SELECT r.run_id, r.method, r.created_at, r.lds, r.n_queries, "
        "coalesce(sum(s.share) FILTER (WHERE s.holder_id = ?), 0) / greatest(r.n_queries, 1) AS mean_share "
        "FROM attribution_runs r LEFT JOIN attribution_shares s USING (run_id) "
        "GROUP BY r.run_id, r.method, r.created_at, r.lds, r.n_queries ORDER BY r.created_at, r.run_id", [holder_id]))
    mean = sum(r["share"] for r in per_output) / run["n_queries"] if run["n_queries"] else 0.0
    lds = (f"its measured LDS is {run['lds']:.2f}" if run["lds"] is not None
           else "its quality (LDS) was not measured for this run, so read the shares as indicative")
    summary = (f"{len(per_output)} of {run['n_queries']} model outputs draw on these works; on average "
               f"{100 * mean:.1f} % of an output is attributed to them (method {run['method']}; {lds}).")
    return {
        "summary": summary,
        "run": {k: run[k] for k in ("run_id", "method", "created_at", "n_queries", "n_train", "lds", "lds_sd",
                                    "rollup_rule")},
        "shares_per_output": per_output,
        "shares_by_work": by_work,
        "share_history": history,
        "mean_share": mean,
    }


def section_unlearning(con, holder_id: str, period: str | None) -> dict[str, Any] | None:
    """Unlearning certificates of runs that covered the holder's works."""
    if not table_exists(con, "unlearning_certificates"):
        return None
    certs = _rows(con.execute(
        "SELECT c.run_id, c.created_at, c.method, c.model_out, c.cost_seconds, c.retrain_seconds, c.cost_ratio, "
        "c.retain_ppl_before, c.retain_ppl_after, c.holdout_ppl_before, c.holdout_ppl_after, "
        "c.forget_rougeL_before, c.forget_rougeL_after, c.mia_auc_before, c.mia_auc_after, c.privleak, "
        "c.relearn_rougeL_after, c.targets_met, c.reference, c.certificate, "
        "(SELECT string_agg(u.work_id, ', ' ORDER BY u.work_id) FROM unlearning_run_works u WHERE u.run_id = c.run_id) AS works "
        "FROM unlearning_certificates c WHERE c.run_id IN (SELECT u.run_id FROM unlearning_run_works u "
        "JOIN works w USING (work_id) WHERE w.holder_id = ?) ORDER BY c.created_at, c.run_id", [holder_id]))
    if not certs:
        return None
    import json as _json

    for c in certs:
        cert = _json.loads(c.pop("certificate"))
        c["statement"] = cert.get("statement") if isinstance(cert, dict) else None
        c["targets"] = _targets(cert)
        share = (cert.get("attribution_share") if isinstance(cert, dict) else None) or {}
        c["share_before"], c["share_after"] = share.get("before"), share.get("after")
        c["share_method"] = share.get("method")
    last = certs[-1]
    met = "met every target" if last["targets_met"] else "did not meet every target"
    summary = (f"Unlearned with {last['method']} (run {last['run_id']}): verbatim memorisation "
               f"{last['forget_rougeL_before']:.3f} → {last['forget_rougeL_after']:.3f} (ROUGE-L), membership AUC "
               f"{last['mia_auc_before']:.2f} → {last['mia_auc_after']:.2f}, retain perplexity "
               f"{last['retain_ppl_before']:.1f} → {last['retain_ppl_after']:.1f}; the run {met}.")
    return {"summary": summary, "certificates": certs}


def _targets(cert: Any) -> list[dict[str, Any]]:
    """The certificate's per-target verdicts as rows (whatever nesting the certificate uses)."""
    if not isinstance(cert, dict):
        return []
    targets = cert.get("checks") or cert.get("targets")
    rows = []
    if isinstance(targets, dict):
        for name, t in sorted(targets.items()):
            if isinstance(t, dict):
                row = {"target": name, **{k: v for k, v in t.items() if not isinstance(v, (dict, list))}}
                if isinstance(row.get("met"), bool):
                    row["met"] = "met" if row["met"] else "NOT met"
                rows.append(row)
            else:
                rows.append({"target": name, "status": t})
    elif isinstance(targets, list):
        rows = [t for t in targets if isinstance(t, dict)]
    return rows


def section_statement(con, holder_id: str, period: str | None) -> dict[str, Any] | None:
    """The holder's ledger statements (one per period with postings) and the policy that priced them."""
    if not table_exists(con, "ledger_transactions"):
        return None
    import json as _json

    from .ledger_io import statement
    from .policy import format_minor, policy_from_settings

    row = con.execute("SELECT settings, policy_hash, toml FROM ledger_policies "
                      "ORDER BY last_used_at DESC, policy_hash LIMIT 1").fetchall()
    if not row:
        return None
    settings, policy_hash, toml_text = row[0]
    policy = policy_from_settings(_json.loads(settings), source=f"stored policy {policy_hash[:19]}")
    acc = f"holder:{holder_id}"
    periods = [r[0] for r in con.execute(
        "SELECT DISTINCT t.period FROM ledger_postings p JOIN ledger_transactions t USING (seq) "
        "WHERE p.account = ? ORDER BY t.period", [acc]).fetchall()]
    if period is not None:
        periods = [p for p in periods if p == period]
    if not periods:
        return None
    mu = policy.minor_units
    statements = []
    for p in periods:
        st = statement(con, holder_id, p, policy)
        earned = sum(int(r["amount"]) for r in st["outputs"]) + sum(int(r["amount"]) for r in st["training"])
        statements.append({
            "period": p, "closed": st["closed"], "currency": st["currency"],
            "opening": format_minor(st["opening"], mu), "closing": format_minor(st["closing"], mu),
            "earned": format_minor(earned, mu), "earned_minor": earned,
            "royalty_lines": [{**r, "amount": format_minor(int(r["amount"]), mu),
                               "revenue": format_minor(int(r["revenue"]), mu) if r.get("revenue") is not None else None,
                               "output_pool": format_minor(int(r["output_pool"]), mu) if r.get("output_pool") is not None else None}
                              for r in st["outputs"]],
            "training_lines": [{**r, "amount": format_minor(int(r["amount"]), mu),
                                "pool": format_minor(int(r["pool"]), mu) if r.get("pool") is not None else None}
                               for r in st["training"]],
            "transactions": [{**t, "amount": format_minor(int(t["amount"]), mu)} for t in st["transactions"]],
        })
    total = sum(s["earned_minor"] for s in statements)
    summary = (f"Earned {format_minor(total, mu)} {policy.currency} in royalties over {len(statements)} "
               f"period(s) under the policy {policy.name!r}; balance {statements[-1]['closing']} {policy.currency}.")
    return {"summary": summary, "policy": {"name": policy.name, "policy_hash": policy_hash, "toml": toml_text},
            "statements": statements}


def section_claims(con, holder_id: str, period: str | None, *, as_of) -> dict[str, Any] | None:
    """The holder's claims: state, decision, deadline flags (judged on ``as_of``) and full history."""
    if not table_exists(con, "claims"):
        return None
    from .claims import claims_policy_from_workspace, list_claims

    if not con.execute("SELECT count(*) FROM claims WHERE holder_id = ?", [holder_id]).fetchall()[0][0]:
        return None
    pol = claims_policy_from_workspace(con) if table_exists(con, "ledger_policies") else None
    today = as_of
    rows = list_claims(con, holder=holder_id, today=today, policy=pol.claims if pol else None)
    claims = []
    for c in rows:
        claims.append({
            "claim_id": c["claim_id"], "works": ", ".join(c["works"]), "remedy": c["remedy"], "state": c["state"],
            "action": c["action"], "reason": c["reason"], "deadline": c["deadline"], "overdue": c["overdue"],
            "at_risk": c["at_risk"], "flag_reason": c["why"],
            "claim_history": [{"seq": h["seq"], "at": h["at"], "state": h["state"], "actor": h["actor"],
                               "note": h["note"]} for h in c["history"]],
        })
    n_open = sum(c["state"] not in ("closed", "withdrawn") for c in claims)
    late = [c["claim_id"] for c in claims if c["overdue"]]
    risky = [c["claim_id"] for c in claims if c["at_risk"]]
    summary = (f"{len(claims)} claim(s) filed, {n_open} open"
               + (f"; overdue: {', '.join(late)}" if late else "") + (f"; at risk: {', '.join(risky)}" if risky else "")
               + f" (deadlines as of {today}).")
    return {"summary": summary, "as_of": today, "claims": claims}


register_section("attribution", section_attribution)
register_section("unlearning", section_unlearning)
register_section("statement", section_statement)
register_section("claims", section_claims, dated=True)
