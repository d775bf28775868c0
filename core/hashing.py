"""Stable, seeded hashes. Never Python's per-process ``hash()`` in anything persisted."""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

_CHUNK = 1 << 20


def content_hash(text: str) -> str:
    """The content hash of a text: ``"sha256:<hex>"`` over its UTF-8 bytes (no normalisation)."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def stream_sha256(fh: BinaryIO) -> str:
    """Hex SHA-256 of a binary stream, read in 1 MiB chunks."""
    h = hashlib.sha256()
    for chunk in iter(lambda: fh.read(_CHUNK), b""):
        h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file; of a directory, a hash over its files' relative paths and hashes."""
    path = os.fspath(path)
    if os.path.isdir(path):
        h = hashlib.sha256()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                rel = os.path.relpath(full, path).replace(os.sep, "/")
                h.update(rel.encode("utf-8") + b"\0" + file_sha256(full).encode("ascii") + b"\n")
        return h.hexdigest()
    with open(path, "rb") as fh:
        return stream_sha256(fh)


def stable_hash64(data: bytes, seed: int = 0) -> int:
    """A seeded 64-bit hash (keyed BLAKE2b), the same on every machine and process."""
    key = seed.to_bytes(8, "little", signed=False)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=key).digest(), "little")
