"""One command at a time per run folder: ``<output_dir>/.<name>.lock``, held with ``flock``.

Two jobs writing one run folder interleave ``history.csv``, race on the HDF5 checkpoints
and leave a report that describes neither. Every command that writes a run takes its
lock; a second command refuses at once, naming the lock and the holder's command. The
kernel releases a ``flock`` when its process ends, also on a kill or a native crash, so
a lock is never left held. Within one process the lock is re-entrant (the main job
holds it while its stages take it again).

A command removes its lock file when it ends, and a command that fails (a data error, a
refusal) removes what it made and what holds nothing of value: the run folder when the
command created it and it holds only :data:`DISPOSABLE` files, and the output folder when
the command created it and it is left empty. A folder that existed before the command
is never removed (it may be a run to resume).
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import IO, Iterator

from supersub_tf.errors import SuperSubError
from supersub_tf.run.layout import RunLayout

_held: dict[Path, list] = {}  # resolved run dir -> [open handle, depth]

#: Files a command writes before its first result (relative paths, glob patterns):
#: rebuilt in seconds, so a failed command's new run folder holding only these is removed.
DISPOSABLE = (RunLayout.CONFIG, RunLayout.DATA_SUMMARY, RunLayout.DATA_GAPS,
              RunLayout.WALL_TIME, RunLayout("").preview("*").as_posix())


class RunLockedError(SuperSubError):
    """Another command is writing the same run folder."""


def lock_path(run_dir: str | os.PathLike) -> Path:
    """``<parent>/.<name>.lock``: the lock file of a run (or study) folder."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


def _acquire(path: Path, run_dir: Path, wait: bool) -> IO[str]:
    """Opens and flocks the lock file at ``path``; returns the open handle.

    A holder deletes the file as it releases it, so a lock taken on a file that is no
    longer at ``path`` guards nothing: then the file is opened again.
    """
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = open(path, "a+")
        except FileNotFoundError:  # another command removed the empty folder just now
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunLockedError(
                f"{run_dir} is in use by {holder} (lock {path}); wait for it to finish, or "
                "use another run name (--set name=...)") from None
        try:
            current = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}: {shlex.join(sys.argv) or 'python'}\n")
            handle.flush()
            return handle
        handle.close()


def _discard_if_disposable(run_dir: Path) -> None:
    """Removes ``run_dir`` when every file in it is :data:`DISPOSABLE`."""
    try:
        files = [p for p in run_dir.rglob("*") if not p.is_dir()]
    except OSError:
        return
    if all(any(fnmatch.fnmatchcase(p.relative_to(run_dir).as_posix(), pattern)
               for pattern in DISPOSABLE) for p in files):
        shutil.rmtree(run_dir, ignore_errors=True)


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, wait: bool = False) -> Iterator[Path]:
    """Holds the lock of ``run_dir`` (``.<name>.lock`` beside it) for the block.

    The lock file is removed when the block ends; when the block raises, a run folder
    this call created is removed if it holds only :data:`DISPOSABLE` files, and so are
    the folders above it that this call created and that are left empty.

    Args:
        run_dir: The run (or study) folder.
        wait: Block until the other command ends instead of refusing.

    Raises:
        RunLockedError: When another process holds the lock and ``wait`` is false.
    """
    run_dir = Path(run_dir)
    path = lock_path(run_dir)
    key = path.resolve()
    if key in _held:
        _held[key][1] += 1
        try:
            yield path
        finally:
            _held[key][1] -= 1
        return
    made = _missing_folders(path.parent)
    handle = _acquire(path, run_dir, wait)
    new_run_dir = not run_dir.exists()  # checked under the lock: no one else writes it now
    _held[key] = [handle, 1]
    try:
        yield path
    except BaseException:
        if new_run_dir:
            _discard_if_disposable(run_dir)
        raise
    finally:
        del _held[key]
        try:
            path.unlink(missing_ok=True)  # while held: no one can take a lock on it now
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        for folder in made:  # deepest first; a folder that is not empty stays
            try:
                folder.rmdir()
            except OSError:
                break
