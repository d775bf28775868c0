"""The one error hierarchy of tribute.

Library code raises these with a message that names the input and says how to fix it; the CLI
turns any ``TributeError`` into a one-line message and exit code 1 (see ``tribute.cli.main``).
"""

from __future__ import annotations


class TributeError(Exception):
    """Base class: a problem the user can fix. ``str(err)`` is a complete one-line message."""


class InputError(TributeError):
    """A malformed input file or value (names the file, the line or row, and the fix)."""


class ConfigError(TributeError):
    """An invalid setting, or settings that do not match an earlier run."""


class NotFoundError(TributeError):
    """A named thing (work, holder, run, file) does not exist."""


class ConflictError(TributeError):
    """The request contradicts what is already stored (same id, different content)."""


class WorkspaceError(TributeError):
    """The workspace is missing, unreadable, or from an incompatible version."""


class WorkspaceLockedError(WorkspaceError):
    """Another process holds the workspace database's write lock."""


class IntegrityError(TributeError):
    """Stored data fails a consistency check (hash chain, balances, manifests)."""


class DependencyError(TributeError):
    """An optional dependency needed for the requested feature is not installed."""
