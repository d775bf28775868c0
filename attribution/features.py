"""On-disk feature store: one memory-mapped ``.npy`` matrix per checkpoint, filled in chunks.

Each chunk of rows is written, flushed, then marked done with an empty file in ``done/``; a
rerun skips done chunks (resumable), and ``shard=(i, n)`` computes only chunks ``c`` with
``c % n == i`` so ``n`` processes can share the work. The folder's manifest records the settings
and the number of rows: reopening it with other settings or another train-set size is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import ConfigError, InputError
from ..core.manifest import build_manifest, check_manifest, read_manifest, write_manifest

KIND = "tribute-features"


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``; ``None`` -> ``(0, 1)``."""
    if text is None or text == "":
        return (0, 1)
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError as e:
        raise InputError(f"--shard {text!r}: write it as I/N, e.g. 0/4") from e
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {text!r}: need 0 <= I < N")
    return (i, n)


class FeatureStore:
    """Features of ``n_rows`` training examples, ``dim`` columns, one matrix per checkpoint."""

    def __init__(self, folder, config: dict, n_rows: int, dim: int, n_ckpts: int, chunk: int = 64):
        self.folder = Path(folder)
        self.n_rows, self.dim, self.n_ckpts, self.chunk = int(n_rows), int(dim), int(n_ckpts), int(chunk)
        if self.n_rows < 1:
            raise InputError("the train set is empty; give at least one training example")
        cfg = {**config, "n_rows": self.n_rows, "dim": self.dim, "n_ckpts": self.n_ckpts, "chunk": self.chunk}
        if (self.folder / "manifest.json").exists():
            old = read_manifest(self.folder).get("config", {})
            if old.get("n_rows") != self.n_rows:
                raise ConfigError(
                    f"{self.folder}: features on disk are for {old.get('n_rows')} training examples, the "
                    f"train set has {self.n_rows}; use the same train set or a new features folder"
                )
        check_manifest(self.folder, KIND, cfg)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "done").mkdir(exist_ok=True)
        if not (self.folder / "manifest.json").exists():
            write_manifest(self.folder, build_manifest(KIND, cfg))

    @property
    def n_chunks(self) -> int:
        return -(-self.n_rows // self.chunk)

    def path(self, ckpt: int) -> Path:
        return self.folder / f"train-ckpt{ckpt:03d}.npy"

    def _marker(self, ckpt: int, c: int) -> Path:
        return self.folder / "done" / f"ckpt{ckpt:03d}-chunk{c:06d}"

    def _open(self, ckpt: int):
        p = self.path(ckpt)
        if not p.exists():
            tmp = p.with_suffix(".tmp.npy")
            m = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(self.n_rows, self.dim))
            del m
            tmp.replace(p)
        m = np.lib.format.open_memmap(p, mode="r+")
        if m.shape != (self.n_rows, self.dim):
            raise ConfigError(f"{p}: shape {m.shape} on disk, expected {(self.n_rows, self.dim)}; "
                              "delete the features folder and featurise again")
        return m

    def pending(self, ckpt: int, shard: tuple[int, int] = (0, 1)) -> list[int]:
        i, n = shard
        return [c for c in range(self.n_chunks) if c % n == i and not self._marker(ckpt, c).exists()]

    def fill(self, ckpt: int, compute: Callable[[int, int], np.ndarray], shard: tuple[int, int] = (0, 1)) -> int:
        """Compute and store every pending chunk of this shard; returns how many were computed.

        ``compute(start, stop)`` returns the ``[stop - start, dim]`` features of those rows.
        """
        todo = self.pending(ckpt, shard)
        if not todo:
            return 0
        m = self._open(ckpt)
        for c in todo:
            s, e = c * self.chunk, min((c + 1) * self.chunk, self.n_rows)
            block = np.asarray(compute(s, e), dtype=np.float32)
            if block.shape != (e - s, self.dim):
                raise ConfigError(f"feature block {s}:{e} has shape {block.shape}, expected {(e - s, self.dim)}")
            m[s:e] = block
            m.flush()
            self._marker(ckpt, c).touch()
        del m
        return len(todo)

    def complete(self, ckpt: int | None = None) -> bool:
        ckpts = range(self.n_ckpts) if ckpt is None else [ckpt]
        return all(not self.pending(k) for k in ckpts)

    def load(self, ckpt: int) -> np.ndarray:
        """The finished ``[n_rows, dim]`` matrix of ``ckpt``, memory-mapped read-only."""
        missing = self.pending(ckpt)
        if missing:
            raise ConfigError(f"{self.folder}: checkpoint {ckpt} has {len(missing)} unfinished chunks; "
                              "run the remaining shards first")
        return np.load(self.path(ckpt), mmap_mode="r", allow_pickle=False)
