"""`tribute unlearn`: remove works' influence from a model and certify how well it was removed.

Parses, composes the workspace's evidence (exposure = the forget set) with the unlearning
library, stores the certificate, renders. Heavy imports happen inside the functions.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import click

from .common import echo_json, json_option, open_workspace, workspace_option

METHOD_CHOICES = ("ga", "gd", "kl", "npo", "simnpo", "calibrated")
HOLDOUT_WORDS = 200


def _chunks(text: str, words: int = HOLDOUT_WORDS) -> list[str]:
    w = text.split()
    return [" ".join(w[i:i + words]) for i in range(0, len(w), words) if len(w[i:i + words]) >= 20]


def _forget_from_exposure(con, ws, work_ids: list[str]) -> tuple[list[str], dict, str, set]:
    """``(doc_ids, spans, source, exposed_work_ids)`` from the latest corpus scan, or from the
    demo's planted-copies file when the workspace has no scan yet."""
    try:
        from ..market.evidence import exposure, latest_scan_id
    except ImportError:  # evidence module not available in this build
        exposure = latest_scan_id = None
    docs, exposed, spans = set(), set(), {}
    if exposure is not None:
        table = exposure(con).to_pylist()
        if table:
            for r in table:
                exposed.add(r["work_id"])
                if r["work_id"] in work_ids:
                    docs.add(r["doc_id"])
            spans = _spans(con, latest_scan_id(con, "corpus"), work_ids)
            return sorted(docs), spans, "corpus scan", exposed
    truth = ws.path / "data" / "training_truth.jsonl"
    if truth.is_file():
        for line in truth.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                exposed.add(r["work_id"])
                if r["work_id"] in work_ids:
                    docs.add(r["doc_id"])
        return sorted(docs), {}, f"demo truth file {truth} (no corpus scan yet)", exposed
    from ..core.errors import NotFoundError

    raise NotFoundError("exposure: the workspace has no corpus scan; run `tribute scan corpus` first")


def _spans(con, scan_id, work_ids) -> dict:
    if scan_id is None:
        return {}
    try:
        rows = con.execute("SELECT doc_id, spans FROM scan_matches WHERE scan_id = ? AND work_id IN (SELECT unnest(?))",
                           [scan_id, list(work_ids)]).fetchall()
    except Exception:  # an older evidence schema without spans: locate works by n-grams instead
        return {}
    out: dict[str, list] = {}
    for doc_id, sp in rows:
        out.setdefault(doc_id, []).extend((s["doc_start"], s["doc_end"]) for s in sp or [])
    return out


def _records(path) -> list[tuple[str, str]]:
    from ..core.readers import read_records

    return [(r.id, r.text) for r in read_records(path)]


def _resolve_works(con, works: str | None, holder: str | None) -> tuple[list[str], str | None]:
    """``(work_ids, holder_id)`` of ``--works IDS`` or ``--holder NAME``."""
    from ..core.errors import InputError
    from ..market.catalog import get_work, list_works, resolve_holder

    if holder:
        h = resolve_holder(con, holder)
        work_ids = [w["work_id"] for w in list_works(con, holder=h["holder_id"])]
        if not work_ids:
            raise InputError(f"--holder {holder}: has no active works; register them with `tribute works add`")
        return work_ids, h["holder_id"]
    work_ids = sorted({w.strip() for w in works.split(",") if w.strip()})
    holders = {get_work(con, w)["holder_id"] for w in work_ids}
    return work_ids, (holders.pop() if len(holders) == 1 else None)


def plan(ws, *, works: str | None, holder: str | None, training: str | None, holdout: str | None) -> dict:
    """Everything a run needs from the workspace: work ids, holder, forget doc ids, spans,
    training docs, holdout texts, work texts."""
    from ..core.errors import InputError, NotFoundError
    from ..market.catalog import work_texts

    if bool(works) == bool(holder):
        raise click.UsageError("give exactly one of --works or --holder")
    notes = []
    with ws.connect(read_only=True) as con:
        work_ids, holder_id = _resolve_works(con, works, holder)
        forget_ids, spans, source, exposed = _forget_from_exposure(con, ws, work_ids)
        texts = work_texts(con)
    notes.append(f"forget set from {source}: {len(forget_ids)} training documents")
    idle = [w for w in work_ids if w not in exposed]
    if idle and len(idle) < len(work_ids):
        notes.append(f"no exposure in the training data (nothing to forget) for: {', '.join(idle)}")
    if not forget_ids:
        raise InputError(f"works {', '.join(work_ids)}: no exposure in the training data (nothing to forget)")
    train_path = Path(training) if training else ws.path / "data" / "training.jsonl"
    if not training and not train_path.is_file():
        raise NotFoundError("--training: give the training corpus (JSONL/CSV/Parquet/txt folder with id, text)")
    docs = _records(train_path)
    if holdout:
        hold = _records(holdout)
    else:
        unseen = [t for t in texts if t["work_id"] not in exposed]
        hold = [(f"{t['work_id']}#{i}", c) for t in unseen for i, c in enumerate(_chunks(t["text"]))]
        if not hold:
            raise InputError("--holdout: give text the model never trained on (every registered work is in the "
                             "training data, so none can serve as holdout)")
        notes.append(f"holdout = registered works never seen in training ({', '.join(t['work_id'] for t in unseen)})")
    return {"work_ids": work_ids, "holder_id": holder_id, "forget_ids": forget_ids, "spans": spans, "docs": docs,
            "holdout": hold, "work_texts": [t["text"] for t in texts if t["work_id"] in work_ids], "notes": notes}


def run(ws, *, model: str, method: str = "calibrated", out: str | None = None, works: str | None = None,
        holder: str | None = None, training: str | None = None, holdout: str | None = None,
        reference: str | None = None, steps: int | None = None, lr: float | None = None,
        retain_size: int = 64, relearn: bool = True, seed: int = 0, echo: Callable[[str], None] = click.echo,
        batch_size: int | None = None, check_every: int | None = None, eval_config=None,
        progress: bool = True) -> dict:
    """Plan from the workspace, unlearn, store the certificate; return it."""
    from ..attribution.unlearn import preset, run_unlearning
    from ..market.unlearning_store import save_certificate

    p = plan(ws, works=works, holder=holder, training=training, holdout=holdout)
    for n in p["notes"]:
        echo(f"  {n}")
    if out is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        out = str(ws.subdir("models", "unlearned") / f"{Path(model).name}-{method}-{stamp}")
    cfg = preset(method, steps=steps, lr=lr, seed=seed, batch_size=batch_size, check_every=check_every)
    cert = run_unlearning(model, p["docs"], p["forget_ids"], p["holdout"], out, cfg, eval_config=eval_config,
                          work_ids=p["work_ids"], holder_id=p["holder_id"], spans=p["spans"],
                          work_texts=p["work_texts"], reference_dir=reference, retain_size=retain_size,
                          relearn=relearn, log=(lambda m: echo(f"  {m}")) if progress else None)
    with ws.connect() as con:
        save_certificate(con, cert)
    return cert


def headline(cert: dict) -> list[str]:
    b, a, c = cert["before"], cert["after"], cert["cost"]

    def f(v, fmt=".3f"):
        return "-" if v is None else format(v, fmt)

    pl = cert["checks"]["privleak"]["signed"]
    sh = cert.get("attribution_share") or {}
    return [
        f"Unlearning run {cert['run']['run_id']} ({cert['run']['method']}, {cert['run']['steps']} steps, "
        f"stopped: {cert['run']['stopped']})",
        f"  verbatim memorisation (ROUGE-L): {f(b['forget_rougeL'])} -> {f(a['forget_rougeL'])}",
        f"  membership AUC (Min-K%):          {f(b['mia_auc_mink'])} -> {f(a['mia_auc_mink'])}"
        f"   PrivLeak {f(pl, '+.1%')} ({cert['checks']['privleak']['basis']})",
        f"  retain perplexity:                {f(b['retain_ppl'], '.1f')} -> {f(a['retain_ppl'], '.1f')}",
        f"  holdout perplexity:               {f(b['holdout_ppl'], '.1f')} -> {f(a['holdout_ppl'], '.1f')}",
        f"  relearned memorisation:           {f(b.get('relearn_rougeL'))} -> {f(a.get('relearn_rougeL'))}",
        f"  works' attribution share ({sh.get('method') or '-'}):  {f(sh.get('before'), '.1%')} -> "
        f"{f(sh.get('after'), '.1%')} (queries: the works' text; forget vs retain documents)",
        f"  cost: {f(c['seconds'], '.1f')}s vs retrain {f(c['retrain_seconds'], '.1f')}s "
        f"({c['retrain_basis']}) = {f(c['ratio'], '.1%')}",
        f"  targets: {cert['statement']}",
        f"  model + certificate: {cert['run']['model_out']}",
    ]


@click.group(invoke_without_command=True)
@click.option("--works", help="Comma-separated work ids to unlearn.")
@click.option("--holder", help="Unlearn every active work of this rights holder (name or id).")
@click.option("--model", "model", type=click.Path(file_okay=False),
              help="Model folder: a tribute tiny GPT (config.json, tokenizer.json, model.safetensors) or a local "
                   "Hugging Face causal LM (config.json, tokenizer files, *.safetensors). Required.")
@click.option("--method", type=click.Choice(METHOD_CHOICES), default="calibrated", show_default=True,
              help="Unlearning method; calibrated is tribute's own (held-out-calibrated, span-weighted, retain-distilled).")
@click.option("--out", type=click.Path(file_okay=False),
              help="New folder for the unlearned model (default: <workspace>/models/unlearned/<model>-<method>-<time>).")
@click.option("--training", type=click.Path(), help="Training corpus (default: <workspace>/data/training.jsonl).")
@click.option("--holdout", type=click.Path(), help="Text never trained on (default: registered works with no exposure).")
@click.option("--reference", type=click.Path(file_okay=False), help="A model retrained without the works (for PrivLeak).")
@click.option("--steps", type=click.IntRange(1), help="Maximum unlearning steps (default: the method's preset).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Learning rate (default: the method's preset).")
@click.option("--retain-size", type=click.IntRange(1), default=64, show_default=True, help="Retain documents sampled for the retain term (as many again, disjoint, measure utility).")
@click.option("--no-relearn", is_flag=True, help="Skip the relearning probe (faster).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
              help="torch CPU threads (0 = torch's default; 1 is fastest for tiny models on a busy machine).")
@workspace_option
@json_option
@click.pass_context
def unlearn(ctx, works, holder, model, method, out, training, holdout, reference, steps, lr, retain_size, no_relearn,
            seed, threads, workspace, as_json) -> None:
    """Remove works' influence from a model and certify how well it was removed.

    Writes the unlearned model (safetensors) with its certificate and manifest into a NEW folder,
    stores the certificate in the workspace, and prints which targets were met. `tribute unlearn
    sisa ...` trains and exactly unlearns a sharded (SISA) model instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not model:
        raise click.UsageError("Missing option '--model'.")
    ws = open_workspace(workspace)
    _threads(threads)
    cert = run(ws, model=model, method=method, out=out, works=works, holder=holder, training=training,
               holdout=holdout, reference=reference, steps=steps, lr=lr, retain_size=retain_size,
               relearn=not no_relearn, seed=seed, echo=(lambda m: None) if as_json else click.echo)
    if as_json:
        echo_json(cert)
    else:
        for line in headline(cert):
            click.echo(line)


def _threads(n: int) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


# ----------------------------------------------------------------------------- SISA
@unlearn.group("sisa")
def sisa() -> None:
    """Exact unlearning (SISA): train a sharded, sliced ensemble, then forget by retraining only
    the affected shards from the affected slice."""


def _training(ws, training: str | None) -> list[tuple[str, str]]:
    from ..core.errors import NotFoundError

    path = Path(training) if training else ws.path / "data" / "training.jsonl"
    if not path.exists():
        raise NotFoundError(f"--training {path}: no such corpus; give the training corpus (JSONL/CSV/Parquet/txt "
                            "folder with id, text)")
    return _records(path)


def sisa_train_run(ws, *, training: str | None, out: str, shards: int = 4, slices: int = 3,
                   steps_per_slice: int = 40, max_len: int = 64, d_model: int = 64, max_vocab: int = 16000,
                   seed: int = 0) -> dict:
    """Fit a word tokenizer on the corpus and train the SISA ensemble into ``out``; return its state."""
    from ..attribution.lm import LMConfig, WordTokenizer
    from ..attribution.unlearn.sisa import SISAConfig, sisa_train

    docs = _training(ws, training)
    tok = WordTokenizer.fit([t for _, t in docs], max_vocab=max_vocab)
    lmc = LMConfig(vocab_size=len(tok), max_len=max_len, d_model=d_model, d_ff=2 * d_model, seed=seed)
    return sisa_train(docs, tok, lmc, SISAConfig(shards=shards, slices=slices, steps_per_slice=steps_per_slice,
                                                 seed=seed), out)


@sisa.command("train")
@click.option("--training", type=click.Path(), help="Training corpus (default: <workspace>/data/training.jsonl).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New folder for the SISA ensemble.")
@click.option("--shards", type=click.IntRange(1), default=4, show_default=True, help="Shards (one model each).")
@click.option("--slices", type=click.IntRange(1), default=3, show_default=True, help="Slices per shard (checkpoints).")
@click.option("--steps-per-slice", type=click.IntRange(1), default=40, show_default=True,
              help="Training steps per slice.")
@click.option("--max-len", type=click.IntRange(2), default=64, show_default=True, help="Context length (tokens).")
@click.option("--d-model", type=click.IntRange(8), default=64, show_default=True, help="Model width.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shard assignment and training.")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True, help="torch CPU threads (0 = default).")
@workspace_option
@json_option
def sisa_train_cmd(training, out, shards, slices, steps_per_slice, max_len, d_model, seed, threads, workspace,
                   as_json) -> None:
    """Train a SISA ensemble of tiny GPTs (sharded, sliced, checkpointed) on a training corpus."""
    ws = open_workspace(workspace)
    _threads(threads)
    state = sisa_train_run(ws, training=training, out=out, shards=shards, slices=slices,
                           steps_per_slice=steps_per_slice, max_len=max_len, d_model=d_model, seed=seed)
    if as_json:
        echo_json(state)
        return
    cfg = state["config"]
    click.echo(f"SISA ensemble: {cfg['shards']} shards x {cfg['slices']} slices, {len(state['doc_ids'])} documents, "
               f"{state['train_steps']} training steps in {state['train_seconds']:.1f}s -> {out}")


def sisa_forget_run(ws, *, model: str, out: str, docs: str | None = None, works: str | None = None,
                    holder: str | None = None, training: str | None = None) -> dict:
    """Exactly forget documents (given, or the exposure of works / a holder) from a SISA ensemble."""
    from ..attribution.unlearn.sisa import sisa_unlearn

    if sum(bool(x) for x in (docs, works, holder)) != 1:
        raise click.UsageError("give exactly one of --docs, --works or --holder")
    if docs:
        forget = sorted({d.strip() for d in docs.split(",") if d.strip()})
    else:
        with ws.connect(read_only=True) as con:
            work_ids, _ = _resolve_works(con, works, holder)
            forget = _forget_from_exposure(con, ws, work_ids)[0]
        if not forget:
            from ..core.errors import InputError

            raise InputError(f"works {', '.join(work_ids)}: no exposure in the training data (nothing to forget)")
    return sisa_unlearn(model, _training(ws, training), forget, out)


def sisa_lines(rep: dict, out: str) -> list[str]:
    shards = ", ".join(f"shard {s} from slice {j}" for s, j in rep["shards"].items())
    cost = rep.get("cost_ratio")
    return [f"Forgot {len(rep['forgotten'])} documents exactly: retrained {len(rep['shards'])} shard(s) ({shards})",
            f"  cost: {rep['retrain_steps']} of {rep['full_train_steps']} training steps ({rep['step_ratio']:.1%}), "
            f"{rep['seconds']:.1f}s vs {rep['full_train_seconds']:.1f}s for the full SISA training"
            + (f" ({cost:.1%})" if cost is not None else ""),
            f"  new ensemble: {out} (the input folder is unchanged)"]


@sisa.command("forget")
@click.option("--model", required=True, type=click.Path(file_okay=False),
              help="SISA folder (from `tribute unlearn sisa train`).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New folder for the ensemble without the documents.")
@click.option("--docs", help="Comma-separated training document ids to forget.")
@click.option("--works", help="Forget the training documents that carry these works (comma-separated ids).")
@click.option("--holder", help="Forget the training documents that carry this holder's works.")
@click.option("--training", type=click.Path(), help="The corpus the ensemble was trained on (default: <workspace>/data/training.jsonl).")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True, help="torch CPU threads (0 = default).")
@workspace_option
@json_option
def sisa_forget_cmd(model, out, docs, works, holder, training, threads, workspace, as_json) -> None:
    """Exactly unlearn documents from a SISA ensemble; report the shards retrained and the cost."""
    ws = open_workspace(workspace)
    _threads(threads)
    rep = sisa_forget_run(ws, model=model, out=out, docs=docs, works=works, holder=holder, training=training)
    if as_json:
        echo_json(rep)
        return
    for line in sisa_lines(rep, out):
        click.echo(line)


def demo_step(ws, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Demo stage: unlearn the works of holder "Northwind Press" from ``<ws>/models/demo-lm`` with
    tribute's calibrated method, store the certificate and print its headline numbers."""
    model = ws.path / "models" / "demo-lm"
    if not (model / "config.json").is_file():
        echo("[unlearn] skipped: no demo model at models/demo-lm (the attribution stage trains it)")
        return {"skipped": "no demo model"}
    from ..attribution.unlearn import EvalConfig

    echo("[unlearn] Unlearning the works of Northwind Press from the demo model (method: calibrated)")
    out = ws.subdir("models") / "demo-lm-unlearned"
    if out.exists():  # a rerun of the demo replaces its own earlier output (never the input model)
        import shutil

        shutil.rmtree(out)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is as fast and does not fight other work for cores
    try:
        # demo size: at most 64 steps, fewer memorisation probes and relearning steps
        holdout = ws.path / "data" / "holdout.jsonl"   # background text kept out of training by the demo
        cert = run(ws, model=str(model), method="calibrated", holder="Northwind Press", retain_size=24,
                   holdout=str(holdout) if holdout.is_file() else None,
                   out=str(out), echo=lambda m: echo("    " + m), progress=False, steps=64, check_every=8,
                   eval_config=EvalConfig(probes_per_doc=2, relearn_steps=5))
    finally:
        torch.set_num_threads(threads)
    for line in headline(cert):
        echo("      " + line)
    return {"run_id": cert["run"]["run_id"], "targets_met": cert["targets_met"],
            "forget_rougeL_after": cert["after"]["forget_rougeL"], "mia_auc_after": cert["after"]["mia_auc_mink"],
            "retain_ppl_after": cert["after"]["retain_ppl"], "cost_ratio": cert["cost"]["ratio"],
            "model_out": cert["run"]["model_out"]}
