"""One entry point: :func:`attribute` scores queries against training examples.

Example::

    from tribute.attribution import attribute, ClassificationTask
    res = attribute(model, ["ckpt-1.safetensors", "ckpt-2.safetensors"], ClassificationTask(),
                    train, queries, method="tracin", proj_dim=256, projector="countsketch",
                    features_dir="feats/")
    res.scores          # [n_queries, n_train]; > 0: including the example raises the output
    res.manifest        # config, checkpoints' fingerprints, inputs' fingerprints, versions
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.errors import ConfigError, InputError, NotFoundError
from ..core.manifest import build_manifest, check_manifest, write_manifest
from .config import AttributionConfig
from .features import engine_device, featurise, in_process
from .grads import param_names

PACKAGES = ("tribute", "numpy", "torch", "traker")
FEATURISED = ("graddot", "gradcos", "tracin")   # the methods that featurise as a sharded stage
SIGN = "score > 0: including the training example raises the query's measured output"


@dataclass
class AttributionResult:
    scores: np.ndarray | None     # [n_queries, n_train] float64; None when shards are unfinished
    manifest: dict
    complete: bool = True


def _shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"I/N"`` (or ``(I, N)``) -> ``(I, N)``, checked; ``None`` -> ``None``."""
    from ..core.engine import parse_shard

    if isinstance(shard, tuple):
        shard = f"{shard[0]}/{shard[1]}"
    return parse_shard(shard)


def load_state_dict(ckpt: Any) -> dict:
    """A state dict from a dict, a ``.safetensors`` file, or a ``torch.save`` file (weights only)."""
    import torch

    if isinstance(ckpt, dict):
        return ckpt
    p = Path(ckpt)
    if not p.is_file():
        raise NotFoundError(f"checkpoint {p}: no such file; give .safetensors or .pt weight files")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(p))
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(f"checkpoint {p}: cannot be read as weights ({type(e).__name__}); "
                         "give a .safetensors or weights-only .pt file") from e


def _apply(model, sd: dict, label: str) -> None:
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = "; ".join(s.strip() for s in first[:3])
        raise ConfigError(f"checkpoint {label}: does not match the model ({detail}); use checkpoints "
                          "saved from this model architecture") from e


def _manifest(kind: str, config: dict, extra: dict | None = None) -> dict:
    """:func:`build_manifest` with this package set's versions."""
    return build_manifest(kind, config, packages=PACKAGES, extra=extra)


def _tensor_fingerprint(sd: dict) -> str:
    import torch

    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:   # numpy has no bfloat16: hash its exact bits
            t = t.view(torch.int16)
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes())
    return "sha256:" + h.hexdigest()


_DTYPE_TAGS: dict = {}


def _array_tag(x: np.ndarray) -> bytes:
    key = (x.dtype, x.shape)
    tag = _DTYPE_TAGS.get(key)
    if tag is None:
        tag = _DTYPE_TAGS[key] = str(x.dtype).encode() + str(x.shape).encode()
    return tag


def _labelled_tensor_parts(examples: Sequence[Any]) -> list | None:
    """:func:`fingerprint_examples`'s byte parts for the common case, every example a
    ``(tensor, int)`` pair with one shape and dtype, from one stacked copy (a per-tensor
    ``.numpy()`` costs microseconds each); ``None`` for anything else."""
    import torch

    if len(examples) == 0 or type(examples[0]) is not tuple or len(examples[0]) != 2:
        return None
    x0 = examples[0][0]
    if type(x0) is not torch.Tensor or x0.dtype == torch.bfloat16:
        return None
    shape, dtype = x0.shape, x0.dtype
    for ex in examples:
        if (type(ex) is not tuple or len(ex) != 2 or type(ex[0]) is not torch.Tensor or type(ex[1]) is not int
                or ex[0].shape != shape or ex[0].dtype != dtype):
            return None
    try:
        with torch.no_grad():
            big = torch.stack([ex[0] for ex in examples]).cpu().numpy()
    except RuntimeError:     # e.g. tensors on several devices: the general path
        return None
    tag, raw, size = _array_tag(big[0]), big.tobytes(), big[0].nbytes
    parts: list = []
    for i, ex in enumerate(examples):
        parts += (b"[", tag, raw[i * size:(i + 1) * size], str(ex[1]).encode(), b"]")
    return parts


def fingerprint_examples(examples: Sequence[Any]) -> str:
    """A content hash of a list of examples (tensors / arrays / numbers / lists).

    Feeds sha256 with each array's dtype, shape and bytes, ``[`` ... ``]`` around sequences and the
    JSON text of anything else (plain ints take a shortcut with the same bytes)."""
    parts: list = []                 # hashed in one call: the same digest as one update per part
    add = parts.append

    def feed(x):
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        if isinstance(x, np.ndarray):
            add(_array_tag(x))
            add(x.tobytes())                 # C order, as np.ascontiguousarray(x).tobytes()
        elif isinstance(x, (list, tuple)):
            add(b"[")
            for y in x:
                feed(y)
            add(b"]")
        elif type(x) is int:
            add(str(x).encode())             # == json.dumps(x) for a plain int
        else:
            add(json.dumps(x, default=str).encode())

    fast = _labelled_tensor_parts(examples)
    if fast is not None:
        parts = fast
    else:
        for ex in examples:
            feed(ex)
    h = hashlib.sha256(b"".join(parts))
    return "sha256:" + h.hexdigest()


def attribute(model, checkpoints: Sequence[Any] | None, task, train: Sequence[Any],
              queries: Sequence[Any], method: str = "graddot", *, features_dir=None,
              shard: str | tuple[int, int] | None = None, engine=None, device: str = "cpu",
              model_builder=None, progress=None, config: AttributionConfig | None = None,
              **settings) -> AttributionResult:
    """Score every query against every training example.

    Args:
        model: an ``nn.Module`` whose architecture matches the checkpoints.
        checkpoints: state dicts or weight files (``.safetensors`` / weights-only ``.pt``), oldest
            first; ``None`` or empty = the model's current weights.
        task: a :class:`~tribute.attribution.task.Task`.
        train, queries: sequences of examples for ``task.collate``.
        method: trak | influence | tracin | graddot | gradcos (or ``config.method``).
        features_dir: folder for on-disk features (resumable, shardable); default a temp folder.
        shard: ``"I/N"``: featurise only the I-th of N contiguous slices of the shard plan, in
            this process (graddot / gradcos / tracin; needs ``features_dir``); scores come back
            (``complete=True``) once every shard is done.
        engine: a :class:`~tribute.core.engine.Engine` (``get_engine("ray", ...)``) running the
            featurisation shards; ``None`` runs them in this process. Results are the same bytes.
        device: featurise on ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        model_builder: a top-level function (or ``functools.partial`` of one) returning the
            model's architecture; process pools and Ray workers rebuild the model with it and load
            the checkpoints from files (state dicts are saved as safetensors in ``features_dir``).
        progress: called with each finished featurisation shard's marker, in shard order.
        config / settings: an :class:`AttributionConfig` or its fields as keywords.

    Returns:
        :class:`AttributionResult` with ``scores`` ``[len(queries), len(train)]`` (float64).
    """
    from . import methods as M

    cfg = config or AttributionConfig(method=method, **settings)
    if config is not None and settings:
        raise ConfigError("pass either config or keyword settings, not both")
    if len(train) == 0:
        raise InputError("the train set is empty; give at least one training example")
    if len(queries) == 0:
        raise InputError("no queries to attribute; give at least one query")
    sh = _shard(shard)
    if cfg.method not in FEATURISED:
        if sh is not None:
            raise ConfigError(f"--shard is supported for graddot, gradcos and tracin, not {cfg.method}")
        if not in_process(engine):
            raise ConfigError(f"--engine / --workers run the featurisation of graddot, gradcos and tracin; "
                              f"{cfg.method} runs in this process: drop them")
        if str(device).lower() != "cpu":
            raise ConfigError(f"--device {device}: only the featurisation of graddot, gradcos and tracin runs "
                              f"on a GPU; use --device cpu with {cfg.method}")
    else:
        engine_device(device, engine)     # an unknown or missing device fails before anything is written
    if sh is not None and features_dir is None:
        raise ConfigError("--shard needs a features folder every slice shares: pass features_dir (--features DIR)")
    original = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ckpts = list(checkpoints or [original])
    labels = [str(c) if not isinstance(c, dict) else f"#{i}" for i, c in enumerate(ckpts)]
    sds: dict[int, dict] = {}
    applied: list[int] = []    # the checkpoint the model holds now (skips reloading the same weights)

    def load_sd(k: int) -> dict:
        if k not in sds:
            sds.clear()
            sds[k] = load_state_dict(ckpts[k])
        return sds[k]

    def load(k: int) -> None:
        if applied != [k]:
            applied.clear()
            _apply(model, load_sd(k), labels[k])
            applied.append(k)

    fps = []
    for k in range(len(ckpts)):
        load(k)   # checks every checkpoint fits before any work is done
        fps.append(_tensor_fingerprint(load_sd(k)))
    names = param_names(model, cfg.params) if cfg.method != "influence" or cfg.hessian in ("explicit", "cg") else None
    run_cfg = {**cfg.as_dict(), **task.config(), "n_train": len(train), "checkpoints": fps,
               "train": fingerprint_examples(train)}
    tmp = None
    # with no features folder, TRAK (native) and influence keep everything in memory; the others
    # need a folder for their stage (or traker's store): a temp folder removed after the run
    in_memory = features_dir is None and (cfg.method == "influence"
                                           or (cfg.method == "trak" and cfg.trak_impl == "native"))
    if features_dir is None and not in_memory:
        tmp = tempfile.mkdtemp(prefix="tribute-features-")
        features_dir = tmp
    features_dir = Path(features_dir) if features_dir is not None else None
    try:
        if features_dir is not None:
            check_manifest(features_dir, "attribution-features", run_cfg)
            features_dir.mkdir(parents=True, exist_ok=True)
            write_manifest(features_dir, _manifest("attribution-features", run_cfg))
        scores = None
        if cfg.method in FEATURISED:
            from .grads import grad_dim

            # graddot / gradcos score with the final checkpoint only
            needed = [len(ckpts) - 1] if cfg.method in ("graddot", "gradcos") else list(range(len(ckpts)))
            store = featurise(model, ckpts, fps, task, train, ckpts=needed, names=names,
                              grad_dim=grad_dim(model, names), cfg=cfg, run_config=run_cfg,
                              features_dir=features_dir, engine=engine, shard=sh, device=device,
                              model_builder=model_builder, progress=progress)
            applied.clear()     # featurising applied checkpoints to the model itself
            if store is not None:
                scores = M.score_from_features(load, len(ckpts), model, task, queries, names, cfg, store)
        elif cfg.method == "trak":
            scores = M.trak_scores(load_sd, len(ckpts), model, task, train, queries, names, cfg,
                                   None if features_dir is None else features_dir / "trak", load)
        else:
            total = None
            for k in range(len(ckpts)):
                load(k)
                if cfg.hessian in ("explicit", "cg"):
                    s = M.influence_explicit(model, task, train, queries, names, cfg)
                else:
                    from .kfac import linear_modules

                    s = M.influence_kfac(model, task, train, queries, cfg, linear_modules(model, cfg.params))
                total = s if total is None else total + s
            scores = total / len(ckpts)
    finally:
        model.load_state_dict(original)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if scores is not None and not np.isfinite(scores).all():
        raise InputError("attribution produced NaN or infinite scores; check the checkpoints and raise damping")
    manifest = _manifest("attribution", run_cfg,
                         extra={"n_queries": len(queries), "queries": fingerprint_examples(queries),
                                "sign": SIGN, "shard": None if sh is None else f"{sh[0]}/{sh[1]}",
                                "device": str(device),
                                "checkpoint_labels": labels})
    return AttributionResult(np.asarray(scores, dtype=np.float64) if scores is not None else None,
                             manifest, scores is not None)
