"""Exceptions the library raises for bad input.

Every error a user can cause (a missing archive, a corrupt image, an invalid hierarchy, a
bad config value) is raised as a :class:`SuperSubError` subclass whose message names the
file, class or setting at fault: :class:`ConfigError` for settings, :class:`DataError`
for dataset files (with :class:`StorageError` for stored systems and
:class:`ExportError` for exports), :class:`HierarchyError` for hierarchies and
superclassing specs, :class:`OutputError` for results that cannot be written. The
command line prints these messages without a traceback; anything else is a bug and
keeps its traceback.
"""


class SuperSubError(Exception):
    """Base class of all user-facing errors of supersub_tf."""


class HierarchyError(SuperSubError, ValueError):
    """An invalid class hierarchy or superclassing specification."""


class DataError(SuperSubError, ValueError):
    """Missing, empty or unreadable dataset files."""


class ConfigError(SuperSubError, ValueError):
    """An invalid configuration value or file."""


class StorageError(DataError):
    """A stored Super-Sub system that cannot be written or read back consistently (the
    message names the file: a checksum, a shape, a hierarchy that disagrees)."""


class ExportError(DataError):
    """A SavedModel or LiteRT export that cannot be written, read or trusted.

    The LiteRT runtime (``export/litert_runtime.py``) raises this class inside the
    package; the copy of the runtime in an export folder, where the package is absent,
    defines a ValueError of the same name instead.
    """


class OutputError(SuperSubError, OSError):
    """A result could not be written (full disk, read-only filesystem, no permission)."""
