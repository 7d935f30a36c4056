"""``train.distribution``: MirroredStrategy over 2 logical CPUs against one device, and
MultiWorkerMirroredStrategy with two local workers on the loopback address.

Strategies need their devices configured before TensorFlow starts, so each case runs
in fresh processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from supersub_tf.config import load_config
from supersub_tf.errors import ConfigError

TESTS = Path(__file__).resolve().parent

# Trains, in one process with two logical CPUs, the tiny run's vanilla network,
# generalist and one 4-bit QAT delta specialist under each given setting, each into its
# own run folder, and prints their metrics as JSON.
WORKER = r"""
import json, sys
from pathlib import Path
import numpy as np
import supersub_tf  # noqa: F401  (tf_keras before TensorFlow)
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[1])
from test_training import tiny_config
from supersub_tf.data import create_source
from supersub_tf.deltas.specialist_training import train_delta_specialist
from supersub_tf.training.networks import train_network

out = {}
for setting in sys.argv[3:]:
    root = Path(sys.argv[2]) / setting
    root.mkdir(parents=True)
    config = tiny_config(root, epochs=3, distribution=setting, deterministic=True)
    source = create_source(config.data)
    run_dir = Path(config.output_dir) / config.name
    result = {kind: train_network(config, source, kind, run_dir).metrics
              for kind in ("vanilla", "generalist")}
    generalist = train_network(config, source, "generalist", run_dir).model
    name = source.hierarchy.superclass_names[0]
    delta = train_delta_specialist(config, source, run_dir, generalist, name, 4)
    result["delta"] = json.loads((run_dir / "deltas" / "4bit" / name / "metrics.json")
                                 .read_text())
    result["delta_mean_abs"] = float(np.mean(np.concatenate(
        [np.abs(q.dequantize()).ravel() for q in delta.deltas.values()])))
    out[setting] = result
print("RESULT " + json.dumps(out))
"""


def run_worker(tmp_path: Path, *settings: str) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", WORKER, str(TESTS), str(tmp_path), *settings],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):]), done.stdout


def test_the_setting_is_checked():
    with pytest.raises(ConfigError, match="train.distribution must be one of auto, none"):
        load_config(None, ["train.distribution=horovod"])
    assert load_config("imagenet_gpu").train.distribution == "auto"


def test_multi_worker_needs_tf_config(monkeypatch):
    from supersub_tf.training.distribution import strategy_for

    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy_for.cache_clear()
    with pytest.raises(ConfigError, match="multi_worker needs TF_CONFIG"):
        strategy_for("multi_worker")


@pytest.mark.slow
def test_mirrored_over_two_cpus_matches_one_device(tmp_path):
    """The same tiny recipe on one device and mirrored over two logical CPUs.

    Tolerance: batch norm normalises each replica's half of the global batch with that
    half's statistics (Keras' layers are not synchronised across replicas), so the two
    trainings are not the same arithmetic; they are the same optimisation: the same
    number of steps on the same global batches. Stated tolerance: the final training
    loss within 15% and training accuracy within 0.15 of one device's, for the plain
    networks; the QAT delta specialist's oracle accuracy within 0.15 and the mean size of its
    dequantized deltas within 30%.
    """
    results, log = run_worker(tmp_path, "none", "mirrored")
    assert "2 replicas" in log
    one, two = results["none"], results["mirrored"]
    for kind in ("vanilla", "generalist"):
        a, b = one[kind], two[kind]
        assert abs(a["final_train_loss"] - b["final_train_loss"]) <= 0.15 * a["final_train_loss"]
        assert abs(a["final_train_accuracy"] - b["final_train_accuracy"]) <= 0.15
    for setting in ("none", "mirrored"):
        assert results[setting]["delta"]["steps"] == one["delta"]["steps"]  # global batch
    # The delta specialist: the same oracle accuracy and deltas of the same size on both
    # (an untrained or a diverged specialist would differ in one or the other).
    a, b = one["delta"], two["delta"]
    assert abs(a["oracle_top1"] - b["oracle_top1"]) <= 0.15
    size = one["delta_mean_abs"], two["delta_mean_abs"]
    assert min(size) > 0 and max(size) <= 1.3 * min(size), size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_on_loopback_trains_to_the_end(tmp_path):
    """Two worker processes (TF_CONFIG on 127.0.0.1) train the tiny vanilla network
    together, each into its own output folder, and end with the same weights."""
    import numpy as np

    from supersub_tf.training.networks import load_network

    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config)}
        out = tmp_path / f"worker{index}"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "supersub_tf", "train", "vanilla", "--dataset", "synthetic",
             "--image-size", "16", "--name", "mw", "--set", f"output_dir={out}",
             "--set", "train.distribution=multi_worker", "--set", "train.model=resnet8",
             "--set", "train.width=0.25", "--set", "train.epochs=2",
             "--set", "train.batch_size=16", "--set", "data.synthetic.num_superclasses=2",
             "--set", "data.synthetic.subclasses_per_superclass=2",
             "--set", "data.synthetic.images_per_class=30",
             "--set", "data.synthetic.image_size=16", "--set", "preview.images_per_superclass=2"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, output in zip(procs, outputs):
        assert p.returncode == 0, output[-3000:]
    assert "2 replicas" in outputs[0]
    nets = [load_network(tmp_path / f"worker{i}" / "mw" / "vanilla") for i in range(2)]
    for a, b in zip(nets[0].model.get_weights(), nets[1].model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)  # synchronous training: one model
    assert nets[0].metrics["top1"] == nets[1].metrics["top1"]
