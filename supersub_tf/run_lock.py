"""One command at a time per run folder: ``<output_dir>/.<name>.lock``, held with ``flock``.

Two jobs writing one run folder interleave ``history.csv``, race on the HDF5 checkpoints
and leave a report that describes neither. Every command that writes a run takes its
lock; a second command refuses at once, naming the lock and the holder's command. The
kernel releases a ``flock`` when its process ends, also on a kill or a native crash, so
a lock is never left behind. Within one process the lock is re-entrant (the main job
holds it while its stages take it again). The lock file sits beside the run folder, so a
command that fails before its first result (a bad preset, say) leaves no empty folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import sys
from pathlib import Path
from typing import Iterator

from supersub_tf.errors import SuperSubError

_held: dict[Path, list] = {}  # resolved run dir -> [open handle, depth]


class RunLockedError(SuperSubError):
    """Another command is writing the same run folder."""


def lock_path(run_dir: str | os.PathLike) -> Path:
    """``<parent>/.<name>.lock``: the lock file of a run (or study) folder."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, wait: bool = False) -> Iterator[Path]:
    """Holds the lock of ``run_dir`` (``.<name>.lock`` beside it) for the block.

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
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunLockedError(
                f"{run_dir} is in use by {holder} (lock {path}); wait for it to finish, or "
                "use another run name (--set name=...)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}: {shlex.join(sys.argv) or 'python'}\n")
        handle.flush()
        _held[key] = [handle, 1]
        try:
            yield path
        finally:
            del _held[key]
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
