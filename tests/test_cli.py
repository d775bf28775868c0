"""The CLI as a whole: help and docs for every command, lazy imports, a real subprocess."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tribute.cli.main import cli

REPO = Path(__file__).resolve().parents[1]


def command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()):
    """Every command path under the group, e.g. ('works', 'list')."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        path = prefix + (name,)
        yield path, cmd
        if isinstance(cmd, click.Group):
            yield from command_paths(cmd, path)


ALL = sorted(command_paths(), key=lambda pc: pc[0])


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=" ".join)
def test_every_command_has_help(invoke, path):
    r = invoke(*path, "--help")
    assert r.exit_code == 0, r.output
    cmd = dict(ALL)[path]
    assert (cmd.help or "").strip(), f"`tribute {' '.join(path)}` has no help text"


def _doc_headings() -> set[str]:
    found = set()
    for md in (REPO / "docs").glob("*.md"):
        for m in re.finditer(r"^#+ `tribute ([a-z0-9 _-]+)`", md.read_text(encoding="utf-8"), re.M):
            found.add(m.group(1).strip())
    return found


@pytest.mark.parametrize("path", [p for p, c in ALL if not isinstance(c, click.Group)], ids=" ".join)
def test_every_command_has_a_docs_section(path):
    assert " ".join(path) in _doc_headings(), f"docs/*.md has no section `tribute {' '.join(path)}`"


def test_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from tribute.cli.main import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "for name in ['works', 'holders', 'init', 'demo']:\n"
        "    CliRunner().invoke(cli, [name, '--help'])\n"
        "heavy = sorted(m for m in ('torch', 'faiss', 'duckdb', 'datasketch', 'trak', 'pyarrow') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "", f"--help imported {r.stdout.strip()}"


def test_usage_error_exits_2(invoke):
    r = invoke("works", "import")
    assert r.exit_code == 2 and "Missing argument" in r.output
    assert invoke("no-such-command").exit_code == 2


def test_console_script_as_a_real_subprocess(tmp_path):
    exe = shutil.which("tribute", path=os.path.dirname(sys.executable)) or shutil.which("tribute")
    assert exe, "the `tribute` console script is not installed"
    ws = tmp_path / "sub"
    env = dict(os.environ, TRIBUTE_HOME=str(ws))
    r = subprocess.run([exe, "init"], capture_output=True, text=True, env=env, check=True)
    assert "Created workspace" in r.stdout
    works = tmp_path / "w.txt"
    works.write_text("Some protected text.", encoding="utf-8")
    subprocess.run([exe, "works", "add", str(works), "--holder", "H"], env=env, check=True, capture_output=True)
    r = subprocess.run([exe, "works", "list", "--json"], capture_output=True, text=True, env=env, check=True)
    assert '"work_id": "w"' in r.stdout
    r = subprocess.run([exe, "works", "show", "nope"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and r.stderr == "Error: work 'nope': no such work; see `tribute works list`\n"
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert r.stdout.startswith("tribute, version ")
