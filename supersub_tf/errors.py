"""Exceptions the library raises for bad input.

Every error a user can cause (a missing archive, a corrupt image, an invalid hierarchy, a
bad config value) is raised as a :class:`SuperSubError` subclass whose message names the
file, class or setting at fault. The command line prints these messages without a
traceback; anything else is a bug and keeps its traceback.
"""


class SuperSubError(Exception):
    """Base class of all user-facing errors of supersub_tf."""


class HierarchyError(SuperSubError, ValueError):
    """An invalid class hierarchy or superclassing specification."""


class DataError(SuperSubError, ValueError):
    """Missing, empty or unreadable dataset files."""


class ConfigError(SuperSubError, ValueError):
    """An invalid configuration value or file."""


class OutputError(SuperSubError, OSError):
    """A result could not be written (full disk, read-only filesystem, no permission)."""
