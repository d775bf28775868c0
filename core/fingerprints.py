"""Seeded MinHash fingerprints of documents: the engine's reference workload.

Every document becomes its word n-gram shingles (lower-cased ``\\w+`` words), each hashed with
:func:`~tribute.core.hashing.stable_hash64`, and a MinHash signature of ``num_perm`` affine
permutations ``h -> a*h + b (mod 2**64)`` with odd ``a`` drawn from a seeded numpy generator. The
result is the same on every machine, process and engine; :func:`fingerprint_shard` is a stage
worker (see :mod:`tribute.core.stages`) producing one sorted Arrow table per shard.

It is deliberately independent of the indexes package: it measures and tests the engine on real
per-document work (tokenising, hashing, a numpy reduction) of the kind a corpus scan does.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from .errors import ConfigError
from .hashing import stable_hash64

_WORD = re.compile(r"\w+")
_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)
_BLOCK = 2048  # shingles per numpy block (bounds memory for long documents)


def words(text: str) -> list[str]:
    """The lower-cased ``\\w+`` words of ``text``."""
    return _WORD.findall(text.lower())


def shingle_hashes(text: str, n: int, seed: int) -> np.ndarray:
    """Seeded 64-bit hashes of the word ``n``-grams of ``text`` (one per position, uint64).

    A text of fewer than ``n`` words has one shingle: all its words.
    """
    ws = words(text)
    if not ws:
        return np.zeros(0, dtype=np.uint64)
    grams = [" ".join(ws)] if len(ws) < n else [" ".join(ws[i:i + n]) for i in range(len(ws) - n + 1)]
    return np.fromiter((stable_hash64(g.encode("utf-8"), seed) for g in grams), dtype=np.uint64, count=len(grams))


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(a, b)`` parameters of ``num_perm`` affine permutations of 64-bit values (``a`` odd)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, _MAX, size=num_perm, dtype=np.uint64, endpoint=True)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def minhash(hashes: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """The MinHash signature (uint64, ``num_perm`` values) of a set of 64-bit shingle hashes.

    An empty set gives all ``2**64 - 1``.
    """
    a, b = permutations(num_perm, seed)
    sig = np.full(num_perm, _MAX, dtype=np.uint64)
    for i in range(0, len(hashes), _BLOCK):
        block = hashes[i:i + _BLOCK, None]
        np.minimum(sig, (block * a + b).min(axis=0), out=sig)  # uint64 arithmetic wraps mod 2**64
    return sig


def check_config(config: Mapping[str, Any]) -> tuple[int, int, int]:
    """``(n, num_perm, seed)`` from a fingerprint config, validated."""
    out = []
    for key, default, low in (("n", 8, 1), ("num_perm", 128, 1), ("seed", 1, 0)):
        v = config.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < low or v >= 1 << 63:
            raise ConfigError(f"fingerprint {key}={v!r}: must be a whole number >= {low}")
        out.append(v)
    return out[0], out[1], out[2]


def fingerprint_shard(shard: dict, config: dict):
    """Stage worker: the fingerprints of a shard's records as an Arrow table sorted by ``id``.

    Columns: ``id`` (string), ``n_words`` (int32), ``n_shingles`` (int32, distinct),
    ``signature`` (fixed-size list of ``num_perm`` uint64).
    """
    import pyarrow as pa

    from .stages import read_shard_records

    n, num_perm, seed = check_config(config)
    ids, n_words, n_shingles, sigs = [], [], [], []
    for rec in read_shard_records(shard):
        h = np.unique(shingle_hashes(rec.text, n, seed))
        ids.append(rec.id)
        n_words.append(len(words(rec.text)))
        n_shingles.append(len(h))
        sigs.append(minhash(h, num_perm, seed))
    order = sorted(range(len(ids)), key=ids.__getitem__)
    flat = np.concatenate([sigs[i] for i in order]) if order else np.zeros(0, dtype=np.uint64)
    return pa.table({
        "id": pa.array([ids[i] for i in order], type=pa.string()),
        "n_words": pa.array([n_words[i] for i in order], type=pa.int32()),
        "n_shingles": pa.array([n_shingles[i] for i in order], type=pa.int32()),
        "signature": pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.uint64()), num_perm),
    })


def fingerprint_stage(input_path, out_dir, *, n: int = 8, num_perm: int = 128, seed: int = 1,
                      num_shards: int | None = None, records_per_shard: int | None = None,
                      fmt: str | None = None):
    """The fingerprint :class:`~tribute.core.stages.Stage` of an input (run it with ``run_stage``)."""
    from .stages import record_stage

    config = {"n": n, "num_perm": num_perm, "seed": seed}
    check_config(config)
    if num_shards is None and records_per_shard is None:
        records_per_shard = 10_000
    return record_stage("fingerprints", fingerprint_shard, input_path, out_dir, config,
                        num_shards=num_shards, records_per_shard=records_per_shard, fmt=fmt)


__all__ = ["words", "shingle_hashes", "permutations", "minhash", "fingerprint_shard", "fingerprint_stage"]
