"""Progress of long loops: a line per step off a terminal, a redrawn bar on one."""

from __future__ import annotations

import io

import pytest

from supersub_tf.progress import Progress, progress


def test_plain_lines_per_step_at_most_one_per_interval_and_always_the_last(monkeypatch):
    clock = iter([0.0, 1.0, 6.0, 6.5, 7.0])
    monkeypatch.setattr("supersub_tf.progress.time.monotonic", lambda: next(clock))
    out = io.StringIO()
    with Progress(5, "predict", unit="images", interval=5.0, stream=out) as shown:
        for _ in range(5):
            shown.update()
    # 0 s: first step shown; 1 s: too soon; 6 s: shown; 6.5 s: too soon; 7 s: the last.
    assert out.getvalue() == ("[predict] 1/5 images\n[predict] 3/5 images\n"
                              "[predict] 5/5 images\n")


def test_progress_wraps_an_iterable_and_counts_after_each_item():
    out = io.StringIO()
    seen = []
    for item in progress(["a", "b", "c"], "litert", unit="models", interval=0.0, stream=out):
        seen.append((item, out.getvalue().count("\n")))  # lines written before the item
    assert seen == [("a", 0), ("b", 1), ("c", 2)]
    assert out.getvalue().splitlines() == ["[litert] 1/3 models", "[litert] 2/3 models",
                                           "[litert] 3/3 models"]


def test_a_terminal_gets_a_bar_that_is_removed_at_the_end():
    out = io.StringIO()
    with Progress(3, "predict", unit="images", interval=0.0, stream=out,
                  interactive=True) as shown:
        shown.update(2)
        assert "\r" in out.getvalue() and "2/3" in out.getvalue()
        shown.update()
    assert "[predict]" not in out.getvalue().split("\r")[-1]  # leave=False: erased


def test_not_a_terminal_by_default():
    out = io.StringIO()  # isatty() is False
    shown = Progress(1, "x", stream=out)
    shown.update()
    assert out.getvalue() == "[x] 1/1\n"


@pytest.mark.parametrize("total", [0, 2])
def test_predict_files_reports_progress_on_stderr(total, tmp_path, capsys):
    """``predict`` reports its files on the standard error, never the standard output."""
    import numpy as np
    from PIL import Image

    from supersub_tf.predict import predict_files
    from test_predict import TinyModel

    files = []
    for i in range(total):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(files[-1])
    predict_files(TinyModel(), files)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"[predict] {total}/{total} images\n" if total else "")
