"""The workspace: creation, numbered migrations, read-only opens and the single-writer lock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from tribute.core.errors import WorkspaceError, WorkspaceLockedError
from tribute.market.workspace import Workspace, latest_version, lock_holder, migrations


def test_init_creates_and_records_migrations(invoke, _isolated_home):
    r = invoke("init")
    assert r.exit_code == 0 and "Created workspace" in r.output
    ws = Workspace(_isolated_home)
    with ws.connect(read_only=True) as con:
        rows = con.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(m.version, m.name) for m in migrations()]
    assert rows[0] == (1, "catalog") and ws.schema_version() == latest_version()
    assert "up to date" in invoke("init").output


def test_workspace_option_beats_env(invoke, tmp_path, _isolated_home):
    other = tmp_path / "other"
    assert invoke("init", "--workspace", other).exit_code == 0
    assert (other / "tribute.duckdb").is_file() and not _isolated_home.exists()


def test_missing_workspace_is_a_clear_error(invoke, _isolated_home):
    r = invoke("works", "list")
    assert r.exit_code == 1
    assert f"{_isolated_home}: no tribute workspace here; run `tribute init --workspace" in r.output
    assert not _isolated_home.exists()  # a read command creates nothing


def test_workspace_path_that_is_a_file(invoke, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    r = invoke("init", "--workspace", f)
    assert r.exit_code != 0


def test_older_workspace_is_upgraded_by_a_write_and_refused_read_only(ws):
    import duckdb

    with duckdb.connect(str(ws.db_path)) as con:  # pretend the latest migration never ran
        last = migrations()[-1]
        con.execute("DELETE FROM schema_migrations WHERE version = ?", [last.version])
    if last.version == 1:
        pytest.skip("needs two migrations to simulate an older schema without dropping tables")
    with pytest.raises(WorkspaceError, match="run `tribute init"):
        with ws.connect(read_only=True):
            pass


def test_edited_migration_is_detected(ws):
    import duckdb

    with duckdb.connect(str(ws.db_path)) as con:
        con.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    with pytest.raises(WorkspaceError, match="was changed after it was applied"):
        with ws.connect():
            pass


def test_newer_workspace_is_refused(ws):
    import duckdb

    with duckdb.connect(str(ws.db_path)) as con:
        con.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')")
    with pytest.raises(WorkspaceError, match="newer than this tribute"):
        with ws.connect(read_only=True):
            pass


def test_lock_holder_parsing():
    msg = ('IO Error: Could not set lock on file "/x/tribute.duckdb": Conflicting lock is held in '
           "/usr/bin/python3.11 (PID 4242) by user root. See also https://duckdb.org/docs")
    assert lock_holder(msg) == "/usr/bin/python3.11 (PID 4242)"
    assert lock_holder("something else") is None


HOLD = textwrap.dedent(
    """
    import sys, time
    from tribute.market.workspace import Workspace
    with Workspace(sys.argv[1]).connect() as con:
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def _hold_lock(ws, seconds):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(ws.path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_second_writer_gets_a_clear_message_naming_the_holder(ws, tmp_path, write_jsonl):
    holder = _hold_lock(ws, 30)
    try:
        f = write_jsonl(tmp_path / "w.jsonl", [{"id": "a", "text": "t", "holder": "H", "title": "T"}])
        env = dict(os.environ, TRIBUTE_LOCK_TIMEOUT="0.5")
        r = subprocess.run(
            [sys.executable, "-m", "tribute.cli", "works", "import", str(f), "-w", str(ws.path)],
            capture_output=True, text=True, env=env, timeout=60,
        )
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
        assert "workspace is locked by" in r.stderr and f"(PID {holder.pid})" in r.stderr
        assert "Traceback" not in r.stderr
        # A reader is refused the same way, not with a traceback.
        r = subprocess.run(
            [sys.executable, "-m", "tribute.cli", "works", "list", "-w", str(ws.path)],
            capture_output=True, text=True, env=env, timeout=60,
        )
        assert r.returncode == 1 and f"(PID {holder.pid})" in r.stderr
    finally:
        holder.kill()
        holder.wait()


def test_writer_waits_for_a_short_lock(ws, monkeypatch):
    holder = _hold_lock(ws, 0.3)
    try:
        monkeypatch.setenv("TRIBUTE_LOCK_TIMEOUT", "20")
        t0 = time.monotonic()
        with ws.connect() as con:
            assert con.execute("SELECT count(*) FROM works").fetchone() == (0,)
        assert holder.wait(timeout=20) == 0
        assert time.monotonic() - t0 < 20
    finally:
        holder.kill()
        holder.wait()


def test_locked_error_type(ws):
    holder = _hold_lock(ws, 30)
    try:
        with pytest.raises(WorkspaceLockedError):
            with ws.connect():
                pass
    finally:
        holder.kill()
        holder.wait()
