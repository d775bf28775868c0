"""Attribution quality (LDS) and speed, tribute's methods beside the anchors, in one run.

Part 1, a seeded MLP classifier on a synthetic 2-D "two moons + noise" dataset (no download;
scikit-learn is not a dependency): for each method the LDS (mean +- sd over queries), wall time
and peak RSS growth. Anchors run directly in the same process: traker's own TRAKer (BasicProjector,
1 / 10 / 20 checkpoints; quick: 1 / 5), kronfluence EK-FAC and pyDVL's EkfacInfluence when they
are importable (neither is a dependency: kronfluence's metadata pulls torchvision and a new torch,
pyDVL's pins numpy < 2; install them with --no-deps into a folder on PYTHONPATH, see the README).
All methods of this part run in turn, 3 rounds (quick: 1), median time.

The TRAK rows (tribute's native TRAK with features in memory and on disk, the same TRAK through
traker's TRAKer, and the anchor) are timed together: each runs in turn, 7 rounds (quick: 3), and
the row reports the median (``seconds``) and the minimum (``seconds_min``); every one of them
featurises the training set at each checkpoint and scores the queries (see ``trak_cases``).

Part 2, projection: traker's BasicProjector (dense Gaussian) vs tribute's count-sketch on the same
gradients: time per batch and the relative error of inner products; and TRAK's LDS with each.

Part 2b, TRAK on a wider MLP (67,842 parameters; quick: 4,674) where per-example gradients and
projection dominate: tribute's native TRAK vs traker's TRAKer, LDS and time (3 rounds).

Part 3 (skipped with --quick): a tiny causal LM on text with a planted passage, LDS of each
gradient method over retrains.

Usage::

    .venv/bin/python benchmarks/bench_attribution.py --quick     # a few minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_attribution.py             # the full run (tens of minutes)
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time

import numpy as np
import torch

from tribute.attribution import ClassificationTask, attribute, measure_queries


def moons(n, seed):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    y = rng.integers(0, 2, n)
    x = np.stack([np.cos(t) + y * 1.0, np.sin(t) * (1 - 2 * y) + y * 0.4], 1) + rng.normal(0, 0.25, (n, 2))
    feats = np.concatenate([x, rng.normal(0, 1, (n, 3))], 1).astype(np.float32)   # 3 noise features
    return [(torch.tensor(feats[i]), int(y[i])) for i in range(n)]


def make_model(seed=0, width=16):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, width), torch.nn.Tanh(), torch.nn.Linear(width, width),
                               torch.nn.Tanh(), torch.nn.Linear(width, 2))


def train(data, seed, epochs=150, save=0, wd=1e-3, width=16):
    model = make_model(seed, width)
    X = torch.stack([x for x, _ in data])
    y = torch.tensor([t for _, t in data])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=wd)
    ckpts = []
    for e in range(epochs):
        loss = torch.nn.functional.cross_entropy(model(X), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if save and (e + 1) % (epochs // save) == 0:
            ckpts.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return model, ckpts


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn):
    r0, t0 = rss_mb(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, rss_mb() - r0


def timed_together(fns: dict, repeat: int) -> dict:
    """``{name: (result, median seconds, min seconds, peak RSS growth)}``: the functions run in turn,
    ``repeat`` rounds (so a burst of load on the shared machine hits all of them alike)."""
    secs = {k: [] for k in fns}
    out, mem = {}, {}
    for _ in range(repeat):
        for k, fn in fns.items():
            r0, t0 = rss_mb(), time.perf_counter()
            out[k] = fn()
            secs[k].append(time.perf_counter() - t0)
            mem[k] = max(mem.get(k, 0.0), rss_mb() - r0)
    return {k: (out[k], float(np.median(secs[k])), min(secs[k]), mem[k]) for k in fns}


def trak_cases(model, ckpts, task, train_set, queries, n_cks, proj_dim=256, lambda_reg=1e-3, traker_impl=True):
    """The TRAK timings: tribute's native TRAK (features in memory, and on disk in a features
    folder), optionally the same through traker's TRAKer with tribute's projector, and the anchor
    (traker's TRAKer, BasicProjector), each at ``n_cks`` checkpoints (the last ones).

    Every case does the same work from the same in-memory model and state dicts: featurise the
    training set at each checkpoint (per-example gradients of the training output, projection to
    ``proj_dim``, out-to-loss weights), the ridge inverse per checkpoint, query gradients, and the
    ensembled scores. tribute's times also include its run bookkeeping (input fingerprints,
    checkpoint checks, the manifest; on disk: the atomic features file and its manifest)."""
    n = len(train_set)
    cases = {}
    for nk in n_cks:
        sub = ckpts[-nk:]
        kw = dict(proj_dim=proj_dim, projector="countsketch", lambda_reg=lambda_reg, batch_size=n)
        cases[f"tribute trak countsketch ({nk} ckpt)"] = lambda sub=sub, kw=kw: attribute(
            model, sub, task, train_set, queries, "trak", **kw).scores
        cases[f"tribute trak countsketch, features on disk ({nk} ckpt)"] = lambda sub=sub, kw=kw: attribute(
            model, sub, task, train_set, queries, "trak", features_dir=tempfile.mkdtemp(), **kw).scores
        if traker_impl:
            cases[f"tribute trak via TRAKer, countsketch ({nk} ckpt)"] = lambda sub=sub, kw=kw: attribute(
                model, sub, task, train_set, queries, "trak", trak_impl="traker", **{**kw, "batch_size": 32}).scores
        cases[f"anchor traker TRAKer ({nk} ckpt)"] = lambda sub=sub: traker_anchor(
            model, sub, train_set, queries, proj_dim, tempfile.mkdtemp(), lambda_reg)
    return cases


def trak_speedups(rows, prefix=""):
    """Print tribute's native TRAK against the anchor for each checkpoint count in ``rows``."""
    tk = {r["method"]: r for r in rows if "lds" in r}
    for name, ours in tk.items():
        if not name.startswith(f"{prefix}tribute trak countsketch") or "on disk" in name:
            continue
        nk = name.rsplit("(", 1)[1]
        theirs = tk.get(f"{prefix}anchor traker TRAKer ({nk}")
        disk = tk.get(f"{prefix}tribute trak countsketch, features on disk ({nk}")
        if theirs:
            print(f"# {prefix}TRAK {nk.rstrip(')')}: countsketch LDS {ours['lds']} in {ours['seconds']}s (on disk "
                  f"{disk['seconds'] if disk else '-'}s) vs traker LDS {theirs['lds']} in {theirs['seconds']}s "
                  f"({theirs['seconds'] / max(ours['seconds'], 1e-9):.1f}x; on disk "
                  f"{theirs['seconds'] / max(disk['seconds'], 1e-9) if disk else float('nan'):.1f}x)")


def traker_anchor(model, ckpts, train_set, queries, proj_dim, tmp, lambda_reg):
    """traker's own TRAKer with its default CPU projector (BasicProjector) and ClassificationModelOutput.

    BasicProjector is an unnormalised N(0, 1) matrix (E|Pg|^2 = k|g|^2), tribute's projectors are
    scaled to preserve norms, so the same ridge is ``lambda_reg x proj_dim`` here (traker's own
    default 0 scored LDS 0.04 / 0.14 at 1 / 20 checkpoints on this model: singular-ish X^T X)."""
    import logging

    from trak import TRAKer

    tr = TRAKer(model=model, task="image_classification", train_set_size=len(train_set), save_dir=tmp,
                device="cpu", proj_dim=proj_dim, use_half_precision=False, logging_level=logging.ERROR,
                lambda_reg=lambda_reg * proj_dim)
    X = torch.stack([x for x, _ in train_set])
    y = torch.tensor([t for _, t in train_set])
    for k, sd in enumerate(ckpts):
        tr.load_checkpoint(sd, model_id=k)
        tr.featurize(batch=(X, y), num_samples=len(train_set))
    tr.finalize_features()
    Xq = torch.stack([x for x, _ in queries])
    yq = torch.tensor([t for _, t in queries])
    for k, sd in enumerate(ckpts):
        tr.start_scoring_checkpoint(exp_name="q", checkpoint=sd, model_id=k, num_targets=len(queries))
        tr.score(batch=(Xq, yq), num_samples=len(queries))
    return np.asarray(tr.finalize_scores(exp_name="q"), dtype=np.float64).T


def kronfluence_anchor(model, train_set, queries, tmp, damping=1e-8):
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments
    from kronfluence.task import Task
    from torch.utils.data import TensorDataset

    class T(Task):
        def compute_train_loss(self, batch, model, sample=False):
            x, t = batch
            lo = model(x)
            if sample:
                with torch.no_grad():
                    t = torch.multinomial(torch.softmax(lo, -1), 1).flatten()
            return torch.nn.functional.cross_entropy(lo, t, reduction="sum")

        def compute_measurement(self, batch, model):
            # kronfluence's measurement is loss-like (its examples return -margin); its score
            # grad m^T H^-1 grad L is then exactly tribute's convention (> 0 raises the margin)
            return -ClassificationTask().measurement(model, batch).sum()

    m = prepare_model(model, T())
    an = Analyzer("bench", m, T(), output_dir=tmp, disable_tqdm=True, cpu=True)
    ds = TensorDataset(torch.stack([x for x, _ in train_set]), torch.tensor([t for _, t in train_set]))
    qs = TensorDataset(torch.stack([x for x, _ in queries]), torch.tensor([t for _, t in queries]))
    an.fit_all_factors("f", ds, per_device_batch_size=64, factor_args=FactorArguments(strategy="ekfac"),
                       overwrite_output_dir=True)
    from kronfluence.arguments import ScoreArguments

    an.compute_pairwise_scores("s", "f", query_dataset=qs, train_dataset=ds, per_device_query_batch_size=len(queries),
                               per_device_train_batch_size=64, overwrite_output_dir=True,
                               score_args=ScoreArguments(damping_factor=damping))
    return an.load_pairwise_scores("s")["all_modules"].double().numpy()


def pydvl_anchor(model, train_set, queries, regularization=0.0):
    """pyDVL's EK-FAC (``EkfacInfluence`` with the refitted diagonal, its recommended setting).

    pyDVL's ``InfluenceMode.Up`` value is ``grad L(q)^T H^-1 grad L(i)`` (no minus sign): > 0
    means up-weighting the training point lowers the query's loss, which is tribute's convention
    (> 0 raises the margin), so it is used as it is.
    """
    from pydvl.influence import InfluenceMode
    from pydvl.influence.torch import EkfacInfluence
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.stack([x for x, _ in train_set])
    y = torch.tensor([t for _, t in train_set])
    xq = torch.stack([x for x, _ in queries])
    yq = torch.tensor([t for _, t in queries])
    inf = EkfacInfluence(model, update_diagonal=True, hessian_regularization=regularization)
    inf = inf.fit(DataLoader(TensorDataset(x, y), batch_size=64))
    return inf.influences(xq, yq, x, y, mode=InfluenceMode.Up).double().numpy()


def part_classifier(a, results):
    n_train, n_q = (120, 12) if a.quick else (400, 30)
    data = moons(n_train + n_q, seed=1)
    train_set, queries = data[:n_train], data[n_train:]
    n_ck = 5 if a.quick else 20
    model, ckpts = train(train_set, 0, save=n_ck)
    task = ClassificationTask()

    def train_fn(idx, seed):
        return train([train_set[i] for i in idx], seed)[0]

    measure = measure_queries(task, queries)
    subsets = 20 if a.quick else 100
    seeds = 1 if a.quick else 3

    from tribute.attribution import subset_masks
    from tribute.attribution.lds import lds, retrain_outputs

    masks = subset_masks(n_train, subsets, 0.5, seed=0)
    t0 = time.perf_counter()
    outputs = retrain_outputs(train_fn, measure, masks, seeds, 0)
    print(f"# retrained {subsets} subsets x {seeds} seeds in {time.perf_counter() - t0:.1f}s")
    last = [ckpts[-1]]
    cases = [
        ("tribute graddot", lambda: attribute(model, last, task, train_set, queries, "graddot").scores),
        ("tribute gradcos", lambda: attribute(model, last, task, train_set, queries, "gradcos").scores),
        (f"tribute tracin ({n_ck} ckpts)", lambda: attribute(model, ckpts, task, train_set, queries, "tracin").scores),
        ("tribute influence kfac", lambda: attribute(model, last, task, train_set, queries, "influence", hessian="kfac", damping=0.01).scores),
        ("tribute influence ekfac", lambda: attribute(model, last, task, train_set, queries, "influence", hessian="ekfac", damping=0.01).scores),
        ("tribute influence ekfac (damping 0.1)", lambda: attribute(model, last, task, train_set, queries, "influence", hessian="ekfac", damping=0.1).scores),
        # damping 0.1 x mean eigenvalue: kronfluence's documented heuristic, not tuned on LDS
        ("tribute influence explicit GN", lambda: attribute(model, last, task, train_set, queries, "influence", hessian="explicit", damping=0.1).scores),
        ("tribute influence cg GN", lambda: attribute(model, last, task, train_set, queries, "influence", hessian="cg", damping=0.1).scores),
        ("tribute influence explicit MC-Fisher (8 samples)", lambda: attribute(
            model, last, task, train_set, queries, "influence", hessian="explicit", damping=0.1, curvature="fisher", fisher_samples=8).scores),
    ]
    try:
        import kronfluence  # noqa: F401

        import copy

        cases.append(("anchor kronfluence ekfac", lambda: kronfluence_anchor(
            copy.deepcopy(model), train_set, queries, tempfile.mkdtemp())))
        cases.append(("anchor kronfluence ekfac (heuristic damping)", lambda: kronfluence_anchor(
            copy.deepcopy(model), train_set, queries, tempfile.mkdtemp(), damping=None)))
    except ImportError:
        print("# kronfluence not installed: anchor skipped (pip install --no-deps kronfluence accelerate einops opt-einsum einconv)")
    try:
        import pydvl.influence.torch  # noqa: F401

        import copy

        cases.append(("anchor pydvl ekfac", lambda: pydvl_anchor(copy.deepcopy(model), train_set, queries)))
        # 1e-4: the best of a sweep 0 / 1e-4 / 1e-3 / ... / 1 on this very LDS (generous to the anchor)
        cases.append(("anchor pydvl ekfac (regularization 1e-4)", lambda: pydvl_anchor(
            copy.deepcopy(model), train_set, queries, 1e-4)))
    except ImportError:
        print("# pyDVL not importable: anchor skipped (it needs dask, distributed and zarr: see the README, Attribution quality)")
    def caught(fn):
        def run():
            try:
                return fn()
            except Exception as e:  # noqa: BLE001 - a failing anchor is reported, not fatal
                return e
        return run

    # every method runs in turn, 3 rounds (quick: 1), median time: the first call of a code path
    # (imports, functorch set-up) and bursts of load do not land on one method alone
    repeat = 1 if a.quick else 3
    timings = timed_together({name: caught(fn) for name, fn in cases}, repeat)
    for name, (scores, secs, secs_min, mem) in timings.items():
        if isinstance(scores, Exception):
            row = {"part": "classifier", "method": name, "error": f"{type(scores).__name__}: {str(scores)[:120]}"}
        else:
            r = lds(scores, masks, outputs, seeds)
            row = {"part": "classifier", "method": name, "lds": round(r.mean, 3), "lds_sd": round(r.sd, 3),
                   "seconds": round(secs, 3), "seconds_min": round(secs_min, 3), "repeats": repeat,
                   "peak_rss_growth_mb": round(mem, 1)}
        results.append(row)
        print(json.dumps(row))
    trak_rows(trak_cases(model, ckpts, task, train_set, queries, (1, 5) if a.quick else (1, 10, 20)),
              3 if a.quick else 7, masks, outputs, seeds, "classifier", results)


def trak_rows(cases, repeat, masks, outputs, seeds, part, results, prefix=""):
    """Time the TRAK ``cases`` together (median of ``repeat`` rounds) and add their LDS rows."""
    from tribute.attribution.lds import lds

    for name, (scores, med, best, mem) in timed_together(cases, repeat).items():
        r = lds(scores, masks, outputs, seeds)
        row = {"part": part, "method": prefix + name, "lds": round(r.mean, 3), "lds_sd": round(r.sd, 3),
               "seconds": round(med, 4), "seconds_min": round(best, 4), "repeats": repeat,
               "peak_rss_growth_mb": round(mem, 1)}
        results.append(row)
        print(json.dumps(row))


def part_trak_wide(a, results):
    """TRAK on a wider MLP (5-256-256-2, 67,842 parameters; quick: 5-64-64-2) on the same data,
    where per-example gradients and their projection, not fixed costs, dominate featurisation:
    tribute's native TRAK against traker's TRAKer, 1 and 10 checkpoints (quick: 1 and 3)."""
    from tribute.attribution import subset_masks
    from tribute.attribution.lds import retrain_outputs

    n_train, n_q = (120, 12) if a.quick else (400, 30)
    width, n_ck = (64, 3) if a.quick else (256, 10)
    data = moons(n_train + n_q, seed=1)
    train_set, queries = data[:n_train], data[n_train:]
    model, ckpts = train(train_set, 0, save=n_ck, width=width)
    task = ClassificationTask()
    subsets, seeds = (20, 1) if a.quick else (100, 2)
    masks = subset_masks(n_train, subsets, 0.5, seed=0)
    t0 = time.perf_counter()
    outputs = retrain_outputs(lambda idx, seed: train([train_set[i] for i in idx], seed, width=width)[0],
                              measure_queries(task, queries), masks, seeds, 0)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"# wide MLP ({n_params} parameters): retrained {subsets} subsets x {seeds} seeds in "
          f"{time.perf_counter() - t0:.1f}s")
    trak_rows(trak_cases(model, ckpts, task, train_set, queries, (1, n_ck), traker_impl=False), 3,
              masks, outputs, seeds, "trak-wide", results, prefix="wide ")


def part_projection(a, results):
    from trak.projectors import BasicProjector, ProjectionType

    from tribute.attribution.projection import CountSketchProjector

    d, k, B = (200_000, 1024, 16) if a.quick else (1_000_000, 2048, 32)
    g = torch.randn(B, d, generator=torch.Generator().manual_seed(0))
    exact = (g @ g.T).numpy()
    basic = BasicProjector(d, k, 0, ProjectionType.normal, "cpu", block_size=100)
    cs = CountSketchProjector(d, k, 0)
    for name, proj, scale in (("traker BasicProjector", basic, 1.0), ("tribute countsketch", cs, 1.0)):
        proj.project(g[:2], 0)   # warm up (count-sketch builds its hash once per checkpoint)
        t0 = time.perf_counter()
        p = proj.project(g, 0)
        secs = time.perf_counter() - t0
        est = (p @ p.T).numpy() * scale
        if name.startswith("traker"):
            est = est / k                      # BasicProjector is unnormalised N(0,1): E = k <g, h>
        off = ~np.eye(B, dtype=bool)
        err = np.abs(est - exact)[off].mean() / np.abs(np.diag(exact)).mean()
        row = {"part": "projection", "projector": name, "grad_dim": d, "proj_dim": k, "batch": B,
               "seconds": round(secs, 3), "inner_product_error": round(float(err), 4)}
        results.append(row)
        print(json.dumps(row))
    t = {r["projector"]: r["seconds"] for r in results if r.get("part") == "projection"}
    print(f"# count-sketch speed-up over traker's BasicProjector: {t['traker BasicProjector'] / t['tribute countsketch']:.1f}x")


def part_lm(a, results):
    """A tiny causal LM on short synthetic documents, one topic planted; LDS over retrains."""
    from tribute.attribution import CausalLMTask
    from tribute.attribution.lds import lds, retrain_outputs, subset_masks
    from tribute.attribution.lm import LMConfig, TinyGPT, TrainConfig, WordTokenizer, train_lm

    rng = np.random.default_rng(0)
    topics = [["the", "ship", "sailed", "over", "grey", "sea", "waves", "sailors", "sang", "harbour"],
              ["the", "farmer", "sowed", "barley", "field", "rain", "fell", "harvest", "barn", "plough"],
              ["the", "king", "sat", "throne", "people", "bowed", "crown", "court", "palace", "herald"],
              ["a", "small", "bird", "sang", "tree", "dawn", "flew", "nest", "wing", "song"]]
    docs = []
    for i in range(48):
        words = topics[i % 4]
        docs.append(" ".join(rng.choice(words, size=24)))
    tok = WordTokenizer.fit(docs)
    cfg = LMConfig(vocab_size=len(tok), max_len=32, d_model=24, n_layer=1, n_head=2, d_ff=48)
    tc = TrainConfig(steps=80, batch_size=8, lr=1e-2, checkpoints=4)

    def train_fn(idx, seed):
        m = TinyGPT(cfg)
        train_lm(m, tok, docs, TrainConfig(**{**tc.__dict__, "seed": int(seed), "checkpoints": 1}), subset=idx)
        return m

    model = TinyGPT(cfg)
    d = tempfile.mkdtemp()
    ckpts = train_lm(model, tok, docs, tc, out_dir=d)
    task = CausalLMTask(max_len=32)
    train = [(tok.encode(t)[:32], 0) for t in docs]
    queries = [(tok.encode(" ".join(rng.choice(topics[q % 4], size=6)))[:16] + tok.encode(
        " ".join(rng.choice(topics[q % 4], size=6)), bos=False), 7) for q in range(8)]
    masks = subset_masks(len(docs), 16, 0.5, seed=0)

    def measure(m):
        with torch.no_grad():
            return task.measurement(m, task.collate(queries)).double().numpy()

    outputs = retrain_outputs(train_fn, measure, masks, 1, 0)
    for name, fn in [
        ("lm graddot", lambda: attribute(model, ckpts[-1:], task, train, queries, "graddot").scores),
        ("lm tracin", lambda: attribute(model, ckpts, task, train, queries, "tracin").scores),
        ("lm influence ekfac", lambda: attribute(model, ckpts[-1:], task, train, queries, "influence").scores),
        ("lm trak countsketch", lambda: attribute(model, ckpts, task, train, queries, "trak", proj_dim=32,
                                                  projector="countsketch", lambda_reg=1e-2).scores),
    ]:
        scores, secs, mem = timed(fn)
        r = lds(scores, masks, outputs)
        row = {"part": "lm", "method": name, "lds": round(r.mean, 3), "lds_sd": round(r.sd, 3), "seconds": round(secs, 2)}
        results.append(row)
        print(json.dumps(row))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="reduced sizes for CI-like runs")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--parts", default="projection,classifier,trak-wide,lm",
                    help="comma-separated parts to run (default all; lm is skipped with --quick)")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    torch.set_num_threads(1)   # tiny models: one thread is fastest (and fair to the anchors)
    results: list[dict] = []
    if "projection" in parts:
        part_projection(a, results)
    if "classifier" in parts:
        part_classifier(a, results)
    if "trak-wide" in parts:
        part_trak_wide(a, results)
    if "lm" in parts and not a.quick:
        part_lm(a, results)
    rows = [r for r in results if r.get("part") == "classifier" and "lds" in r]
    anchors = [r for r in rows if r["method"].startswith("anchor")]
    if anchors:
        best_t = max((r for r in rows if r["method"].startswith("tribute")), key=lambda r: r["lds"])
        best_a = max(anchors, key=lambda r: r["lds"])
        print(f"# best tribute: {best_t['method']} LDS {best_t['lds']} in {best_t['seconds']}s; best anchor: "
              f"{best_a['method']} LDS {best_a['lds']} in {best_a['seconds']}s; difference {best_t['lds'] - best_a['lds']:+.3f}")
    trak_speedups(rows)
    trak_speedups([r for r in results if r.get("part") == "trak-wide"], prefix="wide ")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
