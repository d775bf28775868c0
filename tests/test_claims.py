"""Claims: lifecycle per remedy, decisions at and around each threshold, idempotent (concurrent)
filing, deadlines, batched retraining, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tribute.core.errors import ConflictError, InputError
from tribute.market.claims import (close_batch, close_claim, decide_remedy, deadline_flags, execute, file_claim,
                                   get_claim, guarded_works, retrain_plan, review, withdraw)
from tribute.market.policy import ClaimsPolicy, load_policy, parse_policy

POLICY = Path(__file__).resolve().parents[1] / "cli" / "demo_corpus" / "policy.toml"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def _words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


WORKS = [
    {"id": "w-a", "holder": "Alpha Books", "title": "A", "text": _words("alpha", 200)},
    {"id": "w-b", "holder": "Alpha Books", "title": "B", "text": _words("beta", 200)},
    {"id": "w-c", "holder": "Gamma House", "title": "C", "text": _words("gamma", 200)},
    {"id": "w-d", "holder": "Gamma House", "title": "D (never trained on)", "text": _words("delta", 200)},
]


@pytest.fixture(scope="module")
def _small_template(tmp_path_factory):
    """A workspace with four works, a corpus scan (w-a, w-b, w-c exposed; w-d not), an attribution
    run with hand-made shares, and a booked ledger (so compensation has a basis); built once."""
    from click.testing import CliRunner

    from tribute.cli.main import cli
    from tribute.market.workspace import Workspace

    root = tmp_path_factory.mktemp("claims-small")
    home = root / "ws"

    def run(*args):
        r = CliRunner().invoke(cli, [str(a) for a in args] + ["--workspace", str(home)], catch_exceptions=False)
        assert r.exit_code == 0, r.output

    def jsonl(name, rows):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        return root / name

    Workspace(home).init()
    run("works", "import", jsonl("w.jsonl", WORKS))
    run("index", "build", "--kinds", "exact")
    corpus = [{"id": f"doc-{w['id']}-{k}", "text": "filler text here " + " ".join(w["text"].split()[k * 20:k * 20 + 60])}
              for w in WORKS[:3] for k in range(2)] + [{"id": "plain", "text": _words("other", 80)}]
    run("scan", "corpus", jsonl("c.jsonl", corpus), "--kinds", "exact")
    with Workspace(home).connect() as con:
        con.execute("INSERT INTO attribution_runs (run_id, method, config, n_queries, n_train, path, rollup_rule) "
                    "VALUES ('run1', 'hand', '{}', 2, 7, '.', '{}')")
        # mean share over 2 outputs: w-a (0.30 + 0.10) / 2 = 0.20, w-b 0.02, w-c (0.06 + 0.04) / 2 = 0.05
        for out, w, h, s in [("o1", "w-a", "alpha-books", 0.30), ("o1", "w-b", "alpha-books", 0.04),
                             ("o1", "w-c", "gamma-house", 0.06), ("o1", None, None, 0.60),
                             ("o2", "w-a", "alpha-books", 0.10), ("o2", "w-c", "gamma-house", 0.04),
                             ("o2", None, None, 0.86)]:
            con.execute("INSERT INTO attribution_shares VALUES ('run1', ?, ?, ?, ?, 0)", [out, w, h, s])
    events = [{"id": f"o{i}", "text": "x", "revenue": "100.00", "currency": "EUR", "at": "2026-11-02T10:00:00Z"}
              for i in (1, 2)]
    run("ledger", "ingest", "--policy", POLICY, jsonl("e.jsonl", events))
    run("ledger", "allocate", "--policy", POLICY, "--period", "2026-11")
    return home


@pytest.fixture
def small(_small_template, _isolated_home):
    """A fresh copy of the template workspace at $TRIBUTE_HOME."""
    import shutil

    from tribute.market.workspace import Workspace

    shutil.copytree(_small_template, _isolated_home)
    return Workspace(_isolated_home)


def _policy(**claims):
    text = POLICY.read_text()
    if claims:
        head, _ = text.split("[claims]")
        text = head + "[claims]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in claims.items())
    return parse_policy(text, "test")


# --------------------------------------------------------------------------- decisions on hand-made numbers

CP = ClaimsPolicy(compensate_below=Decimal("0.05"), unlearn_at=Decimal("0.20"))
D = dict(exposure_docs=3, compensation=500, unlearning=900, deadline=None, retrain=None, policy=CP)


@pytest.mark.parametrize("share,action", [
    ("0.049999999999", "compensate"), ("0.05", "compensate"),  # 0.05: in the band, paying is cheaper
    ("0.199999999999", "compensate"), ("0.20", "unlearn"), ("0.200000000001", "unlearn"), ("0", "compensate"),
])
def test_either_thresholds_exact(share, action):
    assert decide_remedy(remedy="either", share=Decimal(share), **D)[0] == action


def test_either_band_goes_to_the_cheaper_side():
    low = dict(D, compensation=900, unlearning=500)
    assert decide_remedy(remedy="either", share=Decimal("0.049999999999"), **low)[0] == "compensate"
    assert decide_remedy(remedy="either", share=Decimal("0.05"), **low)[0] == "unlearn"
    assert decide_remedy(remedy="either", share=Decimal("0.10"), **dict(low, unlearning=900))[0] == "compensate"
    assert decide_remedy(remedy="either", share=Decimal("0.10"), **dict(low, unlearning=899))[0] == "unlearn"
    with pytest.raises(InputError):
        decide_remedy(remedy="either", share=0.1, **D)


def test_removal_is_batched_when_the_retrain_comes_by_the_deadline():
    r = date(2027, 1, 15)
    kw = dict(D, retrain=r)
    assert decide_remedy(remedy="unlearn", share=Decimal("0.3"), **dict(kw, deadline=r))[0] == "retrain"
    assert decide_remedy(remedy="unlearn", share=Decimal("0.3"), **dict(kw, deadline=r - timedelta(days=1)))[0] == "unlearn"
    assert decide_remedy(remedy="unlearn", share=Decimal("0.3"), **kw)[0] == "retrain"   # no deadline
    assert decide_remedy(remedy="unlearn", share=Decimal("0.3"), **D)[0] == "unlearn"    # no retrain scheduled
    assert decide_remedy(remedy="compensate", share=Decimal("0.9"), **kw)[0] == "compensate"
    action, reason = decide_remedy(remedy="unlearn", share=Decimal(0), **dict(D, exposure_docs=0))
    assert action == "none" and "no exposure found" in reason


def test_deadline_flags():
    cp = ClaimsPolicy(at_risk_days=14)
    c = {"state": "quoted", "deadline": date(2026, 12, 10), "action": None, "remedy": "either"}
    assert deadline_flags(c, date(2026, 12, 11), cp, None)["overdue"]
    f = deadline_flags(c, date(2026, 11, 1), cp, date(2027, 1, 15))
    assert f["at_risk"] and not f["overdue"] and "after the deadline" in f["why"]
    # decided for targeted unlearning now: the retrain date no longer matters; paid claims never wait for it
    assert not deadline_flags({**c, "state": "decided", "action": "unlearn"}, date(2026, 11, 1), cp,
                              date(2027, 1, 15))["at_risk"]
    assert not deadline_flags({**c, "remedy": "compensate"}, date(2026, 11, 1), cp, date(2027, 1, 15))["at_risk"]
    assert not deadline_flags(c, date(2026, 11, 1), cp, None)["at_risk"]
    assert deadline_flags(c, date(2026, 11, 26), cp, None)["at_risk"]          # due in 14 days
    assert not deadline_flags({**c, "state": "closed"}, date(2027, 1, 1), cp, None)["overdue"]


def test_claims_policy_is_validated():
    p = load_policy(POLICY)
    assert p.claims.next_retrain == date(2027, 1, 15) and p.claims.unlearn_at == Decimal("0.20")
    for bad, msg in [({"compensate_below": "0.5", "unlearn_at": "0.2"}, "compensate_below"),
                     ({"next_retrain": "soon"}, "claims.next_retrain"), ({"guard_action": "shout"}, "guard_action"),
                     ({"retrain_every": 3}, "unknown key claims.retrain_every")]:
        with pytest.raises(Exception, match=msg):
            _policy(**bad)
    # the [claims] table does not change the pricing policy's hash
    assert _policy(unlearn_at="0.5").policy_hash == p.policy_hash


# --------------------------------------------------------------------------- lifecycle per remedy

def test_compensate_lifecycle_pays_through_the_ledger(small):
    pol = load_policy(POLICY)
    with small.connect() as con:
        c = file_claim(con, holder="Alpha Books", works=["w-b"], remedy="compensate", now=T0)
        c = review(con, c["claim_id"], pol, now=T0)
    assert c["state"] == "decided" and c["action"] == "compensate"
    ev = {h["state"]: h["evidence"] for h in c["history"]}
    assert ev["evidence_gathered"]["exposure"]["w-b"]["docs"] == 2
    assert ev["evidence_gathered"]["attribution"]["share"] == "0.020000000000"
    assert ev["quoted"]["policy_hash"] == pol.policy_hash and ev["decided"]["policy_hash"] == pol.claims.policy_hash
    amount = ev["quoted"]["compensation"]
    assert amount > 0
    c = execute(small, c["claim_id"], pol, now=T0 + timedelta(hours=1))
    with small.connect() as con:
        bal = con.execute("SELECT sum(amount) FROM ledger_postings p JOIN ledger_transactions t USING (seq) "
                          "WHERE t.ref = ? AND account = 'holder:alpha-books'", [f"claim:{c['claim_id']}"]).fetchall()
        assert bal[0][0] == amount
        c = close_claim(con, c["claim_id"], now=T0 + timedelta(hours=2))
        assert [h["state"] for h in c["history"]] == ["filed", "evidence_gathered", "quoted", "decided", "executed",
                                                      "closed"]
        with pytest.raises(ConflictError, match="cannot go from closed to withdrawn"):
            withdraw(con, c["claim_id"], now=T0 + timedelta(hours=3))


def test_compensation_interrupted_after_booking_is_not_booked_twice(small):
    from tribute.market.ledger import Ledger

    pol = load_policy(POLICY)
    with small.connect() as con:
        c = review(con, file_claim(con, holder="Alpha Books", works=["w-b"], remedy="compensate", now=T0)["claim_id"],
                   pol, now=T0)
    amount = c["history"][-1]["evidence"]["compensation"]
    # a crash between the ledger booking and the claim event: the booking exists, the event not
    seq = Ledger(small).adjust("platform", "holder:alpha-books", amount, "2026-12", "compensation", pol,
                               ref=f"claim:{c['claim_id']}")
    c = execute(small, c["claim_id"], pol, now=T0)
    assert c["state"] == "executed" and c["history"][-1]["evidence"]["ledger_seq"] == seq
    with small.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ledger_transactions WHERE ref LIKE 'claim:%'").fetchall()[0][0] == 1


def test_unlearn_lifecycle_needs_a_covering_certificate(small):
    pol = _policy(next_retrain="2027-01-15")
    with small.connect() as con:
        c = file_claim(con, holder="Alpha Books", works=["w-a"], remedy="unlearn", deadline="2026-12-20", now=T0)
        c = review(con, c["claim_id"], pol, now=T0)
        assert c["action"] == "unlearn" and "after the deadline" in c["reason"]
        cid = c["claim_id"]
    with pytest.raises(Exception, match="no unlearning run covers w-a"):
        execute(small, cid, pol, now=T0)
    cert = {"run": {"run_id": "unl-1", "created_at": "2026-12-01T10:00:00+00:00", "holder_id": "alpha-books",
                    "method": "calibrated", "model_in": "m", "model_out": "m2", "work_ids": ["w-a"]},
            "before": {"forget_rougeL": 0.9, "retain_ppl": 10.0}, "after": {"forget_rougeL": 0.1, "retain_ppl": 10.5},
            "cost": {"seconds": 5.0}, "checks": {"privleak": {}}, "targets_met": True}
    from tribute.market.unlearning_store import save_certificate

    with small.connect() as con:
        save_certificate(con, cert)
    c = execute(small, cid, pol, now=T0 + timedelta(hours=1))
    assert c["state"] == "executed" and c["history"][-1]["evidence"]["run_id"] == "unl-1"
    with small.connect() as con:
        c = close_claim(con, cid, now=T0 + timedelta(hours=2))
        assert c["state"] == "closed" and c["history"][-1]["evidence"] == {"action": "unlearn", "run_id": "unl-1",
                                                                           "targets_met": True}


def test_either_claim_batched_into_retrain_then_closed_by_the_batch(small):
    pol = _policy(next_retrain="2027-01-15", retrain_every_days=30)
    with small.connect() as con:
        c = file_claim(con, holder="Alpha Books", works=["w-a"], remedy="either", now=T0)   # share 0.20 -> removal
        c = review(con, c["claim_id"], pol, now=T0)
        assert c["action"] == "retrain" and "at or above unlearn_at 0.20" in c["reason"]
        with pytest.raises(ConflictError, match="not executed yet"):
            close_claim(con, c["claim_id"], now=T0)
    c = execute(small, c["claim_id"], pol, now=T0)
    with small.connect() as con:
        with pytest.raises(ConflictError, match="close-batch"):
            close_claim(con, c["claim_id"], now=T0)
        assert [g["work_id"] for g in guarded_works(con)] == ["w-a"]
        plan = retrain_plan(con, pol.claims)
        assert plan["retrain_on"] == "2027-01-15" and plan["works"] == [{"work_id": "w-a", "docs": 2}]
        assert plan["exclude_docs"] == ["doc-w-a-0", "doc-w-a-1"]
        with pytest.raises(ConflictError, match="fails the checks"):
            close_batch(con, pol.claims, model_hash="sha256:x", now=T0, checks={"passed": False, "note": "w-a"})
        assert get_claim(con, c["claim_id"])["state"] == "executed"      # nothing written
        res = close_batch(con, pol.claims, model_hash="sha256:abc", now=T0 + timedelta(days=45))
        assert res["closed"] == [c["claim_id"]] and res["excluded_docs"] == 2
        assert get_claim(con, c["claim_id"])["state"] == "closed"
        assert retrain_plan(con, pol.claims)["retrain_on"] == "2027-02-14"   # the schedule moved on
        assert guarded_works(con) == []


def test_no_evidence_claim_is_decided_as_such(small):
    pol = load_policy(POLICY)
    with small.connect() as con:
        c = file_claim(con, holder="Gamma House", works=["w-d"], remedy="either", now=T0)
        c = review(con, c["claim_id"], pol, now=T0)
        assert c["action"] == "none" and c["reason"].startswith("no exposure found")
        assert close_claim(con, c["claim_id"], now=T0)["state"] == "closed"


def test_filing_is_idempotent_and_checked(small):
    with small.connect() as con:
        a = file_claim(con, holder="Alpha Books", works=["w-b", "w-a"], remedy="unlearn", now=T0)
        b = file_claim(con, holder="alpha-books", works=["w-a", "w-b", "w-a"], remedy="unlearn", now=T0)
        assert a["created"] and not b["created"] and a["claim_id"] == b["claim_id"]
        assert file_claim(con, holder="Alpha Books", works=["w-a", "w-b"], remedy="compensate", now=T0)["created"]
        with pytest.raises(InputError, match="belongs to 'Gamma House'"):
            file_claim(con, holder="Alpha Books", works=["w-c"], remedy="unlearn", now=T0)
        with pytest.raises(InputError, match="--remedy"):
            file_claim(con, holder="Alpha Books", works=["w-a"], remedy="delete", now=T0)
        withdraw(con, a["claim_id"], now=T0)
        c = file_claim(con, holder="Alpha Books", works=["w-a", "w-b"], remedy="unlearn", now=T0)
        assert c["created"] and c["claim_id"] == a["claim_id"] + "-2"   # a withdrawn claim may be filed anew
        with pytest.raises(ConflictError, match="cannot go from filed to decided"):
            from tribute.market.claims import _transition

            _transition(con, c["claim_id"], "decided", "x", T0, "", {})


_FILER = """
import sys
from datetime import datetime, timezone
from tribute.market.workspace import Workspace
from tribute.market.claims import file_claim
with Workspace(sys.argv[1]).connect() as con:
    c = file_claim(con, holder="Alpha Books", works=["w-a"], remedy="either", now=datetime.now(timezone.utc))
print(c["claim_id"], c["created"])
"""


def test_concurrent_filing_from_two_processes_files_once(small):
    env = {**__import__("os").environ, "TRIBUTE_LOCK_TIMEOUT": "30"}
    procs = [subprocess.Popen([sys.executable, "-c", _FILER, str(small.path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    results = [o.split() for o, _ in outs]
    assert len({r[0] for r in results}) == 1
    assert sorted(r[1] for r in results) == ["False", "True"]
    with small.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM claims").fetchall()[0][0] == 1


# --------------------------------------------------------------------------- CLI

def test_cli_flow_and_list_flags(small, invoke):
    r = invoke("claims", "file", "--holder", "Alpha Books", "--works", "w-a", "--remedy", "unlearn",
               "--deadline", "2026-12-20", "--at", "2026-12-01T09:00:00Z", "--policy", POLICY, "--json")
    assert r.exit_code == 0, r.output
    cid = json.loads(r.output)["claim_id"]
    r = invoke("claims", "list", "--policy", POLICY, "--today", "2026-12-02")
    assert cid in r.output and "AT RISK" in r.output and "next retrain 2027-01-15 is after the deadline" in r.output
    r = invoke("claims", "list", "--policy", POLICY, "--today", "2026-12-21", "--json")
    assert json.loads(r.output)[0]["overdue"] is True
    r = invoke("claims", "review", cid, "--policy", POLICY, "--at", "2026-12-01T10:00:00Z")
    assert r.exit_code == 0 and "decision: unlearn" in r.output
    r = invoke("claims", "show", cid)
    assert "#4" in r.output and "decided" in r.output
    r = invoke("claims", "close", cid, "--at", "2026-12-01T11:00:00Z")
    assert r.exit_code == 1 and "not executed yet" in r.output
    r = invoke("claims", "withdraw", cid, "--at", "2026-12-01T08:00:00Z")
    assert r.exit_code == 1 and "before its last event" in r.output
    r = invoke("claims", "withdraw", cid, "--at", "2026-12-02T08:00:00Z", "--note", "settled privately")
    assert r.exit_code == 0 and "withdrawn" in r.output
    r = invoke("claims", "show", "clm-nope")
    assert r.exit_code == 1 and "no such claim" in r.output
    r = invoke("claims", "plan", "--policy", POLICY)
    assert "Next retrain: 2027-01-15; 0 claims batched" in r.output
    r = invoke("claims", "close-batch", "--policy", POLICY, "--model-hash", "sha256:x")
    assert r.exit_code == 1 and "no claims are scheduled" in r.output
