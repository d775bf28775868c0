"""Shared fixtures: every test gets its own workspace folder through $TRIBUTE_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Point $TRIBUTE_HOME at a fresh folder so no test touches a real workspace."""
    home = tmp_path / "ws"
    monkeypatch.setenv("TRIBUTE_HOME", str(home))
    monkeypatch.setenv("TRIBUTE_LOCK_TIMEOUT", "0.5")
    return home


@pytest.fixture
def ws(_isolated_home):
    """An initialised workspace."""
    from tribute.market.workspace import Workspace

    w = Workspace(_isolated_home)
    w.init()
    return w


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def invoke(runner):
    """Run the CLI in-process: ``invoke("works", "list", "--json")`` -> click Result."""
    from tribute.cli.main import cli

    def _invoke(*args, input=None):
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return _invoke


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def write_jsonl():
    """``write_jsonl(path, rows) -> path``: write dicts as JSON lines."""
    return _write_jsonl


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (2 CPUs, like CI), shut down at the end."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    if started:
        ray.shutdown()
