"""core.manifest: folders and files are written all or nothing."""

from __future__ import annotations

import pytest

from tribute.core.errors import ConflictError
from tribute.core.manifest import atomic_dir


def _listing(parent):
    return sorted(p.name for p in parent.iterdir())


def test_atomic_dir_appears_only_when_the_block_succeeds(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "weights.bin").write_bytes(b"half")
            raise RuntimeError("killed midway")
    assert _listing(tmp_path) == []                      # no folder, no temp folder left
    with atomic_dir(out) as tmp:
        (tmp / "weights.bin").write_bytes(b"all")
    assert _listing(tmp_path) == ["model"] and (out / "weights.bin").read_bytes() == b"all"
    with pytest.raises(ConflictError, match="already exists"):
        with atomic_dir(out):
            pytest.fail("an existing folder must be refused before the block runs")


def test_atomic_dir_replace_keeps_the_old_folder_until_the_new_one_is_complete(tmp_path):
    out = tmp_path / "index"
    out.mkdir()
    (out / "v").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(out, replace=True) as tmp:
            (tmp / "v").write_text("2")
            raise RuntimeError("failed")
    assert _listing(tmp_path) == ["index"] and (out / "v").read_text() == "1"
    with atomic_dir(out, replace=True) as tmp:
        (tmp / "v").write_text("2")
    assert _listing(tmp_path) == ["index"] and _listing(out) == ["v"] and (out / "v").read_text() == "2"
