"""The DuckDB workspace: a folder holding ``tribute.duckdb``, index folders and feature stores.

The schema is created and upgraded through numbered migrations (``market/migrations/NNNN_*.sql``)
recorded in the table ``schema_migrations``. DuckDB allows one read-write process per file: a
second process (writer or reader) is retried with a short backoff, then gets a
:class:`WorkspaceLockedError` naming the process that holds the lock.

Example::

    ws = Workspace.resolve(None)          # --workspace, else $TRIBUTE_HOME, else ./tribute-workspace
    ws.init()
    with ws.connect() as con:             # read-write, migrated
        con.execute("SELECT count(*) FROM works").fetchone()
    with ws.connect(read_only=True) as con:
        ...
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

from ..core.errors import WorkspaceError, WorkspaceLockedError

DB_NAME = "tribute.duckdb"
ENV_HOME = "TRIBUTE_HOME"
ENV_LOCK_TIMEOUT = "TRIBUTE_LOCK_TIMEOUT"
DEFAULT_DIR = "tribute-workspace"
DEFAULT_LOCK_TIMEOUT = 3.0
_MIGRATION_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_RE = re.compile(r"Conflicting lock is held in (?P<exe>.+?) \(PID (?P<pid>\d+)\)")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def migrations() -> list[Migration]:
    """All migrations shipped with tribute, in version order."""
    found = []
    for entry in resources.files("tribute.market.migrations").iterdir():
        m = _MIGRATION_RE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise WorkspaceError(f"two migrations share a version number: {versions}; renumber them")
    return found


def latest_version() -> int:
    ms = migrations()
    return ms[-1].version if ms else 0


def lock_holder(message: str) -> str | None:
    """``"<exe> (PID n)"`` from DuckDB's lock error text, or ``None`` if it names nobody."""
    m = _LOCK_RE.search(message)
    return f"{m.group('exe')} (PID {m.group('pid')})" if m else None


class Workspace:
    """A tribute workspace folder. Cheap to construct; nothing is opened until :meth:`connect`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser().absolute()

    @classmethod
    def resolve(cls, path: str | os.PathLike | None) -> "Workspace":
        """``path`` if given, else ``$TRIBUTE_HOME``, else ``./tribute-workspace``."""
        return cls(path or os.environ.get(ENV_HOME) or DEFAULT_DIR)

    @property
    def db_path(self) -> Path:
        return self.path / DB_NAME

    def exists(self) -> bool:
        return self.db_path.is_file()

    def subdir(self, *parts: str, create: bool = True) -> Path:
        """A folder inside the workspace (indexes, runs, reports), created on demand."""
        p = self.path.joinpath(*parts)
        if create:
            p.mkdir(parents=True, exist_ok=True)
        return p

    def init(self) -> list[Migration]:
        """Create the workspace (or upgrade an existing one); returns the migrations applied."""
        if self.path.exists() and not self.path.is_dir():
            raise WorkspaceError(f"{self.path}: exists and is not a folder; choose another --workspace")
        self.path.mkdir(parents=True, exist_ok=True)
        with self._open(read_only=False) as con:
            return _migrate(con, self.db_path)

    def schema_version(self) -> int:
        with self.connect(read_only=True) as con:
            return _current_version(con)

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator["object"]:
        """Open the database (migrating it first when writable); closes on exit.

        Raises:
            WorkspaceError: no workspace here, or it is older than this tribute and read-only.
            WorkspaceLockedError: another process holds the lock after the retry window.
        """
        if not self.exists():
            raise WorkspaceError(
                f"{self.path}: no tribute workspace here; run `tribute init --workspace {self.path}` "
                f"or set {ENV_HOME}"
            )
        with self._open(read_only=read_only) as con:
            if read_only:
                have, want = _current_version(con), latest_version()
                if have < want:
                    raise WorkspaceError(
                        f"{self.path}: workspace schema is version {have}, this tribute needs {want}; "
                        f"run `tribute init --workspace {self.path}` to upgrade it"
                    )
            else:
                _migrate(con, self.db_path)
            _check_not_newer(con, self.path)
            yield con

    @contextlib.contextmanager
    def _open(self, read_only: bool) -> Iterator["object"]:
        import duckdb

        timeout = float(os.environ.get(ENV_LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT))
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.db_path), read_only=read_only)
                break
            except duckdb.IOException as e:
                holder = lock_holder(str(e))
                if holder is None and "lock" not in str(e).lower():
                    raise WorkspaceError(f"{self.db_path}: cannot open the database ({e})") from e
                if time.monotonic() + delay > deadline:
                    who = holder or "another process"
                    raise WorkspaceLockedError(
                        f"{self.db_path}: workspace is locked by {who}; wait for it to finish "
                        f"(waited {timeout:g}s; set {ENV_LOCK_TIMEOUT} to wait longer)"
                    ) from e
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except duckdb.Error as e:
                raise WorkspaceError(f"{self.db_path}: cannot open the database ({e})") from e
        try:
            yield con
        finally:
            con.close()


@contextlib.contextmanager
def transaction(con):
    """``BEGIN`` ... ``COMMIT``, or ``ROLLBACK`` on any exception (then re-raised): all or nothing."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _current_version(con) -> int:
    # fetchall, not fetchone: duckdb 2 keeps a half-read result open, which blocks con.register().
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchall()[0]
    if not row[0]:
        return 0
    return int(con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0])


def _check_not_newer(con, path: Path) -> None:
    have, want = _current_version(con), latest_version()
    if have > want:
        raise WorkspaceError(
            f"{path}: workspace schema is version {have}, newer than this tribute ({want}); upgrade tribute"
        )


def _migrate(con, db_path: Path) -> list[Migration]:
    """Apply every migration newer than the database's version, each in its own transaction."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, checksum VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)"
    )
    applied = dict(con.execute("SELECT version, checksum FROM schema_migrations").fetchall())
    done = []
    for m in migrations():
        if m.version in applied:
            if applied[m.version] != m.checksum:
                raise WorkspaceError(
                    f"{db_path}: migration {m.version:04d}_{m.name} was changed after it was applied; "
                    "add a new migration instead of editing an applied one"
                )
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(m.sql)
            con.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
                [m.version, m.name, m.checksum],
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        done.append(m)
    return done
