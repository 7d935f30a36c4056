"""Atomic writes: write to a temporary file (or folder) beside the target, then rename.

A crash or kill mid-write leaves the previous file intact, never a half-written one. The
temporary names carry the writer's process id, so the next write of the same target
removes what a killed writer left behind. A full disk, a read-only filesystem or a
missing permission is one :class:`~supersub_tf.errors.OutputError` line naming the
target, not a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import sys
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

from supersub_tf.errors import DataError, OutputError

#: errno values of a filesystem that cannot take the write (not a bug in the writer).
_FILESYSTEM_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EBUSY,
                      errno.EXDEV, errno.EDQUOT, errno.EISDIR, errno.ENOTDIR}


def _current_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def plain_mode(directory: bool = False) -> int:
    """The mode a plain ``open()`` or ``mkdir()`` would give under the current umask.

    ``mkstemp`` and ``mkdtemp`` create 0600 files and 0700 folders; renamed into place
    as they are, a model server running as another user could not read an export.
    """
    return (0o777 if directory else 0o666) & ~_current_umask()


def _is_filesystem_error(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno in _FILESYSTEM_ERRNOS
    tf = sys.modules.get("tensorflow")  # TensorFlow's writers raise their own errors
    return tf is not None and isinstance(error, (tf.errors.ResourceExhaustedError,
                                                 tf.errors.PermissionDeniedError))


@contextlib.contextmanager
def output_errors(target: str | os.PathLike) -> Iterator[None]:
    """Turns a filesystem's refusal (full, read-only, no permission) into one
    OutputError line naming ``target``."""
    try:
        yield
    except Exception as error:
        if not _is_filesystem_error(error):
            raise
        reason = getattr(error, "strerror", None) or getattr(error, "message", None) or error
        raise OutputError(f"{target}: cannot write it ({reason})") from None


def _temporary_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def remove_orphans(target: str | os.PathLike) -> None:
    """Deletes temporary files and folders of ``target`` left by writers that died."""
    target = Path(target)
    try:
        entries = list(target.parent.glob(f".{glob.escape(target.name)}.*"))
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(target.name) + 2:].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success.

    Use it for writers that want a file name (``savefig``, ``np.save``): write to the
    yielded path; if the block raises, the temporary file is removed and ``path`` is
    left as it was.
    """
    target = Path(path)
    with output_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(target)
        # Keep every suffix: writers pick formats by them (".weights.h5" is not ".h5").
        fd, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(target),
                                        suffix=".tmp" + "".join(target.suffixes),
                                        dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            tmp.chmod(plain_mode())
            yield tmp
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def landing_folder(target: str | os.PathLike) -> Path:
    """The nearest existing path at or above ``target``'s parent: where a write of
    ``target`` puts its temporary file (the missing folders below it are created), so
    where to check permissions and free space before a long computation. It may be a
    file, which the caller then reports."""
    folder = Path(target).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_replaceable_dir(target: str | os.PathLike, marker: str, kind: str) -> None:
    """Refuses to replace anything but a missing or empty folder or one holding ``marker``.

    Args:
        target: The folder about to be replaced.
        marker: A file name that identifies a folder this writer made (``manifest.json``,
            ``saved_model.pb``).
        kind: What such a folder is, for the error message ("Super-Sub system").

    Raises:
        DataError: When ``target`` is a file, or a non-empty folder without ``marker``
            (replacing it would delete someone's unrelated files).
    """
    target = Path(target)
    if not target.exists():
        return
    if not target.is_dir():
        raise DataError(f"{target}: exists and is not a directory; refusing to replace it")
    if any(target.iterdir()) and not (target / marker).is_file():
        raise DataError(f"{target}: a non-empty folder without {marker} (not a {kind}); "
                        "refusing to replace it")


def swap_into_place(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Renames the complete folder ``new`` onto ``target``, replacing an old one.

    The old folder is first renamed aside, then ``new`` into place, then the old one is
    deleted; if the second rename fails the old one is renamed back. (POSIX has no
    atomic swap of two directories, so a crash between the two renames, a window of
    microseconds, leaves the old folder under its hidden ``.<name>.<pid>.old-*`` name, which
    the next write of ``target`` removes.)
    """
    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        old = target.with_name(f"{_temporary_prefix(target)}old-{uuid.uuid4().hex[:12]}")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, marker: str, kind: str) -> Iterator[Path]:
    """Yields an empty temporary folder beside ``path``; swaps it onto ``path`` on success.

    Write the whole folder into the yielded path. If the block raises, the temporary
    folder is deleted and ``path`` is left as it was; a folder that is neither empty nor
    marked by ``marker`` is never replaced (see :func:`check_replaceable_dir`).
    """
    target = Path(path)
    check_replaceable_dir(target, marker, kind)
    with output_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(target)
        work = Path(tempfile.mkdtemp(prefix=_temporary_prefix(target), suffix=".tmp",
                                     dir=target.parent))
        try:
            work.chmod(plain_mode(directory=True))
            yield work
            swap_into_place(work, target)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
