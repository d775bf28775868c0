"""PLACEHOLDER (being built for issue 4): `tribute attribute ...`."""
import click


@click.group()
def attribute() -> None:
    """Attribute model outputs to training documents (not yet built)."""
