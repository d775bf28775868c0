"""Featurisation of training examples as a sharded stage, on any engine and device.

The training-loss gradient of every training example, projected (or not), at each checkpoint a
method needs, is computed by :func:`featurise_shard` over contiguous shards of the training set:
one shard is ``{"ckpt": k, "start": s, "stop": e}``, ``rows_per_shard`` rows (``config.chunk``),
checkpoint-major. :func:`featurise` runs the shards with :func:`tribute.core.stages.run_stage`
(one ``.npy`` file and completion marker per shard, resumable, ``shard=(I, N)`` for one Slurm
slice) on an :class:`~tribute.core.engine.Engine` (``None``: serially in this process), and
when every shard is finished assembles each checkpoint's shard files, in shard order, into one
memory-mapped ``[n_rows, dim]`` float32 matrix (:class:`FeatureStore`) that the methods read.

Workers rebuild the model from ``model_builder`` (a top-level function, or a
``functools.partial`` of one, returning the architecture; it is pickled by reference) and load
each checkpoint from its file (safetensors or weights-only ``torch.load``); in-memory state
dicts are first written to safetensors files in the features folder. A serial run uses the
caller's model directly. Each worker computes with one torch thread and the same batches for
the same shard, so the bytes do not depend on the engine or the number of workers.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import ConfigError, InputError

KIND = "attribution-featurise"
DEVICES = ("cpu", "cuda", "cuda:N", "auto")


# ------------------------------------------------------------------------------ devices
def resolve_device(device: str | None, *, check_here: bool = True) -> str:
    """``"cpu" | "cuda" | "cuda:N" | "auto"`` -> the torch device to featurise on.

    ``auto`` is ``cuda`` when this process sees a CUDA GPU, else ``cpu``. With ``check_here``
    (the default) a CUDA device must exist in this process; a Ray driver without a GPU passes
    ``False`` and each GPU task checks its own.

    Raises:
        ConfigError: an unknown device, or a CUDA device this process does not have.
    """
    import torch

    text = "cpu" if device is None else str(device).strip().lower()
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m is None:
        raise ConfigError(f"device {device!r}: unknown; use cpu, cuda, cuda:N or auto")
    if check_here:
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device}: no CUDA GPU is visible to torch {torch.__version__} here; "
                              "use --device cpu, or run on a GPU machine with a CUDA build of torch")
        if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
            raise ConfigError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s), numbered from 0; use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return text


def engine_device(device: str | None, engine=None) -> str:
    """The device featurisation shards run on with ``engine`` (checked before anything is written).

    On Ray the driver may have no GPU: CUDA is checked by each task, which gets its own GPU
    (seen as ``cuda``) when the engine asks Ray for ``num_gpus``.
    """
    from ..core.engine import RayEngine

    on_ray = isinstance(engine, RayEngine)
    dev = resolve_device(device, check_here=not on_ray)
    if on_ray and dev.startswith("cuda"):
        if not engine.num_gpus:
            raise ConfigError(f"device {device} on Ray: the engine asks for no GPUs; use "
                              "get_engine('ray', ..., num_gpus=1) (CLI: --device cuda) so each task gets one")
        dev = "cuda"
    return dev


class _OnDevice:
    """A task whose batches are moved to ``device`` (everything else is the wrapped task's)."""

    def __init__(self, task, device: str):
        self.task, self.device = task, device

    def collate(self, examples):
        return tuple(b.to(self.device) for b in self.task.collate(examples))

    def __getattr__(self, name):
        return getattr(self.task, name)


# ------------------------------------------------------------------------------ the stage
@dataclass
class FeatureContext:
    """The shared read-only inputs of a featurisation (the stage's ``context``; never in a manifest).

    ``checkpoints`` are weight files (any run) or state dicts (serial runs only); ``model`` is the
    caller's model (serial runs only), ``model_builder`` rebuilds it in a worker process.
    """

    task: Any
    train: Sequence[Any]
    checkpoints: list
    model_builder: Callable[[], Any] | None = None
    model: Any = None
    builder_key: str = ""
    device: str = "cpu"


def feature_shards(n_rows: int, ckpts: Sequence[int], rows_per_shard: int) -> list[dict]:
    """The shard plan: contiguous row ranges of ``rows_per_shard`` for each checkpoint, in order."""
    return [{"ckpt": int(k), "start": s, "stop": min(s + rows_per_shard, n_rows)}
            for k in ckpts for s in range(0, n_rows, rows_per_shard)]


_WORKER: dict[str, Any] = {}


def _worker_model(ctx: FeatureContext):
    """The model this process featurises with, built once per process (per builder and device)."""
    if ctx.model is not None and ctx.device == "cpu":
        return ctx.model
    key = (ctx.builder_key or f"live-{id(ctx.model)}", ctx.device)
    if _WORKER.get("model_key") != key:
        import torch

        model = copy.deepcopy(ctx.model) if ctx.model is not None else ctx.model_builder()
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model_builder {ctx.builder_key} returned {type(model).__name__}, not a "
                              "torch.nn.Module; return the model (weights are loaded from the checkpoints)")
        _WORKER.update(model_key=key, model=model.to(ctx.device))
    return _WORKER["model"]


def _worker_state_dict(ctx: FeatureContext, k: int, fingerprint: str) -> dict:
    """Checkpoint ``k``'s state dict, kept for the next shard of the same checkpoint."""
    if _WORKER.get("sd_key") != fingerprint:
        from .api import load_state_dict

        _WORKER.update(sd_key=None, sd=None)   # free the previous one first
        _WORKER.update(sd_key=fingerprint, sd=load_state_dict(ctx.checkpoints[k]))
    return _WORKER["sd"]


@functools.lru_cache(maxsize=2)
def _projector(kind: str, grad_dim: int, proj_dim: int, seed: int):
    from .projection import make_projector

    return make_projector(kind, grad_dim, proj_dim, seed)


def featurise_shard(shard: dict, config: dict, ctx: FeatureContext) -> np.ndarray:
    """Stage worker: the ``[stop - start, dim]`` float32 features of one shard's training rows."""
    import torch

    from .api import _apply
    from .grads import per_example_grads

    k, start, stop = int(shard["ckpt"]), int(shard["start"]), int(shard["stop"])
    device = resolve_device(ctx.device)      # a worker checks the device it was given
    model = _worker_model(ctx)
    _apply(model, _worker_state_dict(ctx, k, config["checkpoints"][k]), f"#{k}")
    task = ctx.task if device == "cpu" else _OnDevice(ctx.task, device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                 # the same numerics in every worker and in process
    try:
        g = per_example_grads(model, task, ctx.train[start:stop], "loss", config["names"],
                              int(config["batch_size"])).cpu()
        proj = _projector(config["projector"], int(config["grad_dim"]), int(config["proj_dim"]), int(config["seed"]))
        if proj is not None:
            g = proj.project(g, k)
    finally:
        torch.set_num_threads(threads)
    block = np.ascontiguousarray(g.numpy(), dtype=np.float32)
    if block.shape != (stop - start, int(config["dim"])):
        raise ConfigError(f"feature block {start}:{stop} has shape {block.shape}, expected "
                          f"{(stop - start, int(config['dim']))}; the model does not match the features folder")
    return block


# ------------------------------------------------------------------------------ reading
class FeatureStore:
    """Finished features: one ``[n_rows, dim]`` float32 matrix per featurised checkpoint.

    Built by :func:`featurise` from a complete stage; :meth:`load` assembles a checkpoint's shard
    files in shard order into ``<folder>/ckpt-KKK.npy`` once (atomically; reused while the
    shards' checksum is unchanged) and memory-maps it read-only.
    """

    def __init__(self, folder, markers: Sequence[dict], stage_dir, n_rows: int, dim: int):
        self.folder, self.stage_dir = Path(folder), Path(stage_dir)
        self.n_rows, self.dim = int(n_rows), int(dim)
        self._markers: dict[int, list[dict]] = {}
        for m in markers:
            self._markers.setdefault(int(m["shard"]["ckpt"]), []).append(m)

    @property
    def checkpoints(self) -> list[int]:
        return sorted(self._markers)

    def path(self, ckpt: int) -> Path:
        return self.folder / f"ckpt-{ckpt:03d}.npy"

    def complete(self, ckpt: int) -> bool:
        return ckpt in self._markers

    def load(self, ckpt: int) -> np.ndarray:
        """The ``[n_rows, dim]`` matrix of ``ckpt``, memory-mapped read-only."""
        if ckpt not in self._markers:
            raise ConfigError(f"{self.stage_dir}: checkpoint {ckpt} was not featurised by this run")
        markers = self._markers[ckpt]
        h = hashlib.sha256("".join(f"{m['file']}\0{m['sha256']}\n" for m in markers).encode()).hexdigest()
        p, sidecar = self.path(ckpt), self.path(ckpt).with_suffix(".json")
        try:
            fresh = json.loads(sidecar.read_text(encoding="utf-8")).get("shards_sha256") == h
        except (OSError, ValueError):
            fresh = False
        if not (fresh and p.exists()):
            self._assemble(p, markers)
            from ..core.manifest import atomic_write_text

            atomic_write_text(sidecar, json.dumps({"shards_sha256": h}) + "\n")
        m = np.load(p, mmap_mode="r", allow_pickle=False)
        if m.shape != (self.n_rows, self.dim):
            raise ConfigError(f"{p}: shape {m.shape} on disk, expected {(self.n_rows, self.dim)}; "
                              "delete the features folder and featurise again")
        return m

    def _assemble(self, path: Path, markers: Sequence[dict]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(self.n_rows, self.dim))
        row = 0
        for mk in markers:
            block = np.load(self.stage_dir / mk["file"], mmap_mode="r", allow_pickle=False)
            out[row:row + block.shape[0]] = block
            row += block.shape[0]
        if row != self.n_rows:
            raise ConfigError(f"{self.stage_dir}: shards hold {row} rows, expected {self.n_rows}; "
                              "delete the features folder and featurise again")
        out.flush()
        del out
        tmp.replace(path)


# ------------------------------------------------------------------------------ running
def builder_key(fn: Callable) -> str:
    """``module.qualname(args)`` of a model builder; refuses what cannot be pickled by reference."""
    base = fn.func if isinstance(fn, functools.partial) else fn
    qual = getattr(base, "__qualname__", "")
    if not callable(base) or not qual or "<" in qual:
        raise ConfigError(f"model_builder {fn!r}: must be a top-level function of an importable module "
                          "(or a functools.partial of one), so workers can import it; not a lambda or closure")
    key = f"{base.__module__}.{qual}"
    if isinstance(fn, functools.partial):
        key += json.dumps([list(map(str, fn.args)), {k: str(v) for k, v in sorted(fn.keywords.items())}])
    return key


def in_process(engine) -> bool:
    """Whether ``engine`` runs shards in this process (``None`` or one local worker)."""
    from ..core.engine import LocalEngine

    return engine is None or (isinstance(engine, LocalEngine) and engine.workers == 1)


def _checkpoint_files(checkpoints: Sequence[Any], fingerprints: Sequence[str], folder: Path) -> list[str]:
    """Paths workers can load: weight files as given, state dicts written to safetensors files."""
    from safetensors.torch import save_file

    out = []
    for ck, fp in zip(checkpoints, fingerprints):
        if not isinstance(ck, dict):
            out.append(str(Path(ck).resolve()))
            continue
        p = folder / f"ckpt-{fp.split(':')[-1][:16]}.safetensors"
        if not p.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f".{p.name}.tmp")
            # clones: safetensors refuses tensors that share storage (tied weights)
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in ck.items()}, str(tmp))
            tmp.replace(p)
        out.append(str(p))
    return out


def _device_kind(stage_dir: Path, dev: str) -> str:
    """The device kind the stage's settings record: ``cpu`` or ``cuda`` (CUDA features differ from
    CPU ones in the last bits, so slices of one folder must not mix them). A run that finds every
    shard finished featurises nothing and adopts the folder's kind: a CPU node may score."""
    from ..core.manifest import read_manifest
    from ..core.stages import stage_status

    kind = "cpu" if dev == "cpu" else "cuda"
    if (stage_dir / "shards.json").exists():
        recorded = read_manifest(stage_dir).get("config", {}).get("device")
        if recorded in ("cpu", "cuda") and recorded != kind and not stage_status(stage_dir)["missing"]:
            return recorded
    return kind


def featurise(model, checkpoints: Sequence[Any], fingerprints: Sequence[str], task, train: Sequence[Any], *,
              ckpts: Sequence[int], names: Sequence[str], grad_dim: int, cfg, run_config: dict, features_dir,
              engine=None, shard: tuple[int, int] | None = None, device: str = "cpu",
              model_builder: Callable[[], Any] | None = None,
              progress: Callable[[dict], None] | None = None) -> FeatureStore | None:
    """Featurise ``train`` at checkpoints ``ckpts`` as a stage in ``features_dir/train``.

    Args:
        model: the caller's model (used as is by a serial run; its architecture must match).
        checkpoints: state dicts or weight files, one per checkpoint; ``fingerprints`` their hashes.
        ckpts: which checkpoints to featurise (graddot / gradcos: the last; tracin: all).
        names, grad_dim: the differentiated parameters and their total size.
        cfg: the :class:`~tribute.attribution.config.AttributionConfig` (projector, proj_dim,
            seed, batch_size, chunk = rows per shard).
        run_config: the attribution run's settings; with the device they make the stage config.
        engine: where shards run; ``None`` (or a one-worker local engine) runs them in process.
        shard: ``(I, N)``: run only the I-th of N contiguous slices of the shard plan.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (see :func:`resolve_device`).
        model_builder: a top-level function (or ``functools.partial``) returning the model;
            needed by process pools and Ray, whose workers rebuild the model.
        progress: called with each finished shard's marker, in shard order.

    Returns:
        the :class:`FeatureStore` once every shard is finished, else ``None`` (a slice ran).
    """
    from ..core.stages import Stage, run_stage

    dev = engine_device(device, engine)
    serial = shard is not None or in_process(engine)   # a slice runs in this process
    key = ""
    if not serial:
        if model_builder is None:
            raise ConfigError(f"engine {engine.name} with {engine.workers} workers rebuilds the model in each "
                              "worker: pass model_builder=<top-level function returning the model>, or run "
                              "with one local worker")
        key = builder_key(model_builder)
    folder = Path(features_dir)
    files = list(checkpoints) if serial else _checkpoint_files(checkpoints, fingerprints, folder / "checkpoints")
    proj_dim = int(cfg.proj_dim)
    dim = proj_dim or int(grad_dim)
    config = {**run_config, "device": _device_kind(folder / "train", dev), "names": list(names),
              "grad_dim": int(grad_dim), "dim": dim, "proj_dim": proj_dim, "projector": cfg.projector,
              "seed": int(cfg.seed), "batch_size": int(cfg.batch_size), "rows_per_shard": int(cfg.chunk),
              "featurised_checkpoints": [int(k) for k in ckpts]}
    ctx = FeatureContext(task, train, files, model_builder if not serial else None,
                         model if serial else None, key, dev)
    stage = Stage(KIND, featurise_shard, folder / "train", config,
                  lambda: feature_shards(len(train), ckpts, int(cfg.chunk)), context=ctx)
    if len(train) == 0:
        raise InputError("the train set is empty; give at least one training example")
    try:
        result = run_stage(stage, None if serial else engine, shard=shard, progress=progress)
    finally:
        if serial:
            _WORKER.clear()     # the in-process "worker" keeps no model or weights after the run
    if not result.complete:
        return None
    if shard is not None:     # the last slice: read every shard's marker (nothing runs)
        result = run_stage(stage, verify=False)
    return FeatureStore(folder / "matrix", result.markers, result.out_dir, len(train), dim)


__all__ = ["DEVICES", "FeatureContext", "engine_device", "FeatureStore", "builder_key", "feature_shards", "featurise",
           "featurise_shard", "in_process", "resolve_device"]
