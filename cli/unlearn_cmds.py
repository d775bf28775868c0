"""PLACEHOLDER (being built for issue 5): `tribute unlearn`."""
import click


@click.command()
def unlearn() -> None:
    """Remove works' influence from a model and certify it (not yet built)."""
