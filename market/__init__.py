"""The DuckDB workspace and everything stored in it: catalog, evidence, ledger, reports."""

from .workspace import Workspace

__all__ = ["Workspace"]
