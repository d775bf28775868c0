"""One unlearning run end to end: load the model, build the sets, unlearn, evaluate, write the
unlearned model + certificate + manifest into a NEW folder (atomically), return the certificate.

Example::

    cert = run_unlearning("models/demo-lm", docs, forget_ids, holdout, "models/demo-lm-unlearned",
                          UnlearnConfig(method="calibrated"), work_ids=["ruth"], holder_id="northwind-press")
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ...core.errors import ConflictError, InputError, IntegrityError, NotFoundError, TributeError
from ...core.hashing import file_sha256
from ...core.manifest import atomic_dir, atomic_write_text, build_manifest, write_manifest
from .certificate import EvalConfig, Targets, build_certificate, evaluate, holdout_memorisation
from .data import build_data
from .hf import weight_files
from .methods import UnlearnConfig, unlearn
from .share import attribution_share

CERT_NAME = "certificate.json"


def new_run_id() -> str:
    return f"unl-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"


def load_model(folder, what: str = "--model"):
    """``(model, tokenizer)`` of a tribute tiny-LM folder or a local Hugging Face causal-LM folder
    (:mod:`.hf`), with every load failure as one error."""
    from ..lm import load_lm
    from .hf import is_hf_folder, load_hf

    folder = Path(folder)
    if not folder.is_dir():
        raise NotFoundError(f"{what} {folder}: no such model folder; give a folder written by tribute's LM training "
                            "or a local Hugging Face causal-LM folder")
    if is_hf_folder(folder):
        return load_hf(folder, what)
    try:
        return load_lm(folder)
    except TributeError as e:
        raise InputError(f"{what} {folder}: the model does not load ({e})") from e
    except Exception as e:  # corrupt safetensors, bad JSON fields, ...
        raise InputError(f"{what} {folder}: the model does not load ({type(e).__name__}: {e}); "
                         "retrain or re-export it") from e


def _same_tokenizer(a, b) -> bool:
    return type(a) is type(b) and a.vocab == b.vocab


def estimate_retrain_seconds(model, tok, texts: Sequence[str], train: Mapping | None, probe_steps: int = 3) -> float | None:
    """Seconds a retrain with the input model's training settings would take, from timing a few
    steps on a fresh copy (``None`` when the settings are unknown)."""
    from ..lm import LMConfig, TinyGPT, TrainConfig, train_lm

    if not train or not texts:      # a Hugging Face config has no tribute training settings
        return None
    steps, bs = int(train.get("steps", 0)), int(train.get("batch_size", 16))
    if steps < 1:
        return None
    fresh = TinyGPT(LMConfig(**{k: getattr(model.config, k) for k in
                                ("vocab_size", "max_len", "d_model", "n_layer", "n_head", "d_ff", "seed")}))
    n = min(probe_steps, steps)
    t0 = time.perf_counter()
    train_lm(fresh, tok, list(texts), TrainConfig(steps=n, batch_size=bs, checkpoints=1))
    return (time.perf_counter() - t0) / n * steps


def _check_out(out: Path, model_dir: Path) -> None:
    if out.resolve() == model_dir.resolve() or model_dir.resolve() in out.resolve().parents:
        raise ConflictError(f"--out {out}: would write into the input model folder; choose a new folder")
    if out.exists():
        raise ConflictError(f"--out {out}: already exists; choose a new folder (the unlearned model never "
                            "overwrites anything)")


def run_unlearning(model_dir, docs: Sequence[tuple[str, str]], forget_ids, holdout: Sequence[tuple[str, str]],
                   out_dir, config: UnlearnConfig, *, work_ids: Sequence[str] = (), holder_id: str | None = None,
                   spans: Mapping | None = None, work_texts: Sequence[str] = (), reference_dir=None,
                   retain_size: int = 64, eval_config: EvalConfig | None = None, targets: Targets | None = None,
                   retrain_seconds: float | None = None, relearn: bool = True, share: bool = True,
                   log: Callable[[str], None] | None = None) -> dict:
    """Unlearn ``forget_ids`` from the model in ``model_dir``; write ``out_dir``; return the certificate.

    ``out_dir`` must not exist; it appears only when everything succeeded (written under a temp
    name, then renamed). The input folder is never written to. ``share``: measure the works'
    attribution share before and after (:mod:`.share`, graddot on the forget-set queries).
    """
    log = log or (lambda _m: None)
    model_dir, out = Path(model_dir), Path(out_dir)
    _check_out(out, model_dir)
    ecfg = eval_config or EvalConfig()
    model, tok = load_model(model_dir)
    weights = weight_files(model_dir)
    hash_before = [file_sha256(w) for w in weights]
    data = build_data(tok, model.config.max_len, docs, forget_ids, holdout, retain_size=retain_size,
                      seed=config.seed, spans=spans, work_texts=work_texts)
    log(f"forget {len(data.forget_ids)} docs ({len(data.forget)} windows, spans: {data.span_source}), "
        f"retain {len(data.retain_ids)} docs, holdout {len(data.holdout_ids)} texts")
    reference = None
    if reference_dir is not None:
        ref_model, ref_tok = load_model(reference_dir, "--reference")
        if not _same_tokenizer(ref_tok, tok):
            raise InputError(f"--reference {reference_dir}: tokenizer differs from the model's; give a reference "
                             "retrained with the same tokenizer")
    banned = (tok.pad_id, tok.bos_id)
    before = evaluate(model, data, ecfg, banned, with_relearn=relearn)
    log(f"before: memorisation {before['forget_rougeL']:.3f}, MIA AUC {before['mia_auc_mink']:.3f}")
    res = unlearn(model, data, config, log=log)
    after = evaluate(res.model, data, ecfg, banned, with_relearn=relearn)
    log(f"after ({res.steps} steps, {res.seconds:.1f}s, stopped: {res.stopped}): memorisation "
        f"{after['forget_rougeL']:.3f}, MIA AUC {after['mia_auc_mink']:.3f}")
    shares = None
    if share:
        sb, sa = attribution_share(model, data, ecfg), attribution_share(res.model, data, ecfg)
        shares = {"before": sb["share"], "after": sa["share"], "method": sb["method"], "queries": sb["queries"],
                  "forget_windows": sb.get("forget_windows"), "retain_windows": sb.get("retain_windows")}
        log(f"attribution share of the works ({sb['method']}): {sb['share']} -> {sa['share']}")
    proxy = None
    if reference_dir is not None:
        reference = evaluate(ref_model, data, ecfg, banned, with_relearn=relearn)
    else:
        proxy = {"holdout_rougeL": holdout_memorisation(model, data, ecfg, banned),
                 "mia_auc_mink": data.background.membership_auc(data.forget, data.holdout, ecfg.min_k)}
    cfg_json = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    basis = "given"
    if retrain_seconds is None:
        retain_texts = [t for d, t in docs if d not in set(data.forget_ids)]
        retrain_seconds = estimate_retrain_seconds(model, tok, retain_texts, cfg_json.get("train"))
        basis = "estimated from timed training steps" if retrain_seconds else "unknown"
    run_id = new_run_id()
    cert = build_certificate(
        run={"run_id": run_id, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "method": config.method, "config": config.as_dict(), "model_in": str(model_dir.resolve()),
             "model_out": str(out.resolve()), "work_ids": sorted(work_ids), "holder_id": holder_id,
             "steps": res.steps, "stopped": res.stopped, "tau": res.tau, "data": data.summary(),
             "reference": str(Path(reference_dir).resolve()) if reference_dir is not None else None},
        before=before, after=after, reference=reference, proxy=proxy, cost_seconds=res.seconds,
        retrain_seconds=retrain_seconds, retrain_basis=basis, targets=targets, eval_config=ecfg, share=shares)
    _write(out, res.model, tok, cfg_json, cert, config, model_dir, weights)
    if [file_sha256(w) for w in weights] != hash_before:
        raise IntegrityError(f"{model_dir}: the input model's weights changed during the run; this is a bug, report it")
    cert["path"] = str((out / CERT_NAME).resolve())
    return cert


def _write(out: Path, model, tok, cfg_json: dict, cert: dict, config: UnlearnConfig, model_dir: Path, weights):
    from ..lm import save_weights
    from .hf import HFTokenizer, save_hf

    if out.exists():
        raise ConflictError(f"--out {out}: appeared during the run; choose a new folder")
    with atomic_dir(out) as tmp:
        marker = {"from": str(model_dir.resolve()), "run_id": cert["run"]["run_id"],
                  "method": config.method, "work_ids": cert["run"]["work_ids"]}
        if isinstance(tok, HFTokenizer):
            save_hf(model, tok, tmp, marker)
        else:
            save_weights(model, tmp / "model.safetensors")
            tok.save(tmp / "tokenizer.json")
            new_cfg = copy.deepcopy(cfg_json)
            new_cfg["unlearned"] = marker
            atomic_write_text(tmp / "config.json", json.dumps(new_cfg, indent=2, sort_keys=True))
        atomic_write_text(tmp / CERT_NAME, json.dumps(cert, indent=2, sort_keys=True) + "\n")
        write_manifest(tmp, build_manifest("unlearn", config.as_dict(), inputs=list(weights),
                                           packages=("tribute", "torch", "safetensors", "numpy")
                                           + (("transformers", "tokenizers") if isinstance(tok, HFTokenizer) else ()),
                                           extra={"run_id": cert["run"]["run_id"], "work_ids": cert["run"]["work_ids"]}))
