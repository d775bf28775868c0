"""Benchmark: ingest and exactly allocate attribution rows, against plain DuckDB SQL.

Full size: 10^7 attribution rows (10^5 outputs x 100 rows: 99 works + 1 unattributed row) over
10^5 holders, one revenue event per output. Measured in the same run:

* ingest  : ``ingest_shares`` (validation that shares sum to 1 per output and an order-independent
            content digest for idempotency, one grouped pass; output ids and (work, holder)
            pairs coded once into dictionary tables; bulk ``INSERT ... SELECT`` of integer rows
            from Arrow) -> rows/s
* exact   : what ``tribute ledger allocate`` does: ``batch_shares`` (integer rows of the run from
            DuckDB, matched to events through a lookup array; ranks and holder codes from the
            sorted list of the pairs used, read in pair-code order when that is their id order)
            + ``compute_allocation`` (revenue split, exact largest-remainder output pools by
            blocks of rows, residual rows, dictionary-encoded detail rows, posting lines)
* anchor 1: plain DuckDB SQL float pro-rata split (amount * share), summed per holder
* anchor 2: plain DuckDB SQL exact largest-remainder split (integer weights, HUGEINT products,
            row_number over remainders), summed per holder

Checks: the exact allocation pays every output pool to the unit, and its per-holder totals
differ from the SQL largest-remainder result by at most the number of tie-break units.

Usage::

    .venv/bin/python benchmarks/bench_ledger.py            # 10^7 rows, 10^5 holders
    .venv/bin/python benchmarks/bench_ledger.py --quick    # 10^5 rows, 10^3 holders
    .venv/bin/python benchmarks/bench_ledger.py --repeat 3 # best of 3 (the machine is shared)
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_shares(n_outputs: int, per_output: int, n_holders: int, seed: int = 7):
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    n = n_outputs * per_output
    out = np.repeat(np.arange(n_outputs, dtype=np.int64), per_output)
    pos = np.tile(np.arange(per_output, dtype=np.int64), n_outputs)
    n_works = n_holders * 10
    work = rng.integers(0, n_works, size=n, dtype=np.int64)
    raw = rng.pareto(1.5, size=n) + 1e-3
    sums = np.bincount(out, weights=raw, minlength=n_outputs)
    share = raw / sums[out]
    residual = pos == per_output - 1                    # the last row of each output is unattributed
    work_s = pc.binary_join_element_wise("w", pc.cast(pa.array(work), pa.string()), "")
    holder_s = pc.binary_join_element_wise("h", pc.cast(pa.array(work % n_holders), pa.string()), "")
    mask = pa.array(residual)
    null = pa.scalar(None, pa.string())
    table = pa.table({
        "output_id": pc.binary_join_element_wise("o", pc.cast(pa.array(out), pa.string()), ""),
        "work_id": pc.if_else(mask, null, work_s),
        "holder_id": pc.if_else(mask, null, holder_s),
        "share": pa.array(share),
        "score": pa.array(raw),
    })
    # (output, work) pairs may repeat by chance; that is fine for a split (two rows, one work)
    events = pa.table({
        "event_key": pc.binary_join_element_wise("e", pc.cast(pa.array(np.arange(n_outputs)), pa.string()), ""),
        "output_id": pc.binary_join_element_wise("o", pc.cast(pa.array(np.arange(n_outputs)), pa.string()), ""),
        "amount": pa.array(rng.integers(1, 10**7, size=n_outputs, dtype=np.int64)),
    })
    return table, events


def run(n_outputs: int, per_output: int, n_holders: int) -> dict:
    import numpy as np

    from tribute.market.ledger import batch_shares, ingest_shares
    from tribute.market.ledger_alloc import compute_allocation
    from tribute.market.policy import parse_policy
    from tribute.market.workspace import Workspace

    policy = parse_policy('[policy]\nname = "bench"\ncurrency = "EUR"\n[pools]\nplatform_share = "0"\n'
                          'training_share = "0"\noutput_share = "1"\n', "bench")
    shares, events = make_shares(n_outputs, per_output, n_holders)
    n = shares.num_rows
    res: dict = {"rows": n, "outputs": n_outputs, "holders": n_holders}
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        ws.init()
        with ws.connect() as con:
            t0, c0 = time.perf_counter(), time.process_time()
            out = ingest_shares(con, shares, "bench-run")
            res["ingest_s"] = time.perf_counter() - t0
            res["ingest_cpu_s"] = time.process_time() - c0
            assert out["rows"] == n
            res["ingest_rows_per_s"] = n / res["ingest_s"]
            con.execute("SELECT 1").fetchall()
            con.register("events", events)
            con.execute("CREATE TEMP TABLE ev AS SELECT * FROM events")
            con.unregister("events")

            t0, c0 = time.perf_counter(), time.process_time()
            fetched = batch_shares(con, events, "bench-run")
            res["fetch_s"] = time.perf_counter() - t0
            t0, c1 = time.perf_counter(), time.process_time()
            alloc = compute_allocation(policy, events, fetched)
            res["exact_allocation_s"] = time.perf_counter() - t0
            res["allocation_total_s"] = res["fetch_s"] + res["exact_allocation_s"]
            res["allocation_cpu_s"] = time.process_time() - c0
            res["split_cpu_s"] = time.process_time() - c1
            det = alloc.detail
            total = int(np.asarray(events.column("amount")).sum())
            assert sum(v for k, v in alloc.distribute.items() if k != "pool:output") == total
            assert alloc.distribute["pool:output"] == -total
            ours = {k.split(":", 1)[1]: v for k, v in alloc.distribute.items() if k.startswith("holder:")}
            del det

            del fetched
            # the anchors read a plain table of the same rows (strings, as plain SQL would store
            # them), made outside the timed steps; ledger_shares is a view over coded rows
            con.register("shares_in", shares)
            con.execute("CREATE TEMP TABLE plain_shares AS SELECT output_id, work_id, holder_id, share FROM shares_in")
            con.unregister("shares_in")
            # anchor 1: float pro-rata in SQL
            t0, c0 = time.perf_counter(), time.process_time()
            con.execute("CREATE TEMP TABLE a1 AS SELECT s.holder_id, sum(e.amount * s.share) AS amt "
                        "FROM plain_shares s JOIN ev e USING (output_id) GROUP BY s.holder_id")
            res["sql_float_prorata_s"] = time.perf_counter() - t0
            res["sql_float_prorata_cpu_s"] = time.process_time() - c0

            # anchor 2: exact largest remainder in SQL
            t0, c0 = time.perf_counter(), time.process_time()
            con.execute("""
                CREATE TEMP TABLE a2 AS
                WITH q AS (
                    SELECT s.output_id, s.work_id, s.holder_id, e.amount,
                           round(s.share * 4294967296)::BIGINT AS w FROM plain_shares s JOIN ev e USING (output_id)),
                t AS (SELECT *, sum(w) OVER (PARTITION BY output_id)::HUGEINT AS wt FROM q),
                f AS (SELECT *, (amount::HUGEINT * w) // wt AS fl, (amount::HUGEINT * w) % wt AS rem FROM t),
                l AS (SELECT *, amount - sum(fl) OVER (PARTITION BY output_id) AS lft,
                             row_number() OVER (PARTITION BY output_id ORDER BY rem DESC, work_id NULLS LAST) AS rn
                      FROM f)
                SELECT holder_id, sum(fl + CASE WHEN rn <= lft THEN 1 ELSE 0 END)::BIGINT AS amt
                FROM l GROUP BY holder_id""")
            res["sql_exact_lr_s"] = time.perf_counter() - t0
            res["sql_exact_lr_cpu_s"] = time.process_time() - c0
            sql_exact = dict(con.execute("SELECT holder_id, amt FROM a2 WHERE holder_id IS NOT NULL").fetchall())
            float_total = con.execute("SELECT sum(amt) FROM a1").fetchall()[0][0]
    diff = sum(abs(ours.get(h, 0) - int(v)) for h, v in sql_exact.items())
    res["abs_diff_vs_sql_exact_units"] = diff   # tie-breaks differ (rotated rank vs work id)
    res["float_prorata_total_error_units"] = float(float_total) - total
    res["exact_vs_sql_exact_ratio"] = res["allocation_total_s"] / res["sql_exact_lr_s"]
    res["exact_vs_sql_float_ratio"] = res["allocation_total_s"] / res["sql_float_prorata_s"]
    res["peak_rss_mib"] = peak_rss_mib()
    return res


RANGE_KEYS = ("ingest_rows_per_s", "allocation_total_s", "sql_float_prorata_s", "sql_exact_lr_s",
              "exact_vs_sql_float_ratio", "exact_vs_sql_exact_ratio", "peak_rss_mib")


def best_of(runs: list[dict]) -> dict:
    """The best (lowest time, highest rate) of each figure over repeated runs; ratios from the
    best times of the same run are kept per run (their best), since the load varies between runs."""
    res = dict(runs[-1])
    for k in res:
        vals = [r[k] for r in runs]
        if k.endswith("_per_s"):                      # a rate: the best is the highest
            res[k] = max(vals)
        elif k.endswith("_s") or k.endswith("_ratio"):
            res[k] = min(vals)
    res["runs"] = len(runs)
    # the spread over the runs (the machine is shared): [min, max] of the headline figures
    res["range"] = {k: [min(r[k] for r in runs), max(r[k] for r in runs)] for k in RANGE_KEYS}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="10^5 rows over 10^3 holders")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--repeat", type=int, default=1, help="run N times, report the best time of each step")
    a = ap.parse_args(argv)
    size = (1_000, 100, 1_000) if a.quick else (100_000, 100, 100_000)
    runs = [run(*size) for _ in range(max(1, a.repeat))]
    res = best_of(runs)
    if a.json:
        print(json.dumps(res, indent=2, sort_keys=True))
        return 0
    print(f"rows {res['rows']:,} over {res['holders']:,} holders ({res['outputs']:,} output pools)")
    print(f"best of {res['runs']} run(s); cpu = process CPU time of the step (both cores count)")
    print(f"ingest (validate + digest + insert): {res['ingest_s']:.2f} s = {res['ingest_rows_per_s']:,.0f} rows/s "
          f"(cpu {res['ingest_cpu_s']:.2f} s)")
    print(f"exact allocation (tribute):          {res['allocation_total_s']:.2f} s = match rows to events and "
          f"code works/holders in DuckDB {res['fetch_s']:.2f} s + split in numpy/Arrow {res['exact_allocation_s']:.2f} s "
          f"(cpu {res['allocation_cpu_s']:.2f} s, of it split {res['split_cpu_s']:.2f} s)")
    print(f"anchor: SQL float pro-rata:          {res['sql_float_prorata_s']:.2f} s (cpu {res['sql_float_prorata_cpu_s']:.2f} s) "
          f"(ratio tribute/anchor {res['exact_vs_sql_float_ratio']:.2f}; total off by "
          f"{res['float_prorata_total_error_units']:.3g} units)")
    print(f"anchor: SQL exact largest remainder: {res['sql_exact_lr_s']:.2f} s (cpu {res['sql_exact_lr_cpu_s']:.2f} s) "
          f"(ratio tribute/anchor {res['exact_vs_sql_exact_ratio']:.2f}; per-holder differences from tie-breaks: "
          f"{res['abs_diff_vs_sql_exact_units']} units)")
    print(f"peak RSS: {res['peak_rss_mib']:,.0f} MiB")
    if res["runs"] > 1:
        rg = res["range"]
        print("over the runs (min-max): " + "; ".join(f"{k} {lo:,.2f}-{hi:,.2f}" for k, (lo, hi) in rg.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
