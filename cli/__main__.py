"""`python -m tribute.cli` runs the CLI (the same as the `tribute` script)."""

from .main import cli

cli(prog_name="tribute")
