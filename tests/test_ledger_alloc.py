"""Exact pool splits (largest remainder) against a naive reference, and their properties."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from tribute.core.errors import InputError
from tribute.market.ledger_alloc import compute_allocation, split_exact
from tribute.market.policy import parse_policy

POLICY = parse_policy('[policy]\nname = "t"\ncurrency = "EUR"\n')


def reference_split(groups, weights, amounts, ties):
    """Largest remainder with Python integers, one group at a time."""
    out = [0] * len(groups)
    for g, a in enumerate(amounts):
        rows = [i for i in range(len(groups)) if groups[i] == g]
        total = sum(weights[i] for i in rows)
        if not rows or total == 0:
            continue
        for i in rows:
            out[i] = a * weights[i] // total
        left = a - sum(out[i] for i in rows)
        ranked = sorted(rows, key=lambda i: (-(a * weights[i] % total), ties[i]))
        for i in ranked[:left]:
            out[i] += 1
    return out


pools = st.integers(1, 6).flatmap(lambda g: st.tuples(
    st.lists(st.integers(0, 10**12), min_size=g, max_size=g),
    st.lists(st.tuples(st.integers(0, g - 1), st.integers(0, 2**32)), min_size=g, max_size=40),
))


def _arrays(case):
    amounts, rows = case
    # every group gets one row so that no pool is left without weight
    rows = rows + [(g, 1) for g in range(len(amounts))]
    groups = [g for g, _ in rows]
    weights = [w for _, w in rows]
    ties = list(range(len(rows)))
    return groups, weights, amounts, ties


@settings(max_examples=150, deadline=None)
@given(pools)
def test_split_matches_reference_and_pays_pools_exactly(case):
    groups, weights, amounts, ties = _arrays(case)
    got = split_exact(np.array(groups), np.array(weights), np.array(amounts), np.array(ties))
    assert got.tolist() == reference_split(groups, weights, amounts, ties)
    for g, a in enumerate(amounts):
        assert sum(int(x) for x, gg in zip(got, groups) if gg == g) == a
    assert (got >= 0).all()


@settings(max_examples=100, deadline=None)
@given(pools, st.randoms(use_true_random=False))
def test_split_is_invariant_to_row_order(case, rnd):
    groups, weights, amounts, ties = _arrays(case)
    perm = list(range(len(groups)))
    rnd.shuffle(perm)
    a = split_exact(np.array(groups), np.array(weights), np.array(amounts), np.array(ties))
    b = split_exact(np.array(groups)[perm], np.array(weights)[perm], np.array(amounts), np.array(ties)[perm])
    assert a[perm].tolist() == b.tolist()


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10**9), st.lists(st.integers(0, 1000), min_size=1, max_size=30))
def test_monotone_in_weight_and_equal_weights_within_one_unit(amount, weights):
    weights = weights + [1]
    n = len(weights)
    got = split_exact(np.zeros(n, np.int64), np.array(weights), np.array([amount]), np.arange(n)).tolist()
    for i in range(n):
        for j in range(n):
            if weights[i] > weights[j]:
                assert got[i] >= got[j]
            if weights[i] == weights[j]:
                assert abs(got[i] - got[j]) <= 1


def test_pool_without_weight_is_an_error():
    with pytest.raises(InputError, match="no weight"):
        split_exact(np.array([0]), np.array([0]), np.array([5]), np.array([0]))


def _shares(rows):
    return pa.table({
        "output_id": [r[0] for r in rows], "work_id": pa.array([r[1] for r in rows], pa.string()),
        "holder_id": pa.array([r[2] for r in rows], pa.string()), "share": [float(r[3]) for r in rows],
    })


share_cases = st.lists(
    st.tuples(st.integers(0, 4), st.lists(st.integers(0, 64), min_size=1, max_size=6)), min_size=1, max_size=5)


def _build(case):
    events, shares = [], []
    for i, (amt_seed, ws) in enumerate(case):
        out = f"o{i}"
        events.append((f"e{i}", out, 100 + 997 * amt_seed + i))
        total = sum(ws) + 1
        for j, w in enumerate(ws):
            shares.append((out, f"w{j}", f"h{j % 3}", w / total))
        shares.append((out, None, None, 1 / total))
    ev = pa.table({"event_key": [e[0] for e in events], "output_id": [e[1] for e in events],
                   "amount": pa.array([e[2] for e in events], pa.int64())})
    return ev, shares


@settings(max_examples=60, deadline=None)
@given(share_cases, st.randoms(use_true_random=False), st.sampled_from([1.0, 2.0, 0.25, 1024.0]))
def test_allocation_invariant_to_row_order_and_rescaling(case, rnd, scale):
    ev, shares = _build(case)
    a = compute_allocation(POLICY, ev, _shares(shares))
    shuffled = [(o, w, h, s * scale) for o, w, h, s in shares]
    rnd.shuffle(shuffled)
    b = compute_allocation(POLICY, ev.take(list(reversed(range(ev.num_rows)))), _shares(shuffled))
    assert a.split == b.split and a.distribute == b.distribute
    assert sum(a.split.values()) == 0 and sum(a.distribute.values()) == 0
    key = lambda t: sorted(zip(*(t.column(c).to_pylist() for c in ("pool", "event_key", "work_id", "amount"))),
                           key=str)
    assert key(a.detail) == key(b.detail)
    # every output pool is paid exactly and nobody gets a negative amount
    det = a.detail.to_pylist()
    assert all(r["amount"] >= 0 for r in det)
    for r in det:
        if r["pool"] == "split" and r["account"] == "pool:output":
            paid = sum(x["amount"] for x in det if x["pool"] == "output" and x["event_key"] == r["event_key"])
            assert paid == r["amount"]


def test_policy_rules_clip_floor_topk_and_residual():
    pol = parse_policy('[policy]\nname = "t"\ncurrency = "EUR"\n[pools]\nplatform_share = "0"\n'
                       'training_share = "0"\noutput_share = "1"\n[output_pool]\nmin_share = "0.1"\ntop_k = 2\n')
    ev = pa.table({"event_key": ["e"], "output_id": ["o"], "amount": pa.array([1000], pa.int64())})
    sh = _shares([("o", "a", "ha", 0.5), ("o", "b", "hb", 0.3), ("o", "c", "hc", 0.15), ("o", "d", "hd", 0.05),
                  ("o", None, None, 0.0)])
    a = compute_allocation(pol, ev, sh)
    # c is cut by top_k = 2, d by min_share: both go to the residual account
    assert a.distribute == {"holder:ha": 500, "holder:hb": 300, "pool:output": -1000, "unattributed": 200}
    pol2 = parse_policy(pol.text.replace('top_k = 2', 'top_k = 2\nresidual = "renormalise"'))
    b = compute_allocation(pol2, ev, sh)
    assert b.distribute == {"holder:ha": 625, "holder:hb": 375, "pool:output": -1000}
    neg = _shares([("o", "a", "ha", 1.2), ("o", None, None, -0.2)])
    assert compute_allocation(pol, ev, neg).distribute["holder:ha"] == 1000
    pol3 = parse_policy(pol.text + '')
    with pytest.raises(InputError, match="negative share"):
        compute_allocation(parse_policy(pol3.text.replace("[output_pool]", '[output_pool]\nnegative = "error"')),
                           ev, neg)


def test_training_pool_by_exposure_fees_and_caps():
    pol = parse_policy('[policy]\nname = "t"\ncurrency = "EUR"\n[pools]\nplatform_share = "0.5"\n'
                       'training_share = "1"\noutput_share = "0"\n[payout]\ncap_per_holder = "3.00"\n'
                       '[fees]\nfixed_per_work = "0.10"\n')
    ev = pa.table({"event_key": ["e1", "e2"], "output_id": ["o1", "o2"], "amount": pa.array([1000, 1001], pa.int64())})
    exp = pa.table({"work_id": ["w1", "w1", "w2"], "doc_id": ["d1", "d2", "d3"], "weight": [1.0, 1.0, 1.0],
                    "holder_id": ["ha", "ha", "hb"]})
    a = compute_allocation(pol, ev, None, exp, prior_holder={"hb": 250}, fee_works={"w2"})
    # training pool 500 + 500 = 1000 (largest remainder gives the odd cent to the platform or pool)
    t = a.stats["training_pool"]
    assert a.stats["platform"] + t + a.stats["output_pool"] == 2001
    # ha gets 2/3 of the pool, capped at 3.00; hb 1/3 minus what the cap leaves after 2.50 earlier
    ha = (t * 2) // 3 + (1 if (t * 2) % 3 >= 2 else 0)
    assert a.distribute["holder:ha"] == min(ha, 300) + 10  # plus the w1 fee; w2 was paid before
    assert a.distribute["holder:hb"] == 50
    assert sum(a.distribute.values()) == 0


def test_outputs_without_shares_go_to_the_residual_account():
    ev = pa.table({"event_key": ["e"], "output_id": ["o"], "amount": pa.array([999], pa.int64())})
    a = compute_allocation(POLICY, ev, None)
    assert a.stats["outputs_without_shares"] == 1
    assert a.distribute["unattributed"] == a.stats["output_pool"] + a.stats["training_pool"]


# --- the fast paths against the reference (exact equality) -----------------------------------

tie_pools = st.integers(1, 5).flatmap(lambda g: st.tuples(
    st.lists(st.integers(0, 50), min_size=g, max_size=g),
    st.lists(st.tuples(st.integers(0, g - 1), st.integers(0, 6), st.integers(0, 3)), min_size=g, max_size=60),
))


@settings(max_examples=200, deadline=None)
@given(tie_pools)
def test_sorted_threshold_split_equals_reference_with_many_ties(case):
    """Small weights and few tie keys: equal remainders (and equal tie keys) everywhere, so the
    threshold rows of the sorted-key fast path need the tie-break; the reference breaks full ties
    by row order, and so does the fast path."""
    amounts, rows = case
    rows = rows + [(g, 1, 0) for g in range(len(amounts))]
    groups = [r[0] for r in rows]
    weights = [r[1] for r in rows]
    ties = [r[2] for r in rows]
    got = split_exact(np.array(groups), np.array(weights), np.array(amounts), np.array(ties))
    assert got.tolist() == reference_split(groups, weights, amounts, ties)


@settings(max_examples=60, deadline=None)
@given(tie_pools)
def test_lexsort_fallback_equals_sorted_threshold_path(case):
    """Weights above 2**33 per pool take the lexsort path; scaled weights give the same split."""
    amounts, rows = case
    rows = rows + [(g, 1, 0) for g in range(len(amounts))]
    groups = np.array([r[0] for r in rows])
    weights = np.array([r[1] for r in rows])
    ties = np.array([r[2] for r in rows])
    amounts = np.array(amounts)
    a = split_exact(groups, weights, amounts, ties)
    b = split_exact(groups, weights * (1 << 34), amounts, ties)   # same ratios, fallback path
    assert a.tolist() == b.tolist()


def test_large_random_split_equals_reference_per_pool():
    rng = np.random.default_rng(5)
    n_g = 50
    groups = rng.integers(0, n_g, 4000)
    weights = rng.integers(0, 2**32, 4000)
    weights[::7] = weights[1::7][: len(weights[::7])]              # repeated weights: equal remainders
    amounts = rng.integers(0, 10**7, n_g)
    ties = rng.integers(0, 30, 4000)
    groups = np.concatenate([groups, np.arange(n_g)])
    weights = np.concatenate([weights, np.ones(n_g, np.int64)])
    ties = np.concatenate([ties, np.zeros(n_g, np.int64)])
    got = split_exact(groups, weights, amounts, ties)
    assert got.tolist() == reference_split(groups.tolist(), weights.tolist(), amounts.tolist(), ties.tolist())


def test_dictionary_encoded_shares_give_the_same_allocation():
    """compute_allocation reads dictionary-encoded id columns (as batch_shares returns them) the
    same as plain strings: same postings, same detail rows, same column types."""
    pol = parse_policy('[policy]\nname = "t"\ncurrency = "EUR"\n[output_pool]\nmin_share = "0.05"\ntop_k = 3\n')
    ev, rows = _build([(1, [5, 3, 3, 0, 9]), (2, [1]), (0, [7, 7, 7, 7])])
    plain = _shares(rows)
    enc = pa.table({c: (plain.column(c).dictionary_encode() if c != "share" else plain.column(c))
                    for c in plain.column_names})
    a = compute_allocation(pol, ev, plain)
    b = compute_allocation(pol, ev, enc)
    assert a.split == b.split and a.distribute == b.distribute
    assert a.detail.schema == b.detail.schema
    assert a.detail.to_pylist() == b.detail.to_pylist()


def test_batch_shares_hash_join_equals_string_join_and_plain_path(ws, monkeypatch):
    """ingest_shares codes rows by a hash of their (work, holder) pair; the string join it falls
    back to on a hash collision, and the plain-string path of compute_allocation, agree with it."""
    from tribute.market import ledger as ledger_mod
    from tribute.market.ledger import batch_shares, ingest_shares

    rows = [("o1", "w2", "h1", 0.4), ("o1", "w1", "h2", 0.3), ("o1", "w1", "h2", 0.1), ("o1", None, None, 0.2),
            ("o2", "w3", "h1", 0.5), ("o2", "w2", "h1", 0.5), ("o3", None, None, 1.0), ("o9", "w1", "h2", 0.5),
            ("o9", "w0", "h3", 0.5)]   # o9 has no event: its work w0 must not count in the ranks
    shares = _shares(rows)
    ev = pa.table({"event_key": ["e3", "e1", "e2", "e4"], "output_id": ["o3", "o1", "o2", "o1"],
                   "amount": pa.array([10, 1001, 999, 7], pa.int64())})
    with ws.connect() as con:
        ingest_shares(con, shares, "r")
        by_hash = batch_shares(con, ev, "r")
        monkeypatch.setattr(ledger_mod, "_PAIR_HASH_JOIN", False)
        # the same rows as another run, plus a pair the ledger has not seen (coded after the others)
        more = pa.concat_tables([shares, _shares([("o5", "w9", "h9", 1.0)])])
        ingest_shares(con, more, "r-str")
        by_str = batch_shares(con, ev, "r-str")
        assert con.execute("SELECT count(*), count(DISTINCT (work_id, holder_id)), max(pair_code) FROM ledger_pair_ids"
                           ).fetchall() == [(6, 6, 5)]
        assert con.execute("SELECT count(*) FROM ledger_shares WHERE run_id = 'r-str'").fetchall() == [(10,)]
    key = lambda t: sorted(map(str, zip(*(t.column(c).to_pylist() for c in t.column_names))))
    assert key(by_hash) == key(by_str)
    assert by_hash.num_rows == 11         # o1's 4 rows for two events, o2's 2, o3's 1; o9 has no event
    # the same rows, work ranks (-1: unattributed) and holder grouping as the earlier all-SQL version
    with ws.connect() as con:
        con.register("_evs", pa.table({"output_id": ev.column("output_id"), "_ev": pa.array(range(4), pa.int64())}))
        old = con.sql(
            "WITH s AS (SELECT s.output_id, s.work_id, s.holder_id, s.share, e._ev FROM ledger_shares s "
            "  JOIN _evs e USING (output_id) WHERE s.run_id = 'r'), "
            "w AS (SELECT work_id, (row_number() OVER (ORDER BY work_id) - 1)::BIGINT AS _wrank "
            "  FROM (SELECT DISTINCT work_id FROM s WHERE work_id IS NOT NULL)) "
            "SELECT s.*, coalesce(w._wrank, -1) AS _wrank FROM s LEFT JOIN w USING (work_id)").to_arrow_table()
    cols = ["output_id", "work_id", "holder_id", "share", "_ev", "_wrank"]
    sub = lambda t: sorted(map(str, zip(*(t.column(c).to_pylist() for c in cols))))
    assert sub(by_hash) == sub(old)
    pairs = set(zip(by_hash.column("holder_id").to_pylist(), by_hash.column("_hcode").to_pylist()))
    assert len({h for h, _ in pairs}) == len(pairs) == len({c for _, c in pairs})
    a = compute_allocation(POLICY, ev, by_hash)
    b = compute_allocation(POLICY, ev, shares)
    assert a.split == b.split and a.distribute == b.distribute
    dkey = lambda t: sorted(map(str, zip(*(t.column(c).to_pylist() for c in t.column_names))))
    assert dkey(a.detail) == dkey(b.detail)


def test_in_place_residual_path_equals_general_path(ws):
    """Outputs with exactly one unattributed row each and nothing dropped take the in-place path
    (that row is the pool's residual row); it pays the same amounts, detail rows and postings as
    the general path (plain strings, residual rows appended), including idle residual rows
    (share 0: no detail row) and pools whose attributed shares are all clipped to 0."""
    from tribute.market import ledger_alloc
    from tribute.market.ledger import batch_shares, ingest_shares

    rows = [("o1", "w2", "h1", 0.4), ("o1", "w1", "h2", 0.3), ("o1", "w1", "h2", 0.1), ("o1", None, None, 0.2),
            ("o2", "w3", "h1", 0.5), ("o2", "w2", "h1", 0.5), ("o2", None, None, 0.0),
            ("o3", "w1", "h2", 1.0), ("o3", None, None, 0.0),
            ("o4", "w3", "h1", -0.5), ("o4", None, None, 0.0)]
    ev = pa.table({"event_key": ["e1", "e2", "e3", "e4"], "output_id": ["o1", "o2", "o3", "o4"],
                   "amount": pa.array([1001, 999, 7, 50], pa.int64())})
    with ws.connect() as con:
        ingest_shares(con, _shares(rows[:9]), "r")          # o4's negative share only enters below
        fetched = batch_shares(con, ev.slice(0, 3), "r")
    calls = []
    real = ledger_alloc._output_pool_in_place
    ledger_alloc._output_pool_in_place = lambda *a, **kw: calls.append(1) or real(*a, **kw)
    try:
        a = compute_allocation(POLICY, ev.slice(0, 3), fetched)
        compute_allocation(POLICY, ev, fetched)               # e4 has no rows: the general path
    finally:
        ledger_alloc._output_pool_in_place = real
    assert calls == [1]
    b = compute_allocation(POLICY, ev.slice(0, 3), _shares(rows[:9]))
    assert a.split == b.split and a.distribute == b.distribute
    dkey = lambda t: sorted(map(str, zip(*(t.column(c).to_pylist() for c in t.column_names))))
    assert dkey(a.detail) == dkey(b.detail)
    assert not any(r["pool"] == "output" and r["account"] == "unattributed" and r["event_key"] in ("e2", "e3")
                   for r in a.detail.to_pylist())     # idle residual rows are left out, as before
    # all attributed shares clipped to 0 (no valid run can say so: the columns batch_shares
    # would give, by hand): the residual row takes the pool, in both paths
    pol = parse_policy('[policy]\nname = "t"\ncurrency = "EUR"\n[output_pool]\nnegative = "clip"\n')
    works = sorted({r[1] for r in rows if r[1]})
    holders = sorted({r[2] for r in rows if r[2]})
    ev_of = {o: i for i, o in enumerate(ev.column("output_id").to_pylist())}
    pre = _shares(rows).append_column("_ev", pa.array([ev_of[r[0]] for r in rows], pa.int64())) \
        .append_column("_wrank", pa.array([works.index(r[1]) if r[1] else -1 for r in rows], pa.int64())) \
        .append_column("_hcode", pa.array([holders.index(r[2]) if r[2] else -1 for r in rows], pa.int64()))
    a = compute_allocation(pol, ev, pre)
    b = compute_allocation(pol, ev, _shares(rows))
    assert a.distribute == b.distribute and dkey(a.detail) == dkey(b.detail)
    pool4 = [r["amount"] for r in a.detail.to_pylist() if r["event_key"] == "e4" and r["account"] == "pool:output"]
    paid4 = {(r["account"], r["amount"]) for r in a.detail.to_pylist() if r["event_key"] == "e4" and r["pool"] == "output"}
    assert paid4 == {("holder:h1", 0), (pol.output_residual_account, pool4[0])} and pool4[0] > 0


run_pools = st.integers(1, 6).flatmap(lambda g: st.tuples(
    st.lists(st.integers(0, 60), min_size=g, max_size=g),
    st.lists(st.tuples(st.integers(0, g - 1), st.integers(1, 9), st.integers(0, 6), st.integers(0, 3)),
             min_size=g, max_size=30),
    st.sampled_from([1, 2, 3, 5, 8, 1 << 20]),
))


@settings(max_examples=200, deadline=None)
@given(run_pools)
def test_split_by_blocks_of_runs_equals_reference_for_any_block_size(case):
    """Rows in runs of one group (a group may come back in a later run, as the ledger's rows do):
    the split by blocks cut between runs gives the reference split for every block size, with
    tie keys as an array or computed only for the rows at a tie."""
    amounts, rows, block = case
    # a pool without money may have no weight at all (then the remainders come from np.divmod)
    rows = [(g, 1, 1 if a else 0, 0) for g, a in enumerate(amounts)] + rows
    groups = [g for g, n, _, _ in rows for _ in range(n)]
    weights = [w for _, n, w, _ in rows for _ in range(n)]
    ties = [t for _, n, _, t in rows for _ in range(n)]
    g = np.array(groups)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    want = reference_split(groups, weights, amounts, ties)
    asked: list[int] = []

    def tie_of(idx):
        asked.append(len(g) if idx is None else len(idx))
        return np.array(ties) if idx is None else np.array(ties)[idx]

    for tk in (np.array(ties), tie_of):
        got = split_exact(g, np.array(weights), np.array(amounts), tk, runs=(starts, g[starts]), block_rows=block)
        assert got.tolist() == want
    assert sum(asked) <= len(g)


def test_batch_shares_ranks_works_whether_or_not_pair_codes_follow_id_order(ws):
    """Work ranks come from the pairs read in code order when the codes follow the (work, holder)
    order (one ingest), and from a sort of the ids when a later ingest coded a smaller id after
    larger ones; both give each work its rank among the batch's distinct work ids."""
    from tribute.market.ledger import _pairs_sorted, batch_shares, ingest_shares

    ev = pa.table({"event_key": ["e1", "e2"], "output_id": ["o1", "o2"], "amount": pa.array([100, 7], pa.int64())})
    first = [("o1", "w2", "h1", 0.5), ("o1", "w5", "h2", 0.3), ("o1", None, None, 0.2), ("o2", "w3", "h1", 1.0)]
    later = [("o1", "w2", "h1", 0.5), ("o1", "w0", "h3", 0.3), ("o1", None, None, 0.2), ("o2", "w9", "h1", 1.0)]
    with ws.connect() as con:
        ingest_shares(con, _shares(first), "a")
        ingest_shares(con, _shares(later), "b")       # w0 and w9: new codes after w5's
        for run, rows in (("a", first), ("b", later)):
            got = batch_shares(con, ev, run)
            works = sorted({r[1] for r in rows if r[1] is not None})
            want = [works.index(w) if w is not None else -1 for w in got.column("work_id").to_pylist()]
            assert got.column("_wrank").to_pylist() == want
            assert sorted(got.column("work_id").to_pylist(), key=str) == sorted((r[1] for r in rows), key=str)
    s = lambda v: pa.array(v, pa.string())
    assert _pairs_sorted(s(["a", "a", "b", None, None]), s(["x", "y", "a", "a", None]))
    assert not _pairs_sorted(s(["a", None, "b"]), s(["x", "a", "a"]))       # a null work id sorts last
    assert not _pairs_sorted(s(["a", "a"]), s([None, "x"]))                  # a null holder id sorts last
    assert not _pairs_sorted(s(["b", "a"]), s(["x", "x"]))
    assert not _pairs_sorted(s(["a", "a"]), s(["x", "x"]))                  # not strictly increasing
