"""`tribute claims ...` and `tribute guard`: a rights holder's claim from filing to resolution, and
the output guard that stops a model reproducing claimed works while removal is pending.

Each command parses, makes one library call (``tribute.market.claims``, ``tribute.indexes.guard``)
and renders. ``close-batch`` composes: it retrains a SISA model's affected shards
(``tribute.attribution.unlearn.sisa``) and checks the new model for verbatim memorisation of
the batched works with the guard's exact index. See docs/claims.md.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import click

from .common import echo_json, echo_table, json_option, open_workspace, workspace_option

EXAMPLE_POLICY = Path(__file__).resolve().parent / "demo_corpus" / "policy.toml"

policy_option = click.option(
    "--policy", "policy_path", type=click.Path(dir_okay=False),
    help="Pricing policy TOML with a [claims] table (default: the policy the ledger used last).")
at_option = click.option("--at", "at", help="Time of the action, ISO 8601 (default: now, UTC).")
actor_option = click.option("--actor", default=None, help="Who acts (recorded with the transition).")


def _now(at: str | None) -> datetime:
    from ..core.errors import InputError

    if not at:
        return datetime.now(timezone.utc)
    try:
        t = datetime.fromisoformat(at.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise InputError(f"--at {at!r}: not an ISO 8601 time; write it like 2026-12-01T09:00:00Z") from e
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _policy(con, path):
    """The pricing policy (with its [claims] table): --policy, else the ledger's latest stored one."""
    from ..core.errors import ConfigError
    from ..market.claims import claims_policy_from_workspace
    from ..market.policy import load_policy

    if path:
        return load_policy(path)
    pol = claims_policy_from_workspace(con)
    if pol is None:
        raise ConfigError(f"no policy: pass --policy PATH (a pricing policy with a [claims] table, e.g. {EXAMPLE_POLICY})")
    return pol


def _claims_policy_or_none(con, path):
    """The [claims] settings of --policy, else of the ledger's stored policy, else None (defaults)."""
    from ..core.errors import ConfigError

    try:
        return _policy(con, path).claims
    except ConfigError:
        if path:
            raise
        return None


def _render(c: dict, as_json: bool) -> None:
    if as_json:
        return echo_json(c)
    click.echo(f"Claim {c['claim_id']} ({c['remedy']}) of {c['holder']} for {', '.join(c['works'])}: {c['state']}"
               + (f", deadline {c['deadline']}" if c.get("deadline") else ""))
    if c.get("action"):
        click.echo(f"  decision: {c['action']} ({c['reason']})")


@click.group()
def claims() -> None:
    """Rights holders' claims (remove my works / pay me for them) from filing to resolution,
    with deadlines and batched retraining. See docs/claims.md."""


@claims.command("file")
@workspace_option
@click.option("--holder", required=True, help="The rights holder filing the claim (name or id).")
@click.option("--works", required=True, help="Comma-separated ids of the holder's works.")
@click.option("--remedy", type=click.Choice(["unlearn", "compensate", "either"]), required=True,
              help="unlearn (remove), compensate (pay) or either (the policy decides).")
@click.option("--deadline", help="Date by which the claim must be resolved, e.g. 2027-01-31.")
@policy_option
@at_option
@actor_option
@json_option
def file_cmd(workspace, holder, works, remedy, deadline, policy_path, at, actor, as_json):
    """File a claim; filing the same claim again returns the open one (idempotent)."""
    from ..market.claims import file_claim

    ws = open_workspace(workspace)
    with ws.connect() as con:
        cp = _claims_policy_or_none(con, policy_path)
        c = file_claim(con, holder=holder, works=works.split(","), remedy=remedy, deadline=deadline,
                       now=_now(at), actor=actor or "holder", policy=cp)
    if not as_json:
        click.echo("Filed a new claim." if c["created"] else "The same claim is already open; nothing filed twice.")
    _render(c, as_json)


@claims.command("list")
@workspace_option
@click.option("--holder", help="Only this holder's claims.")
@click.option("--state", type=click.Choice(["filed", "evidence_gathered", "quoted", "decided", "executed", "closed",
                                            "withdrawn"]), help="Only claims in this state.")
@click.option("--today", help="Judge deadlines as of this date (default: today, UTC).")
@policy_option
@json_option
def list_cmd(workspace, holder, state, today, policy_path, as_json):
    """List claims with their state, decision, deadline and overdue / at-risk flags."""
    from ..market.claims import list_claims, parse_date

    ws = open_workspace(workspace)
    with ws.connect(read_only=True) as con:
        cp = _claims_policy_or_none(con, policy_path)
        rows = list_claims(con, holder=holder, state=state, today=parse_date(today, "--today"), policy=cp)
    if as_json:
        return echo_json(rows)
    for r in rows:
        r["works"] = ",".join(r["works"])
        r["flag"] = "OVERDUE" if r["overdue"] else ("AT RISK" if r["at_risk"] else "")
    echo_table(rows, ["claim_id", "holder_id", "works", "remedy", "state", "action", "deadline", "flag", "why"],
               empty="(no claims)")


@claims.command("show")
@workspace_option
@click.argument("claim_id")
@json_option
def show_cmd(workspace, claim_id, as_json):
    """Show a claim and its full history (who, what, when, and the evidence used)."""
    from ..market.claims import get_claim

    with open_workspace(workspace).connect(read_only=True) as con:
        c = get_claim(con, claim_id)
    _render(c, as_json)
    if not as_json:
        for h in c["history"]:
            click.echo(f"  #{h['seq']} {h['at'].isoformat()} {h['state']:<17} by {h['actor']}: {h['note']}")


def _note_transition(fn_name: str, workspace, claim_id, note, at, actor, default_actor: str, as_json) -> None:
    from ..market import claims as lib

    with open_workspace(workspace).connect() as con:
        c = getattr(lib, fn_name)(con, claim_id, now=_now(at), actor=actor or default_actor, note=note)
    _render(c, as_json)


def _note_options(note_help: str):
    """The options of a transition that takes a note: --workspace CLAIM_ID --note --at --actor --json."""
    def deco(f):
        for opt in reversed([workspace_option, click.argument("claim_id"),
                             click.option("--note", default="", help=note_help), at_option, actor_option,
                             json_option]):
            f = opt(f)
        return f
    return deco


@claims.command("withdraw")
@_note_options("Why the claim is withdrawn.")
def withdraw_cmd(workspace, claim_id, note, at, actor, as_json):
    """Withdraw an open claim (recorded; nothing is deleted)."""
    _note_transition("withdraw", workspace, claim_id, note, at, actor, "holder", as_json)


@claims.command("review")
@workspace_option
@click.argument("claim_id")
@policy_option
@at_option
@actor_option
@json_option
def review_cmd(workspace, claim_id, policy_path, at, actor, as_json):
    """Gather the evidence, quote and decide a filed claim (three recorded transitions)."""
    from ..market.claims import review

    with open_workspace(workspace).connect() as con:
        c = review(con, claim_id, _policy(con, policy_path), now=_now(at), actor=actor or "tribute")
    _render(c, as_json)


@claims.command("execute")
@workspace_option
@click.argument("claim_id")
@click.option("--certificate", "run_id", help="Unlearning run that carries out an 'unlearn' decision "
              "(default: the latest run covering the claim's works).")
@policy_option
@at_option
@actor_option
@json_option
def execute_cmd(workspace, claim_id, run_id, policy_path, at, actor, as_json):
    """Carry out the decision: book the compensation, attach the unlearning certificate, or
    schedule the claim into the next retrain."""
    from ..market.claims import execute

    ws = open_workspace(workspace)
    with ws.connect(read_only=True) as con:
        policy = _policy(con, policy_path)
    c = execute(ws, claim_id, policy, now=_now(at), actor=actor or "tribute", run_id=run_id)
    _render(c, as_json)


@claims.command("close")
@_note_options("A closing note.")
def close_cmd(workspace, claim_id, note, at, actor, as_json):
    """Close an executed claim (retrain claims are closed by `close-batch`)."""
    _note_transition("close_claim", workspace, claim_id, note, at, actor, "tribute", as_json)


@claims.command("plan")
@workspace_option
@policy_option
@json_option
def plan_cmd(workspace, policy_path, as_json):
    """What the next scheduled retrain must exclude: the exposure documents of every batched work."""
    from ..market.claims import retrain_plan

    with open_workspace(workspace).connect(read_only=True) as con:
        plan = retrain_plan(con, _policy(con, policy_path).claims)
    if as_json:
        return echo_json(plan)
    click.echo(f"Next retrain: {plan['retrain_on'] or 'none scheduled'}; {len(plan['claims'])} claims batched; "
               f"exclude {plan['n_exclude']} training documents")
    echo_table(plan["works"], ["work_id", "docs"], empty="(no works batched)")
    for d in plan["exclude_docs"]:
        click.echo(f"  exclude {d}")


def model_checks(model_dir: str | Path, works: list[tuple[str, str]], max_words: int, *, sisa: bool = False,
                 prompts_per_work: int = 3, prompt_len: int = 16, cont_len: int = 32) -> dict[str, Any]:
    """Certificate checks of a retrained model: greedy continuations of prompts cut from each work,
    checked for verbatim spans of the works with the guard's exact index, plus ROUGE-L."""
    from ..attribution.unlearn.metrics import memorisation_probes, verbatim_memorisation
    from ..indexes.guard import Guard, GuardConfig

    if sisa:
        from ..attribution.unlearn.sisa import load_sisa

        model, tok = load_sisa(model_dir)
    else:
        from ..attribution.unlearn.run import load_model

        model, tok = load_model(model_dir)
    from ..attribution.unlearn.metrics import greedy_continue

    guard = Guard.build(works, GuardConfig(max_words=max_words))
    per_work, found = {}, []
    rouge = []
    for wid, text in works:
        probes = memorisation_probes([tok.encode(text, bos=False)], prompt_len, cont_len, prompts_per_work)
        outs = [tok.decode(greedy_continue(model, p, len(t))) for p, t in probes]
        hits = [r for res in guard.check_many(outs) for r in res.redactions if r.work_id == wid]
        rouge.append(verbatim_memorisation(model, probes)["rougeL"] if probes else None)
        per_work[wid] = {"probes": len(probes), "verbatim_spans": len(hits),
                         "longest_span_words": max((r.n_words for r in hits), default=0), "rougeL": rouge[-1]}
        found += [wid] if hits else []
    return {"passed": not found, "model": str(model_dir), "max_words": max_words, "works": per_work,
            "note": (f"reproduces {', '.join(found)} verbatim" if found else
                     f"no continuation reproduces more than {max_words} words of a batched work")}


@claims.command("close-batch")
@workspace_option
@click.option("--model-hash", help="Hash of the retrained model (default: computed from --model / --sisa-out).")
@click.option("--model", "model_dir", type=click.Path(file_okay=False),
              help="The retrained tiny-LM folder: run the verbatim-memorisation checks against it.")
@click.option("--sisa", "sisa_dir", type=click.Path(file_okay=False),
              help="A SISA model tribute trained: retrain only its affected shards (needs --sisa-out, --training).")
@click.option("--sisa-out", type=click.Path(file_okay=False), help="New folder for the SISA model after the batch.")
@click.option("--training", type=click.Path(exists=True), help="The SISA model's training corpus.")
@policy_option
@at_option
@actor_option
@json_option
def close_batch_cmd(workspace, model_hash, model_dir, sisa_dir, sisa_out, training, policy_path, at, actor, as_json):
    """Record that the scheduled retrain happened (with the new model's hash), run the checks
    against the new model, and close the batched claims."""
    from ..core.errors import InputError
    from ..core.hashing import file_sha256
    from ..market.catalog import work_texts
    from ..market.claims import close_batch, retrain_plan

    ws = open_workspace(workspace)
    with ws.connect(read_only=True) as con:
        policy = _policy(con, policy_path)
        plan = retrain_plan(con, policy.claims)
        texts = [(t["work_id"], t["text"]) for t in work_texts(con, [w["work_id"] for w in plan["works"]])]
    checks: dict[str, Any] | None = None
    if sisa_dir:
        if not (sisa_out and training):
            raise InputError("--sisa: also give --sisa-out (new folder) and --training (its training corpus)")
        from ..attribution.unlearn.sisa import sisa_unlearn
        from ..core.readers import read_records

        docs = [(r.id, r.text) for r in read_records(training)]
        known = {d for d, _ in docs}
        report = sisa_unlearn(sisa_dir, docs, [d for d in plan["exclude_docs"] if d in known], sisa_out)
        checks = {**model_checks(sisa_out, texts, policy.claims.guard_max_words, sisa=True), "sisa": report}
        model_hash = model_hash or "sha256:" + file_sha256(sisa_out)
    elif model_dir:
        checks = model_checks(model_dir, texts, policy.claims.guard_max_words)
        model_hash = model_hash or "sha256:" + file_sha256(model_dir)
    if not model_hash:
        raise InputError("close-batch: give --model-hash, --model or --sisa")
    with ws.connect() as con:
        res = close_batch(con, policy.claims, model_hash=model_hash, now=_now(at), actor=actor or "tribute",
                          checks=checks)
    if as_json:
        return echo_json(res)
    click.echo(f"Retrain batch {res['batch_id']} of {res['retrain_on']} recorded (model {res['model_hash']}); "
               f"closed {len(res['closed'])} claims; {res['excluded_docs']} documents excluded")
    click.echo(f"  checks: {res['checks'].get('note')}")


@click.command()
@workspace_option
@click.argument("outputs", type=click.Path(exists=True, dir_okay=False, allow_dash=True), default="-")
@click.option("--works", help="Guard these work ids (default: the works of open claims awaiting removal).")
@click.option("--max-words", type=click.IntRange(1), help="Longest verbatim span allowed (default: the policy's "
              "claims.guard_max_words, else 12).")
@click.option("--action", type=click.Choice(["redact", "block"]), help="Redact spans or block the output "
              "(default: the policy's claims.guard_action, else redact).")
@policy_option
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True, help="Outputs checked at once.")
def guard(workspace, outputs, works, max_words, action, policy_path, batch_size):
    """Filter model outputs (JSONL with id and text, or stdin) against the works under claim:
    redact or block verbatim spans longer than the limit, with a reason per redaction.

    Writes one JSON line per output: id, text (redacted), blocked, redactions.
    """
    from ..indexes.guard import Guard, GuardConfig
    from ..market.catalog import work_texts
    from ..market.claims import guarded_works

    ws = open_workspace(workspace)
    with ws.connect(read_only=True) as con:
        cp = _claims_policy_or_none(con, policy_path)
        if works:
            ids = [w.strip() for w in works.split(",") if w.strip()]
            items = [(t["work_id"], t["text"]) for t in work_texts(con, ids)]
            missing = sorted(set(ids) - {w for w, _ in items})
            if missing:
                from ..core.errors import NotFoundError

                raise NotFoundError(f"--works: no active work {missing[0]!r}; see `tribute works list`")
        else:
            items = [(g["work_id"], g["text"]) for g in guarded_works(con)]
    cfg = GuardConfig(max_words=max_words or (cp.guard_max_words if cp else 12),
                      action=action or (cp.guard_action if cp else "redact"))
    g = Guard.build(items, cfg)
    with click.open_file(outputs, "r", encoding="utf-8") as stream:
        filter_jsonl(g, stream, sys.stdout, batch_size, source=outputs)
    if not items:
        click.echo("guard: no works under claim; outputs passed through unchanged", err=True)


def filter_jsonl(g, lines, out, batch_size: int = 256, source: str = "-") -> dict[str, int]:
    """Read JSONL outputs (id, text) from ``lines``, write the guarded JSONL to ``out``."""
    from ..core.errors import InputError

    stats = {"outputs": 0, "redacted": 0, "blocked": 0}
    batch: list[tuple[Any, str]] = []

    def flush():
        for (oid, _), res in zip(batch, g.check_many([t for _, t in batch])):
            stats["outputs"] += 1
            stats["blocked"] += res.blocked
            stats["redacted"] += bool(res.redactions) and not res.blocked
            out.write(json.dumps({"id": oid, **res.as_dict()}, ensure_ascii=False) + "\n")
        batch.clear()

    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            text = rec["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise InputError(f"{source} line {n}: not a JSON object with a text field ({e}); "
                             "give JSONL with id and text") from e
        if not isinstance(text, str):
            raise InputError(f"{source} line {n}: text must be a string")
        batch.append((rec.get("id", n), text))
        if len(batch) >= batch_size:
            flush()
    flush()
    out.flush()
    return stats


DEMO_NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)   # after the demo's booked period (2026-11)
DEMO_CLAIMS = (  # holder, works, remedy, deadline (before the policy's next retrain, 2027-01-15)
    ("Northwind Press", ["ruth"], "unlearn", "2026-12-31"),
    ("Harbor Lane Books", ["joel"], "compensate", None),
    ("Northwind Press", ["jonah"], "either", "2026-12-31"),
)


def _demo_guard(ws, echo: Callable[[str], None]) -> dict[str, int]:
    """Run the guard over the demo model's outputs against the works awaiting removal, and over a
    disguised copy of one of them (upper case, look-alike letters, zero-width spaces)."""
    import io

    from ..indexes.guard import Guard, GuardConfig
    from ..market.claims import guarded_works

    with ws.connect(read_only=True) as con:
        items = [(g["work_id"], g["text"]) for g in guarded_works(con)]
    outputs = ws.path / "data" / "outputs.jsonl"
    if not items or not outputs.is_file():
        return {}
    guard = Guard.build(items, GuardConfig(max_words=12))
    with open(outputs, encoding="utf-8") as fh:
        stats = filter_jsonl(guard, fh, io.StringIO(), source=str(outputs))
    echo(f"[claims]   guard while removal is pending ({', '.join(w for w, _ in items)}): {stats['redacted']} of "
         f"{stats['outputs']} model outputs had verbatim spans of more than 12 words redacted")
    copy = " ".join(items[0][1].split()[100:140]).upper().replace("A", "\u0410").replace("E", "\u0415")
    copy = copy.replace(" ", " \u200b")
    res = guard.check("Sure, here it is: " + copy)
    if res.redactions:
        echo(f"[claims]   a disguised 40-word copy (upper case, Cyrillic look-alikes, zero-width spaces) is redacted: "
             f"{res.redactions[0].reason}")
    stats["disguised_caught"] = len(res.redactions)
    return stats


def demo_step(ws, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """The demo's claims stage: one claim of each remedy, each carried to closed, reusing the
    corpus scan, the quote, the ledger of [8a] and the unlearning certificate of [8b]."""
    from datetime import timedelta

    from ..market.claims import close_claim, execute, file_claim, get_claim, review
    from ..market.policy import load_policy

    policy = load_policy(EXAMPLE_POLICY)
    out: dict[str, Any] = {}
    for i, (holder, works, remedy, deadline) in enumerate(DEMO_CLAIMS):
        now = DEMO_NOW + timedelta(minutes=10 * i)
        with ws.connect() as con:
            c = file_claim(con, holder=holder, works=works, remedy=remedy, deadline=deadline, now=now)
            c = review(con, c["claim_id"], policy, now=now + timedelta(minutes=1))
        share = c["history"][-1]["evidence"]["share"]
        echo(f"[claims] {holder} filed {c['claim_id']} ({remedy}: {', '.join(works)}"
             + (f", deadline {deadline}" if deadline else "") + f"); attribution share {share}")
        echo(f"[claims]   decided {c['action']}: {c['reason']}")
        if i == 0:
            out["guard"] = _demo_guard(ws, echo)
        if c["action"] != "none":
            c = execute(ws, c["claim_id"], policy, now=now + timedelta(minutes=2))
            echo(f"[claims]   executed: {c['history'][-1]['note']}")
        if c["action"] == "retrain":   # not with the demo's deadlines; a retrain is not run here
            echo("[claims]   waits for the scheduled retrain (`tribute claims plan`, then `close-batch`)")
        else:
            with ws.connect() as con:
                c = close_claim(con, c["claim_id"], now=now + timedelta(minutes=3))
        with ws.connect(read_only=True) as con:
            c = get_claim(con, c["claim_id"])
        echo(f"[claims]   {c['state']} after {len(c['history'])} recorded transitions")
        out[remedy] = {"claim_id": c["claim_id"], "action": c["action"], "state": c["state"]}
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(claims())
