"""A seeded stateful test: random operations on the ledger and on a simple in-memory reference
ledger (Python integers, an independent largest-remainder split) must agree at every step."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest

from tribute.core.hashing import stable_hash64
from tribute.core.readers import read_records
from tribute.market.catalog import import_works, works_from_records
from tribute.market.ledger import Ledger
from tribute.market.ledger_alloc import TIE_SEED
from tribute.market.policy import parse_policy

POLICY = parse_policy('[policy]\nname = "s"\ncurrency = "EUR"\n[payout]\nminimum = "2.00"\n', "s.toml")
HOLDERS = {"w1": "h-a", "w2": "h-b", "w3": "h-c", "w4": "h-a"}
# dyadic shares (k/64) so normalisation and quantisation are exact in the reference too
SHARES = {
    "o1": [("w1", 32), ("w2", 16), (None, 16)],
    "o2": [("w3", 40), ("w4", 8), ("w1", 12), (None, 4)],
    "o3": [("w2", 64)],
    "o4": [("w4", 24), ("w3", 24), (None, 16)],
    "o5": [],                                   # no attribution: all to the residual
}
EXPOSURE = {"w1": 1, "w2": 2, "w3": 5}          # weights 1/8, 2/8, 5/8
PERIODS = ["2026-01", "2026-02", "2026-03", "2026-04"]


def lr(amount: int, rows: list[tuple[str, int, int]]) -> dict[str, int]:
    """Largest remainder over (key, weight, tie) rows, Python integers only."""
    total = sum(w for _, w, _ in rows)
    out = {k: amount * w // total for k, w, _ in rows}
    left = amount - sum(out.values())
    for k, _, _ in sorted(rows, key=lambda r: (-(amount * r[1] % total), r[2]))[:left]:
        out[k] += 1
    return out


class Reference:
    def __init__(self):
        self.bal: dict[str, int] = {}
        self.txns: dict[int, dict[str, int]] = {}
        self.batches: dict[int, int] = {}   # txn -> its pair
        self.reversed: set[int] = set()
        self.reversal_of: dict[int, int] = {}
        self.reversed_by: dict[int, int] = {}
        self.seq = 0

    def post(self, lines: dict[str, int]) -> int:
        self.seq += 1
        lines = {k: v for k, v in lines.items() if v}
        self.txns[self.seq] = lines
        for k, v in lines.items():
            self.bal[k] = self.bal.get(k, 0) + v
        return self.seq

    def allocate(self, events: list[tuple[str, str, int]]) -> None:
        split = {"world:revenue": 0, "platform": 0, "pool:training": 0, "pool:output": 0}
        dist: dict[str, int] = {}
        works = sorted({w for _, o, _ in events for w, _ in SHARES[o] if w})
        rank = {w: i for i, w in enumerate(works)}
        t_total = 0
        for key, out, amount in events:
            off3 = stable_hash64(key.encode(), TIE_SEED) % 3
            parts = lr(amount, [(n, w, (i + off3) % 3) for i, (n, w) in
                                enumerate([("platform", 15), ("training", 14), ("output", 21)])])
            split["world:revenue"] -= amount
            split["platform"] += parts["platform"]
            split["pool:training"] += parts["training"]
            split["pool:output"] += parts["output"]
            t_total += parts["training"]
            rows = SHARES[out]
            k = max(len(works), 1)
            off = stable_hash64(key.encode(), TIE_SEED) % k
            res_w = sum(s for w, s in rows if w is None) * (1 << 26)
            lr_rows = [(w, s * (1 << 26), (rank[w] + off) % k) for w, s in rows if w]
            if not rows or sum(s for _, s in rows) == 0:
                res_w = 1
            lr_rows.append((None, res_w, k + 1))
            for w, amt in lr(parts["output"], lr_rows).items():
                acc = "unattributed" if w is None else f"holder:{HOLDERS[w]}"
                dist[acc] = dist.get(acc, 0) + amt
        ew = sorted(EXPOSURE)
        off = stable_hash64(b"training", TIE_SEED) % len(ew)
        for w, amt in lr(t_total, [(w, EXPOSURE[w] * (1 << 29), (i + off) % len(ew))
                                   for i, w in enumerate(ew)]).items():
            dist[f"holder:{HOLDERS[w]}"] = dist.get(f"holder:{HOLDERS[w]}", 0) + amt
        dist["pool:output"] = -split["pool:output"]
        dist["pool:training"] = -split["pool:training"]
        a = self.post(split)
        b = self.post(dist)
        self.batches[a] = b
        self.batches[b] = a

    def group(self, seq: int) -> list[int]:
        if seq in self.batches:
            return sorted({seq, self.batches[seq]})
        if seq in self.reversal_of:
            return sorted(self.reversed_by[t] for t in self.group(self.reversal_of[seq]))
        return [seq]

    def reverse(self, seq: int) -> None:
        for t in self.group(seq):
            self.reversed.add(t)
            new = self.post({k: -v for k, v in self.txns[t].items()})
            self.reversal_of[new] = t
            self.reversed_by[t] = new

    def close(self) -> None:
        pay = {k: v for k, v in self.bal.items() if k.startswith("holder:") and v >= POLICY.minimum_payout}
        if pay:
            lines = {k: -v for k, v in pay.items()}
            lines["world:payouts"] = sum(pay.values())
            self.post(lines)


def _setup(ws, tmp_path: Path) -> Ledger:
    works = tmp_path / "works.jsonl"
    works.write_text("".join(json.dumps({"id": w, "holder": h, "title": w, "text": w + " text"}) + "\n"
                             for w, h in HOLDERS.items()), encoding="utf-8")
    with ws.connect() as con:
        import_works(con, works_from_records(read_records(works)))
    led = Ledger(ws)
    rows = [(o, w, HOLDERS.get(w) if w else None, s / 64) for o, rs in SHARES.items() for w, s in rs]
    led.ingest_shares(pa.table({"output_id": [r[0] for r in rows], "work_id": pa.array([r[1] for r in rows], pa.string()),
                                "holder_id": pa.array([r[2] for r in rows], pa.string()),
                                "share": [r[3] for r in rows]}), run_id="run")
    return led


EXPOSURE_TABLE = pa.table({"work_id": list(EXPOSURE), "doc_id": [f"d-{w}" for w in EXPOSURE],
                           "weight": [float(v) for v in EXPOSURE.values()],
                           "holder_id": [HOLDERS[w] for w in EXPOSURE]})


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_ledger_agrees_with_reference(ws, tmp_path, seed):
    rng = random.Random(seed)
    led = _setup(ws, tmp_path)
    ref = Reference()
    period_i = 0
    pending: list[tuple[str, str, int]] = []
    n_events = 0
    for step in range(36):
        period = PERIODS[period_i]
        op = rng.choices(["event", "allocate", "adjust", "reverse", "close"], [6, 3, 2, 2, 1])[0]
        if op == "event":
            batch = []
            for _ in range(rng.randint(1, 4)):
                n_events += 1
                out = rng.choice(sorted(SHARES))
                amount = rng.choice([1, 7, 99, 100, 12345, rng.randint(0, 10**6)])
                batch.append({"id": f"ev{n_events}", "output_id": out, "text": "x", "revenue": amount,
                              "at": f"{period}-1{rng.randint(0, 9)}T00:00:00Z"})
            f = tmp_path / f"ev{step}.jsonl"
            f.write_text("".join(json.dumps(r) + "\n" for r in batch), encoding="utf-8")
            led.ingest_events(read_records(f), POLICY)
            led.ingest_events(read_records(f), POLICY)  # replay: no effect
            pending += [(r["id"], r["output_id"], r["revenue"]) for r in batch]
        elif op == "allocate" and pending:
            led.allocate(POLICY, period, exposure=EXPOSURE_TABLE)
            ref.allocate(sorted(pending))
            pending = []
        elif op == "adjust":
            src, dst = rng.sample(["unattributed", "platform", "holder:h-a", "holder:h-c"], 2)
            amt = rng.randint(1, 500)
            led.adjust(src, dst, amt, period, f"step {step}", POLICY)
            ref.post({src: -amt, dst: amt})
        elif op == "reverse":
            candidates = [s for s in ref.txns if s not in ref.reversed and s not in
                          {t for t in ref.txns if ref.txns[t].get("world:payouts")}]
            if candidates:
                s = rng.choice(candidates)
                led.reverse(s, period)
                ref.reverse(s)
        elif op == "close" and period_i < len(PERIODS) - 1:
            if pending:
                led.allocate(POLICY, period, exposure=EXPOSURE_TABLE)
                ref.allocate(sorted(pending))
                pending = []
            led.close_period(period, POLICY)
            ref.close()
            period_i += 1
        got = {r["account"]: int(r["balance"]) for r in led.balances() if r["balance"]}
        want = {k: v for k, v in ref.bal.items() if v}
        assert got == want, f"step {step} ({op})"
    assert sum(ref.bal.values()) == 0
    assert len(ref.batches) >= 4 and ref.seq >= 8  # the run did allocate, adjust and reverse
    rep = led.verify()
    assert rep["ok"], rep
