"""PLACEHOLDER (being built for issue 6): `tribute ledger ...` and `tribute quote`."""
import click


@click.group()
def ledger() -> None:
    """The compensation ledger (not yet built)."""


@click.command()
def quote() -> None:
    """Compare unlearning with compensation (not yet built)."""
