"""Run manifests: the config, package versions and input hashes written beside every output.

A stage that writes into a folder calls :func:`write_manifest`; rerunning the stage into the same
folder with different settings is refused by :func:`check_manifest` rather than silently mixing
results.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

from .errors import ConfigError, ConflictError, InputError
from .hashing import file_sha256

MANIFEST_NAME = "manifest.json"
DEFAULT_PACKAGES = ("tribute", "numpy", "pyarrow", "duckdb", "click")


def package_versions(names: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``names`` (``None`` where a package is not installed)."""
    return {name: _package_version(name) for name in names}


@functools.lru_cache(maxsize=None)
def _package_version(name: str) -> str | None:
    # read once per process: importlib.metadata costs ~5 ms a call, and manifests are written often
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def input_hashes(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """``{path: sha256}`` for each input file or folder."""
    return {os.fspath(p): file_sha256(p) for p in paths}


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` atomically: ``write(fh)`` fills a temp file in the same folder (named
    ``.<name>.<random>``), which is synced and then renamed; on any error the temp file is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    data = text.encode("utf-8")
    atomic_write(path, lambda fh: fh.write(data))


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Fill a folder atomically: yields a temp folder beside ``final`` (``.<name>.<random>``) that
    becomes ``final`` when the block ends without error; on any error it is removed and ``final``
    is left as it was.

    ``replace``: an existing ``final`` is swapped aside and removed once the new one is in place;
    otherwise an existing ``final`` is a :class:`ConflictError` before anything is written.
    """
    final = Path(final)
    if final.exists() and not replace:
        raise ConflictError(f"{final}: already exists; choose a new folder")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    old = None
    try:
        yield tmp
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
            os.replace(final, old / final.name)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not final.exists():
            os.replace(old / final.name, final)      # put the previous folder back
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_manifest(
    kind: str,
    config: Mapping[str, Any],
    inputs: Iterable[str | os.PathLike] = (),
    packages: Iterable[str] = DEFAULT_PACKAGES,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A manifest dict: what ran (``kind``), with which ``config``, on which inputs, with what."""
    return {
        "kind": kind,
        "config": dict(config),
        "inputs": input_hashes(inputs),
        "packages": package_versions(packages),
        "python": platform.python_version(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(dict(extra) if extra else {}),
    }


def write_manifest(folder: str | os.PathLike, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest`` as ``folder/manifest.json`` (atomically, sorted keys)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST_NAME
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """Read ``folder/manifest.json``; a missing or corrupt one is an :class:`InputError`."""
    path = Path(folder) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise InputError(f"{path}: missing manifest; rebuild the output in {folder}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: corrupt manifest ({e}); rebuild the output in {folder}") from e
    if not isinstance(data, dict):
        raise InputError(f"{path}: corrupt manifest (not an object); rebuild the output in {folder}")
    return data


def check_manifest(folder: str | os.PathLike, kind: str, config: Mapping[str, Any]) -> None:
    """Refuse to reuse ``folder`` when it holds a ``kind`` run made with a different ``config``."""
    path = Path(folder) / MANIFEST_NAME
    if not path.exists():
        return
    old = read_manifest(folder)
    if old.get("kind") != kind:
        raise ConfigError(f"{folder}: holds a {old.get('kind')!r} run, not {kind!r}; choose another folder")
    old_cfg = json.loads(json.dumps(old.get("config", {}), sort_keys=True, default=str))
    new_cfg = json.loads(json.dumps(dict(config), sort_keys=True, default=str))
    if old_cfg != new_cfg:
        diff = sorted(k for k in set(old_cfg) | set(new_cfg) if old_cfg.get(k) != new_cfg.get(k))
        raise ConfigError(
            f"{folder}: was made with other settings ({', '.join(diff)} differ); "
            "use the same settings or a new folder"
        )
