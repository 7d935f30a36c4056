"""No stale network is ever reused, and one command at a time writes a run folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from supersub_tf.config import load_config
from supersub_tf.run.freshness import (
    NEUTRAL_SETTINGS, SETTINGS_FILE, StaleRunError, delta_settings, ensure_fresh,
    network_settings, stale_stages)
from supersub_tf.run.lock import RunLockedError, run_lock

QUIET = {"log": lambda *_: None}
ALL = "networks=[vanilla,generalist,specialists,supersub]"  # every kind of stage


def config_with(*overrides: str):
    return load_config(None, list(overrides))


def test_settings_of_each_stage():
    config = config_with("train.specialist_epochs=16", "deltas.epochs=3")
    vanilla = network_settings(config, "vanilla")
    assert vanilla["train.epochs"] == config.train.epochs
    assert "train.specialist_epochs" not in vanilla
    assert network_settings(config, "specialist")["train.epochs"] == 16
    assert not set(vanilla) & set(NEUTRAL_SETTINGS)
    assert not any(k.startswith("data.synthetic.") for k in vanilla)  # unused by tiny_imagenet
    assert "data.synthetic.seed" in network_settings(
        config_with("data.dataset=synthetic", "data.preset="), "vanilla")
    deltas = delta_settings(config, 4)
    assert deltas["deltas.bits"] == "4bit" and deltas["deltas.epochs"] == 3
    assert "deltas.topk" not in deltas  # evaluation only, recomputed every run
    # The vanilla network does not depend on the specialists' epochs.
    assert network_settings(config_with("train.specialist_epochs=2"), "vanilla") == \
        network_settings(config_with(), "vanilla")


def test_routing_variants_make_exactly_their_stages_stale():
    base, head = config_with(), config_with("train.generalist_fine_head=0.5")
    catch = config_with("deltas.catch_all=0.5", "export.savedmodel_routing=hard")
    # The auxiliary fine head changes the generalist (and so every delta specialist),
    # not the vanilla network; catch-all changes only the delta specialists.
    assert network_settings(head, "vanilla") == network_settings(base, "vanilla")
    assert network_settings(head, "generalist")["train.generalist_fine_head"] == 0.5
    # Delta specialists depend on their base: the generalist's head matters only to
    # specialists built on the generalist.
    assert delta_settings(head, 4) == delta_settings(base, 4)
    paper = config_with("deltas.base=generalist")
    paper_head = config_with("deltas.base=generalist", "train.generalist_fine_head=0.5")
    assert delta_settings(paper_head, 4) != delta_settings(paper, 4)
    assert delta_settings(base, 4)["deltas.base"] == "vanilla"
    assert "deltas.base" not in delta_settings(paper, 4)   # older records stay valid
    distilled = config_with("deltas.distill=0.5")
    assert delta_settings(distilled, 4)["deltas.distill"] == 0.5
    assert "deltas.distill" not in delta_settings(base, 4)
    assert network_settings(catch, "generalist") == network_settings(base, "generalist")
    assert delta_settings(catch, 4)["deltas.catch_all"] == 0.5
    # Off, neither is recorded: stages recorded before the settings existed stay fresh.
    assert "train.generalist_fine_head" not in network_settings(base, "generalist")
    assert "deltas.catch_all" not in delta_settings(base, 4)


def write_stage(folder: Path, settings: dict) -> None:
    folder.mkdir(parents=True)
    (folder / SETTINGS_FILE).write_text(json.dumps(settings))
    (folder / "metrics.json").write_text("{}")


def test_stale_stages_are_named_refused_or_removed(tmp_path):
    run_dir = tmp_path / "run"
    old = config_with(ALL, "deltas.bits=[8]")
    write_stage(run_dir / "vanilla", network_settings(old, "vanilla"))
    write_stage(run_dir / "generalist", network_settings(old, "generalist"))
    write_stage(run_dir / "specialists" / "dog", network_settings(old, "specialist"))
    write_stage(run_dir / "deltas" / "8bit" / "dog", delta_settings(old, 8))
    assert stale_stages(old, run_dir) == {}
    # Settings that cannot change a result do not make anything stale.
    assert stale_stages(config_with(ALL, "deltas.bits=[8]", "train.verbose=0",
                                    "data.skip_bad_images=true", "deltas.topk=3"), run_dir) == {}

    wider = config_with(ALL, "deltas.bits=[8]", "train.width=2.0")
    with pytest.raises(StaleRunError) as err:
        ensure_fresh(wider, run_dir, **QUIET)
    message = str(err.value)
    assert "train.width: 1.0 -> 2.0" in message and "--retrain" in message
    assert "--set name=" in message and "\n" not in message
    for stage in ("vanilla", "generalist", "specialists/dog", "deltas/8bit/dog"):
        assert stage in message

    # Only the delta settings changed: only the delta specialists are stale.
    finer = config_with(ALL, "deltas.bits=[8]", "deltas.learning_rate=0.5")
    assert list(stale_stages(finer, run_dir)) == [run_dir / "deltas" / "8bit" / "dog"]
    removed = ensure_fresh(finer, run_dir, retrain=True, **QUIET)
    assert removed == [run_dir / "deltas" / "8bit" / "dog"]
    assert (run_dir / "vanilla" / "metrics.json").is_file()
    assert not (run_dir / "deltas" / "8bit" / "dog").exists()


def test_a_folder_without_a_record_is_stale(tmp_path):
    folder = tmp_path / "run" / "vanilla"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")
    stale = stale_stages(config_with(), tmp_path / "run")
    assert "older supersub_tf" in stale[folder][0]


LOCK_HOLDER = r"""
import sys, time
from supersub_tf.run.lock import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_command_on_a_run_folder_refuses_and_a_killed_holder_frees_it(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run_dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=r"in use by pid \d+: .*lock .*\.lock"):
            with run_lock(run_dir):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)  # as a crash would end it
        holder.wait()
    with run_lock(run_dir):  # the kernel released it
        with run_lock(run_dir):  # re-entrant within one process
            pass


@pytest.mark.slow
def test_a_rerun_with_another_width_refuses_or_retrains_exactly_the_stale_stages(tmp_path):
    from test_training import tiny_config

    from supersub_tf.run import train_stage

    config = tiny_config(tmp_path, epochs=1)
    config.networks = ["vanilla", "generalist"]
    train_stage(config, **QUIET)
    run_dir = tmp_path / "runs" / "tiny"
    saved_config = (run_dir / "config.yaml").read_text()
    generalist_weights = (run_dir / "generalist" / "final.weights.h5").stat().st_mtime_ns

    wider = tiny_config(tmp_path, epochs=1, width=0.5)
    wider.networks = ["vanilla", "generalist"]
    with pytest.raises(StaleRunError, match=r"train\.width: 0\.25 -> 0\.5"):
        train_stage(wider, "vanilla", **QUIET)
    assert (run_dir / "config.yaml").read_text() == saved_config  # nothing rewritten

    # With retrain, vanilla and generalist are stale; `train vanilla` retrains vanilla
    # and removes the stale generalist, which the next stage that needs it retrains.
    metrics = train_stage(wider, "vanilla", retrain=True, **QUIET)
    network = json.loads((run_dir / "vanilla" / "network.json").read_text())
    assert network["train"]["width"] == 0.5 and metrics["vanilla"]["parameters"] > 0
    assert not (run_dir / "generalist").exists()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["width"] == 0.5

    # A neutral setting changes nothing: the vanilla network is reused.
    before = (run_dir / "vanilla" / "final.weights.h5").stat().st_mtime_ns
    neutral = tiny_config(tmp_path, epochs=1, width=0.5, verbose="0")
    neutral.networks = ["vanilla"]
    train_stage(neutral, **QUIET)
    assert (run_dir / "vanilla" / "final.weights.h5").stat().st_mtime_ns == before
    assert generalist_weights  # (the first generalist existed)


@pytest.mark.slow
def test_main_job_quick_rerun_with_another_width(tmp_path):
    """The bug report's case through the command line: the quick run rerun at width
    1.0 refuses naming train.width; with --retrain the stored system is the new one."""
    env = {**os.environ, "CI": "true"}
    synthetic = ["--dataset", "synthetic", "--set", "data.preset=",
                 "--set", f"output_dir={tmp_path / 'runs'}",
                 "--set", f"export.output_dir={tmp_path / 'saved'}", "--set", "export.tflite=false",
                 "--set", "networks=[vanilla,generalist,supersub]"]

    def main_job(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "supersub_tf", "run", "--quick",
                               *synthetic, *extra], env=env, capture_output=True, text=True,
                              cwd=tmp_path, timeout=900)

    first = main_job()
    assert first.returncode == 0, first.stderr[-3000:]
    started = time.time()
    refused = main_job("--set", "train.width=1.0")
    assert refused.returncode == 2 and time.time() - started < 60
    assert "train.width: 0.25 -> 1.0" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    retrained = main_job("--set", "train.width=1.0", "--retrain")
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    manifest = json.loads((tmp_path / "runs" / "quick" / "systems" / "8bit" /
                           "manifest.json").read_text())
    assert manifest["backbone"]["width"] == 1.0
