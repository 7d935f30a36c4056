"""TensorFlow's native start-up lines, kept off the command line's console.

Loading TensorFlow 2.21's libraries prints C++ log lines before TensorFlow reads
``TF_CPP_MIN_LOG_LEVEL`` (which the package sets, see :mod:`supersub_tf`): each library
that logs first prints absl's notice ``WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR``, then lines such as ``I0000 ...
cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used``.
They come from static initializers, so no setting read later can stop them, and absl
has no environment variable for its level (absl::InitializeLog and absl::SetMinLogLevel
are C++ calls that TensorFlow does not make or expose; tensorflow/tensorflow#100442).

So while ``tensorflow`` is imported, and only then, the command line points file
descriptor 2 at a temporary file and afterwards prints what ``TF_CPP_MIN_LOG_LEVEL``
would have kept: every line of a severity at or above it, and everything that is not a
C++ log line (Python's warnings and tracebacks included). ``sys.stderr`` stays the same
object, because loggers created during the import keep a reference to it. With
``TF_CPP_MIN_LOG_LEVEL=0`` nothing is filtered. (Were the import to kill the process,
its last native lines would be lost with the temporary file.)
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence

#: absl's notice, printed once by each library that logs before absl is initialised.
ABSL_NOTICE = ("WARNING: All log messages before absl::InitializeLog() is called are written "
               "to STDERR")
#: A C++ log line: absl's ``I0000 00:00:1796604589.603973   19827 cudart_stub.cc:31] ...``
#: (before absl is initialised the time is seconds since the epoch) or TensorFlow's own
#: ``2025-09-17 14:44:05.157831: I external/.../cudart_stub.cc:32] ...``.
_NATIVE_LOG = re.compile(r"(?:([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ "
                         r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) )\S+:\d+\]")
_SEVERITIES = "IWEF"  # TF_CPP_MIN_LOG_LEVEL 0, 1, 2, 3
#: Python's own output, never the continuation of a C++ log line: a warning
#: (``file.py:12: UserWarning: ...``) or a traceback.
_PYTHON_OUTPUT = re.compile(r"\S.*:\d+: \w*(Warning|Error)\b"
                            r"|Traceback \(most recent call last\)")


def min_log_level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it (0 when unset or not a number)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def kept_lines(text: str, min_level: int) -> str:
    """What of ``text`` (native output) ``TF_CPP_MIN_LOG_LEVEL=min_level`` keeps.

    absl's notice goes; a C++ log line stays when its severity is at least
    ``min_level``, and so do the lines that continue it; anything else stays.
    """
    kept, keep = [], True
    for line in text.splitlines(keepends=True):
        if line.rstrip("\r\n") == ABSL_NOTICE:
            continue
        match = _NATIVE_LOG.match(line)
        if match:
            keep = _SEVERITIES.index(match.group(1) or match.group(2)) >= min_level
        elif _PYTHON_OUTPUT.match(line):
            keep = True
        if keep:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def native_stderr_filtered(min_level: int) -> Iterator[None]:
    """Within the block, whatever reaches file descriptor 2 is held back, then printed to
    ``sys.stderr`` through :func:`kept_lines`."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no stderr to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()  # Python's lines of the block, into the capture in order
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = kept_lines(capture.read().decode("utf-8", "replace"), min_level)
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _FilteredLoader(importlib.abc.Loader):
    """Runs a module's loader under :func:`native_stderr_filtered`, then steps aside."""

    def __init__(self, loader: importlib.abc.Loader, min_level: int) -> None:
        self.loader, self.min_level = loader, min_level

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # resources, reloads
        with native_stderr_filtered(self.min_level):
            self.loader.exec_module(module)


class QuietNativeStartup(importlib.abc.MetaPathFinder):
    """Filters the native start-up output of the first import of ``names`` (then removes
    itself from ``sys.meta_path``)."""

    def __init__(self, names: Sequence[str], min_level: int) -> None:
        self.names, self.min_level = tuple(names), min_level

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.names:
            return None
        self.uninstall()
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader, self.min_level)
        return spec

    def install(self) -> QuietNativeStartup:
        if self.min_level > 0 and not any(name in sys.modules for name in self.names):
            sys.meta_path.insert(0, self)
        return self

    def uninstall(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def quiet_tensorflow_startup() -> QuietNativeStartup:
    """Installs the filter for TensorFlow's first import, at ``TF_CPP_MIN_LOG_LEVEL``."""
    return QuietNativeStartup(("tensorflow",), min_log_level()).install()
