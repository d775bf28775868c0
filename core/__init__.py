"""Shared foundations: errors, input readers, hashing and run manifests (stdlib, numpy, pyarrow only)."""

from .errors import (
    ConfigError,
    ConflictError,
    DependencyError,
    InputError,
    IntegrityError,
    NotFoundError,
    TributeError,
    WorkspaceError,
    WorkspaceLockedError,
)
from .readers import Record, read_records

__all__ = [
    "ConfigError", "ConflictError", "DependencyError", "InputError", "IntegrityError",
    "NotFoundError", "TributeError", "WorkspaceError", "WorkspaceLockedError",
    "Record", "read_records",
]
