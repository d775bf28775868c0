"""`tribute attribute ...`: attribute model outputs to training documents, works and holders.

Sign convention: a score > 0 means including the training document raises the output's
log-probability given its prompt. The heavy lifting is in ``tribute.attribution`` (plain arrays
in, arrays out); this module composes it with the readers, the workspace and the exposure of
works in training documents (``tribute.market.evidence.exposure``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import click

from .common import echo_json, echo_table, engine_options, json_option, open_workspace, workspace_option

RULE_DOC = "negative scores clipped; works earn weight x positive score of each doc; rest unattributed"
DEMO_METHOD = "tracin"


# ------------------------------------------------------------------------------ composition
def _read_docs(path) -> tuple[list[str], list[str]]:
    from ..core.readers import read_records

    ids, texts = [], []
    for r in read_records(path):
        ids.append(r.id)
        texts.append(r.text)
    return ids, texts


def _read_outputs(path) -> tuple[list[str], list[tuple[str, str]]]:
    from ..core.readers import read_records

    ids, pairs = [], []
    for r in read_records(path):
        ids.append(r.id)
        prompt = r.fields.get("prompt") or ""
        pairs.append((str(prompt), r.text))
    return ids, pairs


def _load_model(model_dir: str, which: str):
    """``(model, encode, max_len, checkpoints, pad_id)`` for a tiny-LM folder or a HF folder."""
    from ..attribution.lm import checkpoints_in, load_lm
    from ..core.errors import ConfigError

    folder = Path(model_dir)
    if (folder / "config.json").is_file() and '"tribute-tiny-gpt"' in (folder / "config.json").read_text(encoding="utf-8"):
        model, tok = load_lm(folder)
        ckpts = [str(p) for p in checkpoints_in(folder)] or [str(folder / "model.safetensors")]
        if which == "last":
            ckpts = [str(folder / "model.safetensors")]
        return model, (lambda t, bos: tok.encode(t, bos)), model.config.max_len, ckpts, tok.pad_id
    from ..attribution.task import hf_causal_lm

    if which == "all":
        raise ConfigError(f"{folder}: a Hugging Face folder has one set of weights; use --checkpoints last")
    model, tok, task = hf_causal_lm(str(folder))

    def encode(text, bos):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return ([tok.bos_token_id] if bos and tok.bos_token_id is not None else []) + ids

    return model, encode, task.max_len, None, task.pad_id


def build_model(model_dir: str):
    """The model of a tiny-LM or Hugging Face folder (a top-level builder: featurisation workers
    of a process pool or Ray call it to rebuild the model, then load the checkpoints' weights)."""
    return _load_model(model_dir, "last")[0]


def run_attribution(ws, *, model_dir, outputs_path, train_path, method: str = DEMO_METHOD,
                    checkpoints: str = "all", scan_id: str | None = None, top_k: int | None = None,
                    floor: float = 0.0, features_dir=None, shard: str | None = None,
                    engine: str = "local", workers: int | None = None, ray_address: str | None = None,
                    device: str = "cpu", echo: Callable[[str], None] | None = None, **settings) -> dict[str, Any]:
    """Attribute every output to every training document, roll up to works and holders, store.

    The featurisation of graddot / gradcos / tracin runs as a sharded stage on ``engine``
    (``local`` / ``ray``, ``workers``, ``ray_address``) and ``device``; ``shard="I/N"`` runs one
    slice of it in this process and stores nothing (a later run without ``shard`` scores).

    Returns a summary dict (``run_id``, ``method``, shapes, seconds) or, for an unfinished shard,
    ``{"complete": False, ...}`` with nothing stored yet.
    """
    import functools

    from ..attribution import CausalLMTask, attribute, rollup
    from ..attribution.features import resolve_device
    from ..attribution.textattr import encode_texts, sum_by_document
    from ..core.engine import get_engine
    from ..core.errors import ConfigError, InputError
    from ..market.attribution_store import new_run_id, save_run
    from ..market.evidence import exposure, latest_scan_id

    t0 = time.monotonic()
    from ..attribution.api import FEATURISED

    if method not in FEATURISED and (engine != "local" or (workers or 1) > 1):
        # refused here, before a Ray cluster is started or joined for nothing
        raise ConfigError(f"--engine / --workers run the featurisation of {', '.join(sorted(FEATURISED))}; "
                          f"{method} runs in this process: drop them")
    train_path, outputs_path, model_dir = (Path(p).resolve() for p in (train_path, outputs_path, model_dir))
    train_ids, docs = _read_docs(train_path)
    out_ids, pairs = _read_outputs(outputs_path)
    model, encode, max_len, ckpts, pad = _load_model(model_dir, checkpoints)
    ex = encode_texts(encode, max_len, docs, pairs, out_ids)
    with ws.connect(read_only=True) as con:
        scan_id = scan_id or latest_scan_id(con, "corpus")
        if scan_id is None:
            raise InputError("no corpus scan in this workspace: run `tribute scan corpus <training file>` "
                             "first, so scores can roll up to works")
        expo = exposure(con, scan_id)
    covered = set(expo.column("doc_id").to_pylist()) & set(train_ids)
    if expo.num_rows and not covered:
        raise InputError(f"corpus scan {scan_id}: covers none of the documents in {train_path}; scan this "
                         "training file with `tribute scan corpus` or pass --scan")
    run_id = new_run_id(method)
    if shard is not None and features_dir is None:
        raise InputError("--shard needs --features DIR: a folder every shard's run shares")
    if shard is not None and (engine != "local" or (workers or 1) > 1):
        raise InputError("--shard runs one slice in this process; drop --engine / --workers (or drop --shard)")
    task = CausalLMTask(max_len=max_len, pad_id=pad)
    if str(device).strip().lower() == "auto":
        device = resolve_device("auto")          # what this machine has; on Ray, give cuda explicitly
    gpus = 1 if engine == "ray" and str(device).strip().lower().startswith("cuda") else 0
    with get_engine(engine, workers, ray_address, num_gpus=gpus) as eng:
        res = attribute(model, ckpts, task, ex.train, ex.queries, method=method, features_dir=features_dir,
                        shard=shard, engine=eng, device=device,
                        model_builder=functools.partial(build_model, str(model_dir)), **settings)
    if not res.complete:
        return {"complete": False, "shard": shard, "features": str(features_dir)}
    scores = sum_by_document(res.scores, ex.groups, len(docs))
    rule = {"clip_negative": True, "top_k": top_k, "floor": floor, "rule": RULE_DOC}
    shares = rollup(scores, train_ids, out_ids, expo, top_k=top_k, floor=floor)
    manifest = {**res.manifest, "exposure_scan": scan_id, "rollup": rule,
                "train_path": str(train_path), "outputs_path": str(outputs_path), "model": str(model_dir),
                "n_windows": len(ex.train)}
    with ws.connect() as con:
        folder = save_run(con, ws.subdir("attribution"), run_id=run_id, method=method, scores=scores,
                          output_ids=out_ids, train_ids=train_ids, shares=shares, manifest=manifest,
                          config=res.manifest["config"], rollup_rule=rule, model=str(model_dir),
                          outputs_path=str(outputs_path), train_path=str(train_path), exposure_scan=scan_id)
    return {"complete": True, "run_id": run_id, "method": method, "outputs": len(out_ids),
            "train_docs": len(train_ids), "windows": len(ex.train), "docs_with_exposure": len(covered),
            "path": str(folder),
            "seconds": round(time.monotonic() - t0, 2)}


def evaluate_run(ws, run_id: str | None, *, subsets: int = 8, seeds: int = 1, steps: int | None = None,
                 fraction: float = 0.5, seed: int = 0, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """LDS of a stored run: retrain its tiny LM on random halves of the corpus, store the figure."""
    from ..attribution import CausalLMTask, lds, measure_queries, subset_masks
    from ..attribution.lds import retrain_outputs
    from ..attribution.lm import LMConfig, TinyGPT, TrainConfig, WordTokenizer, train_lm
    from ..attribution.textattr import encode_texts
    from ..core.errors import ConfigError
    from ..market.attribution_store import get_run, load_scores, set_lds

    with ws.connect(read_only=True) as con:
        run = get_run(con, run_id)
    scores, out_ids, train_ids = load_scores(run)
    folder = Path(run["model"] or "")
    cfg_path = folder / "config.json"
    if not cfg_path.is_file() or '"tribute-tiny-gpt"' not in cfg_path.read_text(encoding="utf-8"):
        raise ConfigError(f"run {run['run_id']}: its model {folder} is not a tribute tiny LM, which LDS can "
                          "retrain; evaluate such models with tribute.attribution.evaluate_lds and your own trainer")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    tok = WordTokenizer.load(folder / "tokenizer.json")
    lm_cfg = LMConfig(**{k: cfg[k] for k in ("vocab_size", "max_len", "d_model", "n_layer", "n_head", "d_ff", "seed")})
    tcfg = dict(cfg["train"])
    if steps is not None:
        tcfg["steps"] = steps
    tcfg["checkpoints"] = 1
    ids, docs = _read_docs(run["train_path"])
    oids, pairs = _read_outputs(run["outputs_path"])
    if ids != train_ids or oids != out_ids:
        raise ConfigError(f"run {run['run_id']}: the training or outputs file changed since the run; rerun it")
    ex = encode_texts(lambda t, b: tok.encode(t, b), lm_cfg.max_len, docs, pairs, oids)
    task = CausalLMTask(max_len=lm_cfg.max_len, pad_id=tok.pad_id)

    def train_fn(idx, s):
        model = TinyGPT(lm_cfg)
        train_lm(model, tok, docs, TrainConfig(**{**tcfg, "seed": int(s)}), subset=idx)
        return model

    masks = subset_masks(len(docs), subsets, fraction, seed)
    progress = (lambda i, n: echo(f"      retrained {i}/{n}")) if echo else None
    outputs = retrain_outputs(train_fn, measure_queries(task, ex.queries), masks, seeds, seed, progress)
    res = lds(scores, masks, outputs, seeds, fraction)
    lcfg = {**res.as_dict(), "steps": tcfg["steps"], "seed": seed}
    with ws.connect() as con:
        set_lds(con, run["run_id"], res.mean, res.sd, lcfg)
    return {"run_id": run["run_id"], **lcfg}


# ------------------------------------------------------------------------------ commands
@click.group()
def attribute() -> None:
    """Attribute model outputs to training documents, works and holders.

    Score > 0 means including the training document raises the output's probability.
    """


def _settings(proj_dim, projector, hessian, damping, curvature, lambda_reg, batch_size, seed) -> dict[str, Any]:
    return {"proj_dim": proj_dim, "projector": projector, "hessian": hessian, "damping": damping,
            "curvature": curvature, "lambda_reg": lambda_reg, "batch_size": batch_size, "seed": seed}


@attribute.command("run")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Model folder: a tribute tiny LM (tribute attribute train-lm) or a local Hugging Face causal LM.")
@click.option("--outputs", "outputs_path", required=True, type=click.Path(exists=True),
              help="Model outputs (JSONL/CSV/Parquet with id, text and prompt).")
@click.option("--train", "train_path", required=True, type=click.Path(exists=True),
              help="Training corpus (id, text) the model was trained on.")
@click.option("--method", type=click.Choice(["trak", "influence", "tracin", "graddot", "gradcos"]),
              default=DEMO_METHOD, show_default=True, help="Attribution method.")
@click.option("--checkpoints", type=click.Choice(["all", "last"]), default="all", show_default=True,
              help="Use every saved checkpoint (ensembles, TracIn) or only the final weights.")
@click.option("--proj-dim", type=click.IntRange(0), default=4096, show_default=True,
              help="Projection dimension of gradient features (0 = full gradients; influence ignores it).")
@click.option("--projector", type=click.Choice(["countsketch", "gaussian", "traker", "none"]),
              default="countsketch", show_default=True, help="Gradient projector (traker: trak's own, trak only).")
@click.option("--hessian", type=click.Choice(["ekfac", "kfac", "explicit", "cg"]), default="ekfac",
              show_default=True, help="Influence curvature (explicit / cg only for small models).")
@click.option("--damping", type=float, default=0.1, show_default=True, help="Influence damping, relative to the mean eigenvalue.")
@click.option("--curvature", type=click.Choice(["fisher", "gn"]), default="fisher", show_default=True,
              help="Curvature for --hessian explicit|cg: sampled-label Fisher, or the exact Gauss-Newton "
                   "matrix (only for models with few outputs per example, not language models).")
@click.option("--lambda-reg", type=float, default=1e-3, show_default=True, help="TRAK ridge term.")
@click.option("--batch-size", type=click.IntRange(1), default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--params", "param_prefixes", multiple=True,
              help="Only differentiate parameters with this name prefix (repeatable; e.g. tok, blocks).")
@click.option("--scan", "scan_id", help="Corpus scan whose exposure maps documents to works (default: latest).")
@click.option("--top-k", type=click.IntRange(1), help="Keep at most K works per output; the rest is unattributed.")
@click.option("--floor", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Works with a smaller share go to the unattributed remainder.")
@click.option("--features", "features_dir", type=click.Path(file_okay=False),
              help="Feature folder (resumable; share it between --shard runs).")
@click.option("--chunk", type=click.IntRange(1), default=64, show_default=True,
              help="Training windows per featurisation shard (the unit of resuming, engines and --shard).")
@click.option("--device", default="cpu", show_default=True, metavar="cpu|cuda|cuda:N|auto",
              help="Featurise (graddot/gradcos/tracin) on this torch device; auto = cuda if available.")
@engine_options
@workspace_option
@json_option
def run_cmd(model_dir, outputs_path, train_path, method, checkpoints, proj_dim, projector, hessian, damping,
            curvature, lambda_reg, batch_size, seed, param_prefixes, scan_id, top_k, floor, features_dir, chunk, device,
            engine, workers, ray_address, shard, workspace, as_json) -> None:
    """Attribute outputs to training documents and roll the scores up to works and holders."""
    ws = open_workspace(workspace)
    if method == "influence":
        proj_dim, projector = 0, "none"
    elif method == "trak" and projector == "none":
        projector = "traker"
    settings = _settings(proj_dim, projector, hessian, damping, curvature, lambda_reg, batch_size, seed)
    keep = {"trak": ("proj_dim", "projector", "lambda_reg"), "influence": ("hessian", "damping", "curvature"),
            "tracin": ("proj_dim", "projector"), "graddot": ("proj_dim", "projector"),
            "gradcos": ("proj_dim", "projector")}[method]
    settings = {k: v for k, v in settings.items() if k in keep or k in ("batch_size", "seed")}
    if param_prefixes:
        settings["params"] = list(param_prefixes)
    if method in ("graddot", "gradcos", "tracin"):
        settings["chunk"] = chunk
    res = run_attribution(ws, model_dir=model_dir, outputs_path=outputs_path, train_path=train_path,
                          method=method, checkpoints=checkpoints, scan_id=scan_id, top_k=top_k, floor=floor,
                          features_dir=features_dir, shard=shard, engine=engine, workers=workers,
                          ray_address=ray_address, device=device, **settings)
    if as_json:
        echo_json(res)
    elif not res["complete"]:
        click.echo(f"Featurised shard {shard} into {res['features']}; run the other shards, then once more to score.")
    else:
        click.echo(f"Attribution run {res['run_id']} ({method}): {res['outputs']} outputs x {res['train_docs']} "
                   f"training documents in {res['seconds']}s. See `tribute attribute show {res['run_id']}`.")


@attribute.command("evaluate")
@click.argument("run_id", required=False)
@click.option("--subsets", type=click.IntRange(2), default=8, show_default=True, help="Random training subsets to retrain on.")
@click.option("--seeds", type=click.IntRange(1), default=1, show_default=True, help="Retrains per subset (outputs averaged).")
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5, show_default=True)
@click.option("--steps", type=click.IntRange(1), help="Training steps per retrain (default: as the original model).")
@click.option("--seed", type=int, default=0, show_default=True)
@workspace_option
@json_option
def evaluate_cmd(run_id, subsets, seeds, fraction, steps, seed, workspace, as_json) -> None:
    """Measure a run's linear datamodeling score (LDS) by retraining on random subsets."""
    ws = open_workspace(workspace)
    res = evaluate_run(ws, run_id, subsets=subsets, seeds=seeds, steps=steps, fraction=fraction, seed=seed,
                       echo=None if as_json else click.echo)
    if as_json:
        echo_json(res)
    else:
        click.echo(f"LDS of {res['run_id']}: {res['lds']:.3f} ± {res['lds_sd']:.3f} (sd over {res['n_queries']} "
                   f"outputs; {subsets} subsets x {seeds} seeds, fraction {fraction})")


@attribute.command("list")
@workspace_option
@json_option
def list_cmd(workspace, as_json) -> None:
    """List attribution runs, newest first."""
    from ..market.attribution_store import list_runs

    ws = open_workspace(workspace)
    with ws.connect(read_only=True) as con:
        rows = list_runs(con)
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["run_id", "method", "n_queries", "n_train", "lds", "created_at"], empty="(no runs)")


@attribute.command("show")
@click.argument("run_id", required=False)
@click.option("--output", "output_id", help="Only this output.")
@click.option("--by", type=click.Choice(["holder", "work"]), default="holder", show_default=True,
              help="Show shares per holder or per work.")
@workspace_option
@json_option
def show_cmd(run_id, output_id, by, workspace, as_json) -> None:
    """Show a run's shares per output (the newest run by default)."""
    from ..market.attribution_store import get_run, holder_totals, work_shares

    ws = open_workspace(workspace)
    with ws.connect(read_only=True) as con:
        run = get_run(con, run_id)
        rows = (holder_totals if by == "holder" else work_shares)(con, run["run_id"], output_id)
    if as_json:
        echo_json({"run": run, "shares": rows})
        return
    click.echo(f"Run {run['run_id']} ({run['method']}), LDS {run['lds'] if run['lds'] is not None else 'not measured'}")
    cols = ["output_id", "holder", "share", "score"] if by == "holder" else ["output_id", "work_id", "holder_id", "share", "score"]
    for r in rows:
        if by == "holder":
            r["holder"] = r["holder"] or ("(unattributed)" if r["holder_id"] is None else r["holder_id"])
        else:
            r["work_id"] = r["work_id"] or "(unattributed)"
        r["share"] = f"{r['share']:.1%}"
        r["score"] = f"{r['score']:.4g}"
    echo_table(rows, cols)


@attribute.command("train-lm")
@click.option("--train", "train_path", required=True, type=click.Path(exists=True), help="Training corpus (id, text).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--steps", type=click.IntRange(1), default=300, show_default=True)
@click.option("--checkpoints", type=click.IntRange(1), default=3, show_default=True, help="Checkpoints to save.")
@click.option("--context", type=click.IntRange(8), default=64, show_default=True, help="Context length in tokens.")
@click.option("--d-model", type=click.IntRange(8), default=64, show_default=True)
@click.option("--layers", type=click.IntRange(1), default=2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
def train_lm_cmd(train_path, out_dir, steps, checkpoints, context, d_model, layers, seed, as_json) -> None:
    """Train tribute's tiny causal LM on a corpus (seeded; safetensors checkpoints)."""
    res = train_tiny_lm(train_path, out_dir, steps=steps, checkpoints=checkpoints, context=context,
                        d_model=d_model, layers=layers, seed=seed, echo=None if as_json else click.echo)
    if as_json:
        echo_json(res)


def train_tiny_lm(train_path, out_dir, *, steps=300, checkpoints=3, context=64, d_model=64, layers=2,
                  seed=0, batch_size=32, lr=5e-3, threads=0, echo=None) -> dict[str, Any]:
    from ..attribution.lm import LMConfig, TinyGPT, TrainConfig, WordTokenizer, train_lm
    from ..core.errors import ConfigError

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: folder exists and is not empty; choose a new --out folder")
    _, texts = _read_docs(train_path)
    t0 = time.monotonic()
    tok = WordTokenizer.fit(texts)
    model = TinyGPT(LMConfig(vocab_size=len(tok), max_len=context, d_model=d_model, n_layer=layers,
                             n_head=2, d_ff=2 * d_model, seed=seed))
    paths = train_lm(model, tok, texts, TrainConfig(steps=steps, batch_size=batch_size, lr=lr, threads=threads,
                                                    checkpoints=checkpoints, seed=seed), out_dir=out,
                     log=(lambda m: echo(f"      {m}")) if echo else None)
    return {"model": str(out), "vocab": len(tok), "params": sum(p.numel() for p in model.parameters()),
            "checkpoints": paths, "seconds": round(time.monotonic() - t0, 1)}


# ------------------------------------------------------------------------------ demo
DEMO_MODEL = "demo-lm"
DEMO_PROMPT_WORDS = 12
DEMO_NEW_TOKENS = 30
DEMO_STEPS = 600
DEMO_REVENUE = ("0.25", "0.40", "0.10", "1.00", "0.05")


def _demo_prompts(ws) -> list[dict[str, Any]]:
    """Openings of passages: 3 per registered work, 8 from background documents (seeded)."""
    import random

    from ..market.catalog import work_texts

    rng = random.Random(20261129)
    training = [json.loads(line) for line in (ws.path / "data" / "training.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()]
    corpus = "\n".join(d["text"] for d in training)
    corpus_words = " ".join(corpus.split())
    with ws.connect(read_only=True) as con:
        works = work_texts(con)
    prompts = []
    for w in works:
        words = w["text"].split()
        starts = list(range(0, max(1, len(words) - 60), 7))
        rng.shuffle(starts)
        seen, unseen = [], []
        for s in starts:
            opening = " ".join(words[s:s + DEMO_PROMPT_WORDS])
            (seen if opening in corpus_words else unseen).append(opening)
        # two passages the model was trained on and one it never saw, where the work has them
        chosen = [(o, True) for o in seen[:2]] + [(o, False) for o in unseen[:1]]
        chosen += [(o, True) for o in seen[2:3 - len(chosen) + 2]][: max(0, 3 - len(chosen))]
        chosen += [(o, False) for o in unseen[1:]][: max(0, 3 - len(chosen))]
        prompts += [{"source": w["work_id"], "seen": flag, "prompt": o} for o, flag in chosen]
    background = [d for d in training if not d["id"].startswith(("copy-", "excerpt-", "embedded-", "edited-"))]
    for d in rng.sample(background, min(8, len(background))):
        words = d["text"].split()
        s = rng.randrange(max(1, len(words) - DEMO_PROMPT_WORDS))
        prompts.append({"source": "background", "seen": True, "prompt": " ".join(words[s:s + DEMO_PROMPT_WORDS])})
    return prompts


def demo_train_step(ws, echo: Callable[[str], None] = print, steps: int = DEMO_STEPS) -> dict[str, Any]:
    """Train the tiny LM on the demo corpus and write ``<ws>/data/outputs.jsonl`` (generated outputs)."""
    from ..attribution.lm import generate, load_lm
    from ..core.manifest import atomic_write_text

    out = ws.path / "models" / DEMO_MODEL
    if out.exists():
        import shutil

        shutil.rmtree(out)
    res = train_tiny_lm(ws.path / "data" / "training.jsonl", out, steps=steps, checkpoints=3, context=64,
                        d_model=48, layers=2, seed=0, batch_size=16, lr=5e-3, threads=1)
    echo(f"[train] Trained a tiny GPT ({res['params']:,} parameters, {res['vocab']} word tokens) on the training "
         f"corpus in {res['seconds']}s; 3 checkpoints in {out}")
    model, tok = load_lm(out)
    rows = []
    for i, p in enumerate(_demo_prompts(ws)):
        text, _, _ = generate(model, tok, p["prompt"], max_new_tokens=DEMO_NEW_TOKENS, no_repeat_ngram=2)
        rows.append({"id": f"out-{i:03d}", "prompt": p["prompt"], "text": text, "model": DEMO_MODEL,
                     "revenue": DEMO_REVENUE[i % len(DEMO_REVENUE)], "currency": "EUR",
                     "at": f"2026-11-{1 + i // 10:02d}T{8 + i % 10:02d}:00:00Z",
                     "prompt_source": p["source"], "prompt_seen_in_training": p["seen"]})
    path = ws.path / "data" / "outputs.jsonl"
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    n_work = sum(1 for r in rows if r["prompt_source"] != "background")
    echo(f"      Generated {len(rows)} outputs ({n_work} prompted by openings of the works, "
         f"{len(rows) - n_work} by background text): {path}")
    if rows:
        echo(f"      e.g. {rows[0]['prompt']!r} -> {rows[0]['text'][:70]!r}")
    return {"model": str(out), "params": res["params"], "train_seconds": res["seconds"],
            "outputs": len(rows), "outputs_path": str(path)}


def demo_attribute_step(ws, echo: Callable[[str], None] = print, *, method: str = "graddot",
                        checkpoints: str = "last") -> dict[str, Any]:
    """Attribute the demo outputs to training documents, roll up to holders, print the top holders.

    Default: gradient dot product at the final checkpoint, count-sketched to 4096 dimensions: one
    pass of per-example gradients over the ~1400 context windows of the corpus (TracIn costs one
    pass per checkpoint, TRAK and EK-FAC several), which keeps the step within tens of seconds on
    2 CPU cores. Needs a corpus scan (the index demo step) for the exposure.
    """
    from ..market.attribution_store import holder_totals

    import torch

    data = ws.path / "data"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # measured: one thread beats two on a busy 2-core machine
    try:
        res = run_attribution(ws, model_dir=ws.path / "models" / DEMO_MODEL, outputs_path=data / "outputs.jsonl",
                              train_path=data / "training.jsonl", method=method, checkpoints=checkpoints,
                              proj_dim=4096, projector="countsketch", batch_size=16)
    finally:
        torch.set_num_threads(threads)
    n_ck = 1 if checkpoints == "last" or method in ("graddot", "gradcos") else 3
    echo(f"[attribute] {method} over {n_ck} checkpoint(s) (count-sketch projection to 4096 dims): {res['outputs']} "
         f"outputs x {res['train_docs']} training documents in {res['seconds']}s (run {res['run_id']})")
    with ws.connect(read_only=True) as con:
        rows = holder_totals(con, res["run_id"])
    outputs = {json.loads(line)["id"]: json.loads(line) for line in (data / "outputs.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()}
    top: dict[str, list] = {}
    for r in rows:
        top.setdefault(r["output_id"], []).append(r)
    per_holder: dict[str, float] = {}
    for oid, rs in sorted(top.items())[:6]:
        best = [f"{r['holder'] or r['holder_id']} {r['share']:.1%}" for r in rs if r["holder_id"] is not None][:3]
        best.append(f"unattributed {sum(r['share'] for r in rs if r['holder_id'] is None):.1%}")
        echo(f"      {oid} ({outputs.get(oid, {}).get('prompt_source', '?')}): " + ", ".join(best))
    for rs in top.values():
        for r in rs:
            if r["holder_id"] is not None:
                per_holder[r["holder"] or r["holder_id"]] = per_holder.get(r["holder"] or r["holder_id"], 0.0) + r["share"]
    echo("      mean share per holder over all outputs: " + ", ".join(
        f"{h} {v / max(1, len(top)):.1%}" for h, v in sorted(per_holder.items(), key=lambda kv: -kv[1])))
    return {"run_id": res["run_id"], "method": method, "outputs": res["outputs"],
            "train_docs": res["train_docs"], "seconds": res["seconds"],
            "mean_holder_share": {h: v / max(1, len(top)) for h, v in per_holder.items()}}
