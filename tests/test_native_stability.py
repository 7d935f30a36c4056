"""Training shapes that once crashed TensorFlow natively run to the end by default.

With oneDNN on (TensorFlow 2.21, these AMD CPUs), training narrow convolutions at 48-64 px
and batches of 37, 39, 41 or 103 images at 32 px died with SIGSEGV or "double free or
corruption" and no traceback. Each check runs in a subprocess, so a native crash fails
the test (naming the last shape that started) instead of killing the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

WORKER = r"""
import sys
import numpy as np
import supersub_tf  # the project's defaults, as every command gets them
import tf_keras as keras
from supersub_tf.models import create_model

for model_name, width, size, batch in [tuple(c.split(":")) for c in sys.argv[1:]]:
    size, batch = int(size), int(batch)
    print(f"start {model_name} x{width} {size}px batch {batch}", flush=True)
    model = create_model(model_name, 12, (size, size, 3), width=float(width))
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * batch + 5, size, size, 3)).astype("float32")
    y = rng.integers(0, 12, len(x))
    model.fit(x, y, batch_size=batch, epochs=2, verbose=0)  # full and short batches
    model.predict(x, batch_size=batch, verbose=0)
    print("ok", flush=True)
"""


def train_in_subprocess(cases: list[str], env_overrides: dict | None = None):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env.update(env_overrides or {})
    return subprocess.run([sys.executable, "-c", WORKER, *cases], env=env,
                          capture_output=True, text=True, timeout=600)


def assert_finished(result) -> None:
    started = [line for line in result.stdout.splitlines() if line.startswith("start")]
    assert result.returncode == 0, (
        f"exit status {result.returncode} while training {started[-1] if started else '?'}"
        f"\n{result.stderr[-2000:]}")


def test_import_leaves_onednn_off_unless_asked():
    probe = "import os, supersub_tf; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    default = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                             text=True, check=True)
    assert default.stdout.strip() == "0"
    opted_in = subprocess.run([sys.executable, "-c", probe],
                              env={**env, "TF_ENABLE_ONEDNN_OPTS": "1"},
                              capture_output=True, text=True, check=True)
    assert opted_in.stdout.strip() == "1"


@pytest.mark.slow
def test_narrow_convolutions_at_48_and_64_px():
    assert_finished(train_in_subprocess(
        ["resnet8:0.25:64:64", "resnet8:0.25:48:32", "resnet20:0.25:64:128",
         "resnet20:0.5:64:37"]))


@pytest.mark.slow
def test_odd_batch_sizes_at_32_px():
    assert_finished(train_in_subprocess(
        [f"resnet20:0.5:32:{batch}" for batch in (37, 39, 41, 103)]))


@pytest.mark.slow
def test_main_job_command_at_64_px(tmp_path):
    """The command of the bug report, through the command line."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run(
        [sys.executable, "-m", "supersub_tf", "train", "vanilla", "--quick", "--dataset",
         "synthetic", "--image-size", "64", "--set", f"output_dir={tmp_path}",
         "--set", "train.verbose=0"], env=env, capture_output=True, text=True, timeout=600,
        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "quick" / "vanilla" / "metrics.json").is_file()
