"""Atomic writes end with the modes a plain write would give."""

import os
import stat

from supersub_tf.atomic import atomic_directory, atomic_write_text


def test_atomic_files_and_folders_get_the_umask_modes(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.md", "x")
        with atomic_directory(tmp_path / "export", "marker", "export") as work:
            (work / "marker").write_text("")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.md").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "export").stat().st_mode) == 0o755
    os.umask(0o077)
    try:
        atomic_write_text(tmp_path / "private.md", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "private.md").stat().st_mode) == 0o600
