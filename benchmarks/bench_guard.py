"""Benchmark: the output guard (``tribute guard``) against a naive reference, in the same run.

Full size: 10^4 works of 600 words (synthetic English-like text: a Zipf vocabulary of 30,000
content words mixed with function words), 4,000 model outputs of 300 words; half of the outputs
carry an excerpt of 15-60 words of a random work, a third of those disguised by adversarial
formatting (case, punctuation, zero-width characters, Cyrillic look-alikes, fullwidth letters,
combining accents). The issue's target: >= 1,000 outputs per second per core against 10^4 works.

Measured in the same run, on one core:

* guard : ``Guard.check_many`` in batches of 256 (skeleton normalisation, tokenisation, exact
          n-gram lookup, verbatim runs, redaction) -> outputs/s; the index build time is shown apart
* naive : the reference ``naive_spans``: per output, every (max_words + 1)-word window searched as a
          substring of every work's normalised text -> outputs/s on a sample of the outputs

Checks: the guard flags exactly the works the naive reference flags on the sample; every planted
excerpt longer than ``max_words`` is caught (recall).

Usage::

    .venv/bin/python benchmarks/bench_guard.py            # 10^4 works, 4,000 outputs
    .venv/bin/python benchmarks/bench_guard.py --quick    # 150 works, 300 outputs
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

FUNCTION = ("the of and to a in that it is was he for on as with his they at be this from i have or by "
            "one had not but what all were when we there can an your which their said if do will each").split()
ATTACKS = (
    lambda s: s.upper(),
    lambda s: ", ".join(s.split()) + "!",
    lambda s: "".join(c + ("\u200b" if i % 4 == 0 else "") for i, c in enumerate(s)),
    lambda s: s.translate(str.maketrans("aeopcx", "аеорсх")),
    lambda s: "".join(chr(ord(c) + 0xFEE0) if c.isalpha() and c.isascii() else c for c in s),
    lambda s: "".join(c + "\u0301" if c in "aeiou" else c for c in s),
)


def make_text(rng: random.Random, vocab: list[str], cum: list[float], n: int) -> list[str]:
    content = rng.choices(vocab, cum_weights=cum, k=n)
    return [rng.choice(FUNCTION) if rng.random() < 0.4 else w for w in content]


def make_data(n_works: int, work_words: int, n_outputs: int, out_words: int, seed: int = 11):
    rng = random.Random(seed)
    vocab = [f"{rng.choice('bcdfghklmnprstvw')}{rng.choice('aeiou')}{i:x}" for i in range(30000)]
    weights = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(vocab))))
    works = {f"work{i:05d}": " ".join(make_text(rng, vocab, weights, work_words)) for i in range(n_works)}
    ids = sorted(works)
    outputs, planted = [], []
    for j in range(n_outputs):
        words = make_text(rng, vocab, weights, out_words)
        truth = None
        if j % 2 == 0:
            wid = rng.choice(ids)
            ww = works[wid].split()
            k = rng.randint(15, 60)
            s = rng.randrange(len(ww) - k)
            excerpt = " ".join(ww[s:s + k])
            if j % 3 == 0:
                excerpt = ATTACKS[j % len(ATTACKS)](excerpt)
            at = rng.randrange(len(words) - k)
            words[at:at + k] = [excerpt]
            truth = wid
        outputs.append(" ".join(words))
        planted.append(truth)
    return works, outputs, planted


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small size, for tests")
    ap.add_argument("--works", type=int, help="number of works")
    ap.add_argument("--outputs", type=int, help="number of outputs")
    ap.add_argument("--naive", type=int, help="outputs checked by the naive reference")
    ap.add_argument("--max-words", type=int, default=12)
    ap.add_argument("--json", action="store_true", help="print one JSON line of results at the end")
    a = ap.parse_args(argv)
    n_works = a.works or (150 if a.quick else 10_000)
    n_out = a.outputs or (300 if a.quick else 4_000)
    n_naive = a.naive or (6 if a.quick else 8)
    work_words = 600

    from tribute.indexes.guard import Guard, GuardConfig, naive_haystacks, naive_spans

    t = time.perf_counter()
    works, outputs, planted = make_data(n_works, work_words, n_out, 300)
    gen_s = time.perf_counter() - t
    cfg = GuardConfig(max_words=a.max_words)
    t = time.perf_counter()
    guard = Guard.build(list(works.items()), cfg)
    build_s = time.perf_counter() - t
    guard.check_many(outputs[:8])  # warm the word table
    t = time.perf_counter()
    results = []
    for i in range(0, len(outputs), 256):
        results += guard.check_many(outputs[i:i + 256])
    guard_s = time.perf_counter() - t
    caught = sum(1 for p, r in zip(planted, results) if p is not None and p in {x.work_id for x in r.redactions})
    n_planted = sum(p is not None for p in planted)
    hays = naive_haystacks(works)
    sample = list(range(0, len(outputs), max(1, len(outputs) // n_naive)))[:n_naive]
    t = time.perf_counter()
    naive = [naive_spans(hays, outputs[i], a.max_words) for i in sample]
    naive_s = time.perf_counter() - t
    agree = sum(ref == {x.work_id for x in results[i].redactions} for i, ref in zip(sample, naive))
    g_rate, n_rate = len(outputs) / guard_s, len(sample) / naive_s
    res = {"works": n_works, "work_words": work_words, "outputs": len(outputs), "output_words": 300,
           "max_words": a.max_words, "build_s": round(build_s, 2), "guard_s": round(guard_s, 3),
           "outputs_per_s": round(g_rate, 1), "naive_outputs_per_s": round(n_rate, 2),
           "speedup_vs_naive": round(g_rate / n_rate, 1), "checked_naive": len(sample), "agree": agree,
           "recall_planted": round(caught / max(1, n_planted), 4), "planted": n_planted,
           "flagged": sum(bool(r.redactions) for r in results), "target_outputs_per_s": 1000,
           "load_avg": os.getloadavg()[0], "data_s": round(gen_s, 1)}
    print(f"guard: {n_works} works x {work_words} words indexed in {build_s:.1f}s; {len(outputs)} outputs of 300 "
          f"words in {guard_s:.2f}s = {g_rate:,.0f} outputs/s on one core (target 1,000)")
    print(f"naive reference (substring search per work): {n_rate:,.2f} outputs/s on {len(sample)} outputs "
          f"-> guard is {g_rate / n_rate:,.0f}x faster; agreement {agree}/{len(sample)}")
    print(f"planted excerpts caught: {caught}/{n_planted}; load average {res['load_avg']:.2f}")
    if a.json:
        print(json.dumps(res))
    return 0 if agree == len(sample) and caught == n_planted else 1


if __name__ == "__main__":
    sys.exit(main())
