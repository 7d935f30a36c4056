"""Training engine, the three kinds of networks, resume after a kill, and the main job's
analysis on a tiny synthetic hierarchy."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from supersub_tf.config import RunConfig, TrainConfig, load_config
from supersub_tf.training.engine import keras_verbosity
from supersub_tf.training.schedules import WarmupSchedule

TINY = {
    "data": {"dataset": "synthetic", "preset": "", "image_size": 16,
             "synthetic": {"num_superclasses": 2, "subclasses_per_superclass": 2,
                           "images_per_class": 30, "image_size": 16}},
    "train": {"model": "resnet8", "width": 0.25, "epochs": 2, "batch_size": 16,
              "learning_rate": 0.05, "verbose": "2"},
    "preview": {"images_per_superclass": 2},
    # Every kind of network (the main job's default leaves the independent specialists
    # out), and one epoch of delta fine-tuning.
    "networks": ["vanilla", "generalist", "specialists", "supersub"],
    "deltas": {"epochs": 1},
}


def tiny_config(tmp_path: Path, **train) -> RunConfig:
    data = json.loads(json.dumps(TINY))
    data["train"].update(train)
    data["output_dir"] = str(tmp_path / "runs")
    # hard: the tests compare the SavedModel with the stored system under one routing
    data["export"] = {"output_dir": str(tmp_path / "saved_models"), "savedmodel_routing": "hard"}
    data["name"] = "tiny"
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_schedules():
    cosine = WarmupSchedule(1.0, total_steps=110, warmup_steps=10, kind="cosine")
    assert float(cosine(0)) == pytest.approx(0.1)
    assert float(cosine(9)) == pytest.approx(1.0)
    assert float(cosine(10)) == pytest.approx(1.0)
    assert float(cosine(60)) == pytest.approx(0.5, abs=1e-6)
    assert float(cosine(110)) == pytest.approx(0.0, abs=1e-6)
    step = WarmupSchedule(1.0, total_steps=100, kind="step", milestones=(0.5, 0.75), gamma=0.1)
    assert [round(float(step(s)), 6) for s in (0, 49, 50, 75, 99)] == [1, 1, 0.1, 0.01, 0.01]
    assert float(WarmupSchedule(0.3, 10, kind="constant")(7)) == pytest.approx(0.3)
    assert WarmupSchedule.from_config(cosine.get_config()).get_config() == cosine.get_config()


def test_verbosity(monkeypatch):
    assert keras_verbosity("2") == 2 and keras_verbosity("0") == 0
    monkeypatch.setenv("CI", "true")
    assert keras_verbosity("auto") == (1 if sys.stdout.isatty() else 2)


@pytest.mark.slow
def test_networks_train_evaluate_and_skip_when_done(tmp_path):
    from supersub_tf.data import create_source
    from supersub_tf.run import finished_networks, train_stage

    config = tiny_config(tmp_path)
    source = create_source(config.data)
    metrics = train_stage(config, source=source, log=lambda *_: None)
    assert set(metrics) == {"vanilla", "generalist", "specialist/disc", "specialist/square"}
    assert metrics["vanilla"]["num_classes"] == 4 and metrics["generalist"]["num_classes"] == 2
    assert metrics["specialist/disc"]["num_classes"] == 2
    assert metrics["specialist/disc"]["train_images"] == metrics["vanilla"]["train_images"] // 2
    run_dir = tmp_path / "runs" / "tiny"
    for name in ("vanilla", "generalist", "specialists/square"):
        folder = run_dir / name
        for f in ("final.weights.h5", "best.weights.h5", "history.csv", "metrics.json",
                  "network.json", "val_predictions.npz"):
            assert (folder / f).is_file(), folder / f
        assert not (folder / "backup").exists()
        assert any((folder / "logs").rglob("*tfevents*"))
    with np.load(run_dir / "specialists" / "square" / "val_predictions.npz") as data:
        assert data["probs"].shape[1] == 2 and set(data["superclass"]) == {1}
    before = (run_dir / "vanilla" / "final.weights.h5").stat().st_mtime_ns
    again = train_stage(config, source=source, log=lambda *_: None)   # all done: loads
    assert again == metrics
    assert (run_dir / "vanilla" / "final.weights.h5").stat().st_mtime_ns == before
    assert set(finished_networks(run_dir)) == set(metrics)


def history_epochs(path: Path) -> list[int]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines if line]


@pytest.mark.slow
def test_killed_run_resumes_and_finishes(tmp_path):
    """`train vanilla` killed mid-training and restarted with the same command resumes
    from its backup (no epoch is run twice) and ends with valid files."""
    config_path = tmp_path / "kill.yaml"
    data = json.loads(json.dumps(TINY))
    data["data"]["synthetic"]["images_per_class"] = 60
    data["train"].update({"epochs": 8, "batch_size": 8})
    data.update({"output_dir": str(tmp_path / "runs"), "name": "kill"})
    config_path.write_text(yaml.safe_dump(data))
    command = [sys.executable, "-m", "supersub_tf", "train", "vanilla", "--config",
               str(config_path)]
    env = {**os.environ, "CI": "true"}
    out = tmp_path / "runs" / "kill" / "vanilla"
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while len(history_epochs(out / "history.csv")) < 2 and time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail("training finished before it could be interrupted")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = history_epochs(out / "history.csv")
    assert 2 <= len(done_before) < 8 and (out / "backup").exists()
    assert not (out / "metrics.json").exists()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    epochs = history_epochs(out / "history.csv")
    assert sorted(set(epochs)) == list(range(8))
    assert len(epochs) <= 8 + 1   # at most the epoch cut by the kill appears twice
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 8 and not (out / "backup").exists()


@pytest.mark.slow
def test_main_job_writes_analysis_and_report(tmp_path):
    from supersub_tf.run import run_pipeline

    config = tiny_config(tmp_path, epochs=1)
    run_dir = run_pipeline(config, log=lambda *_: None)
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    errors = summary["vanilla"]["errors"]
    assert errors["within"] + errors["across"] == errors["errors"]
    assert {r["superclass"] for r in summary["specialists_vs_vanilla"]} == {"disc", "square"}
    for figure in summary["figures"].values():
        assert (run_dir / "plots" / figure).stat().st_size > 5_000
    report = (run_dir / "report.md").read_text()
    assert "Finding (i)" in report and "Finding (ii)" in report and "## The generalist" in report
    # `analyze` redoes the analysis from the saved predictions alone.
    from supersub_tf.cli import main

    (run_dir / "report.md").unlink()
    (run_dir / "plots" / "confusion_fine.png").unlink()
    assert main(["analyze", str(run_dir)]) == 0
    assert (run_dir / "report.md").read_text().count("Finding (i)") == 1
    assert (run_dir / "plots" / "confusion_fine.png").exists()
    assert main(["analyze", str(tmp_path)]) == 2   # not a run directory


@pytest.mark.slow
def test_main_job_supersub_stage(tiny_supersub_run, capsys):
    """Delta specialists at two bit widths, stored systems, the pipeline's table."""
    from supersub_tf.cli import main
    from supersub_tf.deltas.storage import load_system

    tmp_path, run_dir = tiny_supersub_run
    for tag in ("float", "4bit"):
        result = json.loads((run_dir / "supersub" / f"{tag}.json").read_text())
        assert set(result["routing"]) == {"hard", "topk", "soft", "gated", "oracle"}
        assert result["routing"]["topk"]["specialist_passes"] == 2.0
        assert result["base"] == "vanilla"   # the default: specialists on the vanilla network
        comparison = result["vanilla_comparison"]
        vanilla = json.loads((run_dir / "vanilla" / "metrics.json").read_text())
        assert comparison["vanilla_top1"] == pytest.approx(vanilla["top1"])
        assert len(comparison["oracle_gain_per_superclass"]) == 2
        # The run also has a generalist: routing by it is measured beside.
        assert set(comparison["generalist_routing"]["top1"]) == {"hard", "topk", "soft"}
        # Vanilla 1 epoch + specialists 1 epoch each on their own images: 2 epochs' passes.
        assert result["training_compute"]["epochs_equivalent"] == pytest.approx(2.0)
        assert [p["tau"] for p in result["gated_curve"]][-1] == 1.01
        routing = result["routing"]
        # Each image hard routing gets right, the oracle (same specialist, right route)
        # gets right too; the error count and top-1 describe the same predictions.
        assert routing["oracle"]["top1"] >= routing["hard"]["top1"]
        images = sum(row["images"] for row in routing["hard"]["per_superclass"])
        assert routing["hard"]["top1"] == pytest.approx(
            1 - routing["hard"]["errors"] / images)
        system = load_system(run_dir / "systems" / tag)
        assert set(system.delta_sets) == {"disc", "square"}
    four, flt = (json.loads((run_dir / "supersub" / f"{t}.json").read_text())["storage"]["a"]
                 for t in ("4bit", "float"))
    assert four < flt
    report = (run_dir / "report.md").read_text()
    assert "## The Super-Sub pipeline" in report and "vanilla restricted" in report
    assert "the compute-matched baseline is a vanilla network trained 2 epochs" in report
    # The export stage takes the first bit width's system: float deltas here.
    assert json.loads((run_dir / "export.json").read_text())["bits"] == "float"
    assert (tmp_path / "saved_models" / "tiny" / "saved_model.pb").is_file()
    assert main(["storage", str(run_dir / "systems" / "4bit")]) == 0
    assert "a*N + 1" in capsys.readouterr().out


@pytest.mark.slow
def test_catch_all_specialists_and_a_generalist_with_a_fine_head(tmp_path):
    """Both routing variants through the main job: trained, stored, evaluated, exported."""
    from supersub_tf.deltas.storage import load_system
    from supersub_tf.run import run_pipeline
    from supersub_tf.training.networks import load_network

    config = tiny_config(tmp_path, epochs=1, generalist_fine_head=0.5)
    config.deltas.bits, config.deltas.catch_all = [8], 0.5
    config.export.savedmodel_routing = "hard"   # catch-all specialists export hard only
    config.deltas.base = "generalist"   # the paper's design: specialists on the generalist
    config.networks = ["generalist", "supersub"]
    run_dir = run_pipeline(config, log=lambda *_: None)
    generalist = json.loads((run_dir / "generalist" / "metrics.json").read_text())
    assert "aux_fine_top1" in generalist
    assert "val_logits_accuracy" in (run_dir / "generalist" / "history.csv").read_text()
    model = load_network(run_dir / "generalist").model   # the superclass head only
    assert model.output_shape == (None, 2) and len(model.outputs) == 1
    metrics = json.loads((run_dir / "deltas" / "8bit" / "disc" / "metrics.json").read_text())
    # 48 training images of its own (2 x 30, less 20% held out) and half as many others.
    assert metrics["train_images"] == 72 and "catch_all_others_rejected" in metrics
    system = load_system(run_dir / "systems" / "8bit")
    assert system.delta_settings["catch_all"] is True
    assert system.delta_sets["disc"].owned["logits"][0].shape[-1] == 3   # 2 subclasses + other
    result = json.loads((run_dir / "supersub" / "8bit.json").read_text())
    assert result["catch_all"] == 0.5 and result["generalist_fine_head"] == 0.5
    assert result["base"] == "generalist" and "vanilla_comparison" not in result
    assert "deltas.base" not in system.delta_settings
    assert "catch-all specialists" in (run_dir / "report.md").read_text()
    export = json.loads((run_dir / "export.json").read_text())
    assert export["savedmodel"]["fine_agreement"] == 1.0   # hard routing, other dropped


def test_train_config_validation():
    from supersub_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="train.optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="networks: unknown"):
        load_config(None, ["networks=[vanilla, experts]"])


@pytest.mark.slow
def test_a_resumed_run_reports_every_invocation(tmp_path):
    from supersub_tf.run import run_pipeline

    config = tiny_config(tmp_path, epochs=1)
    config.networks = ["vanilla"]
    run_dir = run_pipeline(config, log=lambda *_: None)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["invocations"] == 1
    run_pipeline(config, log=lambda *_: None)  # e.g. after a kill: finished parts reused
    report = json.loads((run_dir / "report.json").read_text())
    legs = json.loads((run_dir / "wall_time.json").read_text())["seconds"]
    assert report["invocations"] == 2 and len(legs) == 2
    assert legs[0] < report["wall_seconds_all_invocations"] <= sum(legs)  # before the report
    assert "over 2 invocations" in (run_dir / "report.md").read_text()


@pytest.mark.slow
def test_deterministic_setting_gives_bit_identical_networks(tmp_path):
    """``train.deterministic`` (process-wide, so each run is its own process)."""
    import h5py

    def weights(name: str) -> list[np.ndarray]:
        out = []
        with h5py.File(tmp_path / "runs" / name / "vanilla" / "final.weights.h5") as f:
            f.visititems(lambda _, o: out.append(np.array(o))
                         if isinstance(o, h5py.Dataset) else None)
        return out

    for name in ("a", "b"):
        result = subprocess.run(
            [sys.executable, "-m", "supersub_tf", "train", "vanilla", "--dataset", "synthetic",
             "--set", "data.preset=", "--set", "data.image_size=16",
             "--set", "data.synthetic.images_per_class=30", "--set", "train.model=resnet8",
             "--set", "train.width=0.25", "--set", "train.epochs=2",
             "--set", "train.batch_size=16", "--set", "train.verbose=0",
             "--set", "train.deterministic=true", "--set", f"name={name}",
             "--set", f"output_dir={tmp_path / 'runs'}"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    assert all(np.array_equal(x, y) for x, y in zip(weights("a"), weights("b")))


def test_evaluating_many_networks_in_turn_logs_no_retracing_warning(caplog):
    """Each network's predictions trace one graph; evaluating many specialists in turn
    must not print TensorFlow's excessive-retracing warning."""
    import tensorflow as tf
    import tf_keras as keras

    from supersub_tf.models import create_model
    from supersub_tf.training.networks import predict

    images = np.zeros((70, 16, 16, 3), np.float32)  # batches of 32, 32 and 6
    dataset = tf.data.Dataset.from_tensor_slices((images, {"fine": np.zeros(70, np.int32)}))
    with caplog.at_level("WARNING", logger="tensorflow"):
        for _ in range(7):
            keras.backend.clear_session()
            probs, _ = predict(create_model("resnet8", 3, (16, 16, 3), width=0.25),
                               dataset.batch(32))
            assert probs.shape == (70, 3)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def test_distilled_targets_mix_labels_with_the_teachers_renormalised_block():
    """Knowledge distillation's soft targets, on a teacher whose logits are known."""
    import tensorflow as tf
    import tf_keras as keras

    from supersub_tf.training.engine import with_distilled_targets

    logits = np.log(np.array([0.1, 0.2, 0.3, 0.4], np.float32))  # over 4 fine classes
    inputs = keras.Input((2,))
    teacher = keras.Model(inputs, keras.layers.Dense(
        4, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(logits))(
            inputs))
    images = tf.zeros((3, 2))
    dataset = tf.data.Dataset.from_tensors((images, {"subclass": tf.constant([0, 1, 0])}))
    # The specialist's classes are fine labels 2 and 3: the teacher's block says 3:4.
    (_, targets), = with_distilled_targets(dataset, teacher, [2, 3], 0.5, 1.0)
    np.testing.assert_allclose(targets.numpy()[0], [0.5 + 0.5 * 3 / 7, 0.5 * 4 / 7], rtol=1e-5)
    np.testing.assert_allclose(targets.numpy()[1], [0.5 * 3 / 7, 0.5 + 0.5 * 4 / 7], rtol=1e-5)
    # A temperature flattens the teacher's opinion: at T = 2, sqrt(3):sqrt(4).
    (_, hot), = with_distilled_targets(dataset, teacher, [2, 3], 1.0, 2.0)
    expected = np.sqrt([3, 4]) / np.sqrt([3, 4]).sum()
    np.testing.assert_allclose(hot.numpy()[2], expected, rtol=1e-5)


def _one_step_deltas(trunk_learning_rate: float, optimizer: str, **train) -> list:
    """Each variable's change after one optimizer step on a two-layer model (a ``trunk``
    Dense and the ``logits`` head), from the same starting weights every call."""
    import tensorflow as tf
    import tf_keras as keras

    from supersub_tf.training.engine import compile_model

    keras.backend.clear_session()
    config = TrainConfig(optimizer=optimizer, learning_rate=0.5, schedule="constant",
                         warmup_epochs=0, trunk_learning_rate=trunk_learning_rate, **train)
    # as training.networks sets it: the optimizer is then wrapped in a LossScaleOptimizer
    keras.mixed_precision.set_global_policy("mixed_float16" if config.mixed_precision
                                            else "float32")
    try:
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(3, activation="tanh", name="trunk")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(2, dtype="float32",
                                                       name="logits")(hidden))
        rng = np.random.default_rng(0)
        model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                           for w in model.get_weights()])
        compile_model(model, config, steps_per_epoch=1)
        assert isinstance(model.optimizer, keras.mixed_precision.LossScaleOptimizer) == \
            config.mixed_precision
        before = model.get_weights()
        images = tf.constant(rng.normal(size=(8, 4)), tf.float32)
        targets = tf.one_hot(rng.integers(0, 2, 8), 2)
        model.train_on_batch(images, targets)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return [after - start for after, start in zip(model.get_weights(), before)]


@pytest.mark.parametrize("optimizer,train", [
    ("sgd", {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}),
    # Adam's first step is ~lr * sign(gradient): scaling the trunk's gradients would move
    # it as far as the head; decoupled weight decay (on kernels) must follow the rate too.
    ("adamw", {"weight_decay": 0.2}),
    ("sgd", {"momentum": 0.9, "weight_decay": 0.2, "mixed_precision": True}),
])
def test_trunk_learning_rate_moves_the_trunk_a_tenth_and_the_head_as_far(optimizer, train):
    full = _one_step_deltas(1.0, optimizer, **train)
    lower = _one_step_deltas(0.1, optimizer, **train)
    trunk_kernel, trunk_bias, head_kernel, head_bias = range(4)  # get_weights() order
    assert np.abs(full[trunk_kernel]).min() > 0  # the trunk did move
    for i in (trunk_kernel, trunk_bias):
        # up to the float32 rounding of the updated weights (|w| < 2: an ulp <= 2.4e-7)
        np.testing.assert_allclose(lower[i], 0.1 * full[i], rtol=1e-6, atol=2.4e-7)
    for i in (head_kernel, head_bias):  # same trunk before the step: the same head step
        np.testing.assert_array_equal(lower[i], full[i])


def test_trunk_learning_rate_is_validated_and_needs_a_head():
    import tf_keras as keras

    from supersub_tf.errors import ConfigError
    from supersub_tf.training.engine import compile_model

    for bad in (0, -0.1, 1.5, float("nan"), "0.1", True):
        with pytest.raises(ConfigError, match="train.trunk_learning_rate must be in"):
            TrainConfig(trunk_learning_rate=bad)
    with pytest.raises(ConfigError, match="train.trunk_learning_rate must be in"):
        load_config(None, ["train.trunk_learning_rate=2"])
    assert TrainConfig(trunk_learning_rate=1).trunk_learning_rate == 1
    inputs = keras.Input((4,))
    headless = keras.Model(inputs, keras.layers.Dense(2, name="out")(inputs))
    with pytest.raises(ConfigError, match="has no trainable 'logits' head layer"):
        compile_model(headless, TrainConfig(trunk_learning_rate=0.1), steps_per_epoch=1)


def test_trunk_learning_rate_is_recorded_only_when_set_and_in_the_finetuning_configs():
    from supersub_tf.config import builtin_config_names, resolve_config_path
    from supersub_tf.run.freshness import delta_settings, network_settings

    plain = RunConfig()
    assert "train.trunk_learning_rate" not in network_settings(plain, "vanilla")
    assert "train.trunk_learning_rate" not in delta_settings(plain, 4)
    lower = RunConfig(train=TrainConfig(trunk_learning_rate=0.1))
    assert network_settings(lower, "vanilla")["train.trunk_learning_rate"] == 0.1
    assert delta_settings(lower, 4)["train.trunk_learning_rate"] == 0.1  # its base's
    assert {"imagenet_pretrained", "finetune_folder"} <= set(builtin_config_names())
    for name, trunk_rate in (("imagenet_pretrained", 0.005), ("finetune_folder", 0.01)):
        train = load_config(resolve_config_path(name)).train
        assert train.trunk_learning_rate == 0.1
        assert train.learning_rate * train.trunk_learning_rate == pytest.approx(trunk_rate)


@pytest.mark.slow
def test_interrupted_fit_with_a_lower_trunk_rate_resumes_to_the_same_weights(tmp_path):
    """BackupAndRestore restores the trunk-rate optimizer's momentum and step: a fit
    stopped in its second epoch and run again ends with an uninterrupted fit's weights."""
    import tensorflow as tf
    import tf_keras as keras

    from supersub_tf.training.engine import BACKUP_DIR, FINAL_WEIGHTS, HISTORY, fit
    from supersub_tf.training.history import read_history

    rng = np.random.default_rng(0)
    images = rng.normal(size=(32, 4)).astype(np.float32)
    targets = np.eye(2, dtype=np.float32)[rng.integers(0, 2, 32)]
    config = TrainConfig(epochs=3, batch_size=8, learning_rate=0.2, warmup_epochs=0.5,
                         trunk_learning_rate=0.1, verbose="0")

    def run(out, fail_at_batch=None):
        seen = {"batches": 0}

        def batches():
            for start in range(0, 32, 8):
                seen["batches"] += 1
                if seen["batches"] == fail_at_batch:
                    raise RuntimeError("killed")
                yield images[start:start + 8], targets[start:start + 8]

        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(3, activation="tanh", name="trunk")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(hidden))
        spec = (tf.TensorSpec((None, 4), tf.float32), tf.TensorSpec((None, 2), tf.float32))
        # a known length, as the real pipelines have (else Keras counts an extra step)
        data = tf.data.Dataset.from_generator(batches, output_signature=spec).apply(
            tf.data.experimental.assert_cardinality(4))
        fit(model, data, None, config, out, steps_per_epoch=4)
        return model

    straight = run(tmp_path / "straight").get_weights()
    with pytest.raises(Exception, match="killed"):
        run(tmp_path / "resumed", fail_at_batch=6)  # in the second epoch
    assert (tmp_path / "resumed" / BACKUP_DIR).is_dir()
    resumed = run(tmp_path / "resumed")
    assert (tmp_path / "resumed" / FINAL_WEIGHTS).is_file()
    runs = [read_history(tmp_path / name / HISTORY) for name in ("straight", "resumed")]
    assert list(runs[1]["epoch"]) == [0, 1, 2]
    np.testing.assert_array_equal(runs[1]["loss"][:2], runs[0]["loss"][:2])
    for a, b in zip(resumed.get_weights(), straight):
        np.testing.assert_array_equal(a, b)
