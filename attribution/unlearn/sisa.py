"""Exact unlearning for models tribute trains itself: SISA (Bourtoule et al.) — Sharded,
Isolated, Sliced, Aggregated training.

The training documents are split into ``shards`` by a seeded hash of their id, each shard into
``slices``. One tiny GPT per shard is trained slice by slice (slice ``j`` trains on slices
``0..j``) with a checkpoint after every slice. The prediction is the ensemble's mean
probability. A request to forget documents retrains *only* the shards that hold them, from the
checkpoint before the earliest slice that holds them: the result is exactly the model that
training without those documents would have given (same seeds), at a fraction of the cost.

Example::

    state = sisa_train(docs, tok, LMConfig(vocab_size=len(tok), max_len=64), SISAConfig(), "models/sisa")
    report = sisa_unlearn("models/sisa", docs, ["copy-ruth"], "models/sisa-v2")
    model, tok = load_sisa("models/sisa-v2")
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ...core.errors import ConfigError, InputError, NotFoundError
from ...core.hashing import stable_hash64
from ...core.manifest import atomic_dir, atomic_write_text

STATE = "sisa.json"


@dataclass
class SISAConfig:
    shards: int = 4
    slices: int = 3
    steps_per_slice: int = 40
    batch_size: int = 16
    lr: float = 3e-3
    seed: int = 0

    def __post_init__(self):
        if self.shards < 1 or self.slices < 1 or self.steps_per_slice < 1 or self.batch_size < 1:
            raise ConfigError("SISAConfig: shards, slices, steps_per_slice and batch_size must be >= 1")


def assign(doc_ids: Sequence[str], shards: int, slices: int, seed: int) -> dict[str, tuple[int, int]]:
    """``doc_id -> (shard, slice)`` from a seeded 64-bit hash of the id (stable across runs)."""
    out = {}
    for d in doc_ids:
        h = stable_hash64(d.encode("utf-8"), seed)
        out[d] = (h % shards, (h // shards) % slices)
    return out


def _ckpt(s: int, j: int) -> str:
    return f"shard{s:02d}-slice{j:02d}.safetensors"


def _train_slices(model, tok, docs: Sequence[tuple[str, str]], where: dict, shard: int, first: int,
                  cfg: SISAConfig, folder: Path, removed: set) -> int:
    """Train ``shard`` from slice ``first`` to the last; save a checkpoint per slice; return steps."""
    from ..lm import TrainConfig, save_weights, train_lm

    texts = [t for _, t in docs]
    steps = 0
    for j in range(first, cfg.slices):
        subset = [i for i, (d, _) in enumerate(docs) if d not in removed and where[d][0] == shard and where[d][1] <= j]
        if subset:
            train_lm(model, tok, texts, TrainConfig(steps=cfg.steps_per_slice, batch_size=cfg.batch_size, lr=cfg.lr,
                                                    checkpoints=1, seed=cfg.seed + 1000 * shard + j), subset=subset)
            steps += cfg.steps_per_slice
        save_weights(model, folder / _ckpt(shard, j))
    return steps


def _fresh(lm_config):
    from ..lm import TinyGPT

    return TinyGPT(lm_config)


def sisa_train(docs: Sequence[tuple[str, str]], tok, lm_config, cfg: SISAConfig, out_dir) -> dict:
    """Train the SISA ensemble into the new folder ``out_dir``; return its state (also ``sisa.json``)."""
    if not docs:
        raise InputError("SISA training: no documents; give a non-empty training corpus")
    with atomic_dir(out_dir) as tmp:
        where = assign([d for d, _ in docs], cfg.shards, cfg.slices, cfg.seed)
        t0, steps = time.perf_counter(), 0
        for s in range(cfg.shards):
            steps += _train_slices(_fresh(lm_config), tok, docs, where, s, 0, cfg, tmp, set())
        state = {"kind": "tribute-sisa", "config": asdict(cfg), "lm_config": asdict(lm_config),
                 "train_seconds": time.perf_counter() - t0, "train_steps": steps,
                 "doc_ids": sorted(where), "removed": [], "requests": []}
        tok.save(tmp / "tokenizer.json")
        atomic_write_text(tmp / STATE, json.dumps(state, indent=2, sort_keys=True))
    return state


def _read_state(folder: Path) -> dict:
    try:
        state = json.loads((folder / STATE).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise NotFoundError(f"{folder}: no SISA model here ({STATE} missing); train it with sisa_train") from e
    except json.JSONDecodeError as e:
        raise InputError(f"{folder}/{STATE}: corrupt ({e}); retrain the SISA model") from e
    if state.get("kind") != "tribute-sisa":
        raise InputError(f"{folder}/{STATE}: not a tribute SISA state")
    return state


def sisa_unlearn(folder, docs: Sequence[tuple[str, str]], forget_ids: Sequence[str], out_dir) -> dict:
    """Exactly unlearn ``forget_ids``: retrain only the affected shards from the affected slice,
    into the new folder ``out_dir`` (the input folder is left as it is). Returns the cost report."""
    from safetensors.torch import load_file

    from ..lm import LMConfig, WordTokenizer

    folder, out = Path(folder), Path(out_dir)
    state = _read_state(folder)
    cfg, lm_config = SISAConfig(**state["config"]), LMConfig(**state["lm_config"])
    known = set(state["doc_ids"])
    if sorted(d for d, _ in docs) != sorted(known):
        raise InputError(f"{folder}: the documents given are not the ones this SISA model was trained on; "
                         "give the same training corpus")
    forget = sorted(set(forget_ids) - set(state["removed"]))
    unknown = [d for d in forget if d not in known]
    if unknown:
        raise InputError(f"forget set: {unknown[0]!r} is not a training document of {folder}")
    if not forget:
        raise InputError("forget set: empty (nothing to forget, or already removed)")
    tok = WordTokenizer.load(folder / "tokenizer.json")
    where = assign(sorted(known), cfg.shards, cfg.slices, cfg.seed)
    first = {}
    for d in forget:
        s, j = where[d]
        first[s] = min(first.get(s, cfg.slices), j)
    removed = set(state["removed"]) | set(forget)
    with atomic_dir(out) as tmp:
        for f in folder.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        t0, steps = time.perf_counter(), 0
        for s, j0 in sorted(first.items()):
            model = _fresh(lm_config)
            if j0 > 0:
                model.load_state_dict(load_file(str(folder / _ckpt(s, j0 - 1))), strict=True)
            steps += _train_slices(model, tok, docs, where, s, j0, cfg, tmp, removed)
        seconds = time.perf_counter() - t0
        report = {"forgotten": forget, "shards": {str(s): j for s, j in sorted(first.items())},
                  "retrain_steps": steps, "full_train_steps": state["train_steps"],
                  "step_ratio": steps / max(1, state["train_steps"]), "seconds": seconds,
                  "full_train_seconds": state["train_seconds"],
                  "cost_ratio": seconds / state["train_seconds"] if state["train_seconds"] else None}
        state = {**state, "removed": sorted(removed), "requests": state["requests"] + [report]}
        atomic_write_text(tmp / STATE, json.dumps(state, indent=2, sort_keys=True))
    return report


def load_sisa(folder):
    """``(ensemble, tokenizer)``: the ensemble maps ids to the log of the shards' mean probability."""
    import torch
    from safetensors.torch import load_file

    from ..lm import LMConfig, WordTokenizer

    folder = Path(folder)
    state = _read_state(folder)
    cfg, lm_config = SISAConfig(**state["config"]), LMConfig(**state["lm_config"])
    models = []
    for s in range(cfg.shards):
        m = _fresh(lm_config)
        m.load_state_dict(load_file(str(folder / _ckpt(s, cfg.slices - 1))), strict=True)
        m.eval()
        models.append(m)

    class SISAEnsemble(torch.nn.Module):
        def __init__(self, ms):
            super().__init__()
            self.models = torch.nn.ModuleList(ms)
            self.config = ms[0].config

        def forward(self, ids):
            lp = torch.stack([torch.log_softmax(m(ids), -1) for m in self.models])
            return torch.logsumexp(lp, 0) - math.log(len(self.models))

    return SISAEnsemble(models).eval(), WordTokenizer.load(folder / "tokenizer.json")
