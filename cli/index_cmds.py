"""PLACEHOLDER (being built for issue 3): `tribute index ...` and `tribute scan ...`."""
import click


@click.group()
def index() -> None:
    """Build indexes of the registered works (not yet built)."""


@click.group()
def scan() -> None:
    """Scan corpora and model outputs for the works (not yet built)."""
