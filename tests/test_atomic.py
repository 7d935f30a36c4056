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


def test_a_killed_writer_leaves_temporaries_the_next_write_removes(tmp_path):
    import subprocess
    import sys

    script = ("import os, sys\nfrom supersub_tf.atomic import atomic_directory\n"
              "with atomic_directory(sys.argv[1], 'marker', 'export') as work:\n"
              "    (work / 'half').write_text('x')\n    os._exit(9)\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "export")])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export.")]
    atomic_write_text(tmp_path / "other.txt", "x")  # another target's write leaves them
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export.")]
    with atomic_directory(tmp_path / "export", "marker", "export") as work:
        (work / "marker").write_text("")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "other.txt"]


def test_filesystem_refusals_are_one_line_naming_the_target(tmp_path):
    import pytest

    from supersub_tf.errors import OutputError

    locked = tmp_path / "read_only"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: fake a full disk
            import errno

            def write(_):
                raise OSError(errno.ENOSPC, "No space left on device")
        else:
            write = None
        with pytest.raises(OutputError, match=r"read_only/export: cannot write it \(.+\)$"):
            with atomic_directory(locked / "export", "marker", "export") as work:
                if write:
                    write(work)
        assert os.listdir(locked) == []  # nothing partial left
    finally:
        locked.chmod(0o700)
