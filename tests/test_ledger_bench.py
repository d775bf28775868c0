"""The ledger benchmark's core runs (reduced size) and checks what it claims."""

from __future__ import annotations

import importlib.util
from pathlib import Path


BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ledger.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_ledger", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_quick_core():
    res = _bench().run(200, 50, 40)
    assert res["rows"] == 10_000
    for k in ("ingest_rows_per_s", "allocation_total_s", "sql_exact_lr_s", "sql_float_prorata_s", "peak_rss_mib"):
        assert res[k] > 0
    # the same largest-remainder split as plain SQL, up to tie-break units
    assert res["abs_diff_vs_sql_exact_units"] <= 2 * 200


def test_precomputed_codes_give_the_same_allocation(ws):
    """The ledger's DuckDB path (batch_shares: _ev, _wrank, _hcode) equals the pure Arrow path,
    whatever DuckDB's thread count and the event order."""
    from tribute.market.ledger import batch_shares, ingest_shares
    from tribute.market.ledger_alloc import compute_allocation
    from tribute.market.policy import parse_policy

    shares, events = _bench().make_shares(300, 20, 25, seed=3)
    pol = parse_policy('[policy]\nname = "b"\ncurrency = "EUR"\n[output_pool]\nmin_share = "0.01"\ntop_k = 12\n')
    with ws.connect() as con:
        ingest_shares(con, shares, "r")
        fetched = batch_shares(con, events, "r")
        con.execute("SET threads = 1")
        fetched1 = batch_shares(con, events.take(list(reversed(range(events.num_rows)))), "r")
    a = compute_allocation(pol, events, shares)
    b = compute_allocation(pol, events, fetched)
    c = compute_allocation(pol, events.take(list(reversed(range(events.num_rows)))), fetched1)
    assert a.split == b.split == c.split and a.distribute == b.distribute == c.distribute
    key = lambda t: sorted(zip(*(t.column(c).to_pylist() for c in ("pool", "event_key", "work_id", "account", "amount"))),
                           key=str)
    assert key(a.detail) == key(b.detail)


def test_bench_quick_mode_runs_and_reports(capsys):
    """`bench_ledger.py --quick --json` (10^5 rows over 10^3 holders): the script's own mode."""
    import json

    assert _bench().main(["--quick", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["rows"] == 100_000 and res["holders"] == 1_000 and res["runs"] == 1
    assert res["abs_diff_vs_sql_exact_units"] <= 2 * res["outputs"]
    assert res["ingest_rows_per_s"] > 0 and res["allocation_total_s"] > 0 and res["peak_rss_mib"] > 0
