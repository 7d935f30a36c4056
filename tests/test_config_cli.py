"""Config loading/overrides and the command line."""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from supersub_tf.cli import main
from supersub_tf.config import RunConfig, load_config, save_config
from supersub_tf.errors import ConfigError


def test_yaml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ndata:\n  image_size: 48\n  synthetic:\n    seed: 3\n")
    cfg = load_config(path, ["data.augment=false", "data.val_fraction=0.25", "seed=5"])
    assert cfg.name == "x" and cfg.seed == 5
    assert cfg.data.image_size == 48 and cfg.data.augment is False
    assert cfg.data.val_fraction == 0.25 and cfg.data.synthetic.seed == 3
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg
    assert load_config(None) == RunConfig()


@pytest.mark.parametrize("overrides, match", [
    (["data.imagesize=3"], "unknown setting.*data.imagesize"),
    (["data.image_size=big"], "data.image_size expects int"),
    (["data.normalization=zscore"], "data.normalization"),
    (["data.val_fraction=1.5"], "val_fraction"),
    (["oops"], "section.key=value"),
    (["deltas.base=generalists"], "deltas.base must be one of vanilla, generalist"),
    (["deltas.distill=1.5"], "deltas.distill must be in"),
    (["deltas.base=generalist", "deltas.distill=0.5"], "distill needs deltas.base=vanilla"),
    (["deltas.distill=0.5", "deltas.catch_all=1"], "cannot be combined"),
    (["deltas.distill_temperature=0"], "distill_temperature must be positive"),
    (["deltas.catch_all=0.5"], "deltas.catch_all with export.savedmodel_routing=gated"),
    (["export.savedmodel_routing=oracle"], "savedmodel_routing must be one of hard, topk, soft, gated"),
])
def test_bad_settings_are_named(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")


def test_cli_bad_input_prints_one_line(capsys, tmp_path):
    status = main(["data", "summary", "--dataset", "tiny_imagenet",
                   "--path", str(tmp_path / "absent.zip")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: Tiny ImageNet not found at")
    assert "Traceback" not in err


def test_cli_presets_and_build(capsys, tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(shared_data))
    assert main(["data", "presets"]) == 0
    assert "superclassing_imagenet" in capsys.readouterr().out
    out = tmp_path / "s.json"
    assert main(["data", "build-preset", "superclassing_imagenet", "--output", str(out)]) == 0
    assert "bird 52, dog 116" in capsys.readouterr().out
    assert json.loads(out.read_text())["name"] == "superclassing_imagenet"


def test_cli_summary_real_data(shared_data, monkeypatch, capsys):
    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(shared_data))
    assert main(["data", "summary", "--preset", "tiny_imagenet_10", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["totals"]["train"] == 33_500 and summary["totals"]["val"] == 3_350


@pytest.mark.slow
def test_main_job_quick(shared_data, tmp_path):
    """`python -m supersub_tf run --quick` end to end, as a user runs it."""
    env = {"SUPERSUB_DATA_DIR": str(shared_data), "SUPERSUB_CACHE_DIR": str(tmp_path / "c"),
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "supersub_tf", "run", "--quick",
                             "--set", f"output_dir={tmp_path}/runs",
                             "--set", f"export.output_dir={tmp_path}/saved_models",
                             "--set", "export.compare_images=400"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = tmp_path / "runs" / "quick"
    assert "total" in result.stdout
    assert (run_dir / "plots" / "preview_train.png").stat().st_size > 10_000
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["max_per_class"] == 40
    report = (run_dir / "report.md").read_text()
    assert "| bird | 4 |" in report and "preview_train.png" in report
    # The main job ends by exporting both forms, checked against the Keras pipeline.
    exported = json.loads((run_dir / "export.json").read_text())
    assert exported["savedmodel"]["fine_agreement"] == 1.0
    assert exported["tflite"]["comparison"]["images"] == exported["images"] == 400
    assert (tmp_path / "saved_models" / "quick" / "saved_model.pb").is_file()
    assert (tmp_path / "saved_models" / "quick_tflite" / "litert_runtime.py").is_file()
    assert "## Export" in report



def test_default_yaml_spells_out_the_defaults():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "supersub_tf" / "configs" / "default.yaml"
    assert load_config(path) == RunConfig()


def test_builtin_configs_resolve_from_any_directory(tmp_path, monkeypatch):
    from supersub_tf.config import builtin_config_names, resolve_config_path
    from supersub_tf.studies.scaling import load_scaling_config

    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    assert {"default", "imagenet_gpu", "scaling", "budget"} <= set(builtin_config_names())
    for name in ("default", "default.yaml", "configs/default.yaml"):
        assert load_config(name) == RunConfig()
    assert resolve_config_path("imagenet_gpu").parent.name == "configs"
    assert load_config("imagenet_gpu").data.dataset != "tiny_imagenet"
    assert load_scaling_config("scaling").base.name  # its base: resolved beside it
    (tmp_path / "default").write_text("name: mine\n")  # a file of that name wins
    assert load_config("default").name == "mine"
    with pytest.raises(ConfigError, match=r"config file not found: nope \(nor a built-in "
                                          r"config: .*default"):
        load_config("nope")


def test_cli_reads_a_builtin_config_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "presets"]) == 0
    assert main(["run", "--config", "nope"]) == 2
    assert "nor a built-in config" in capsys.readouterr().err


def test_unknown_backbone_is_named(capsys):
    from supersub_tf.run import run_pipeline

    config = load_config(None, ["train.model=resnet9"])   # the config sits below the models
    with pytest.raises(ConfigError, match="train.model 'resnet9' is not a registered"):
        run_pipeline(config)
    assert main(["run", "--set", "train.model=resnet9"]) == 2
    assert "train.model 'resnet9'" in capsys.readouterr().err


def test_scale_command_names_a_missing_config(tmp_path, capsys):
    assert main(["scale", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_export_of_a_folder_that_is_no_system(tmp_path, capsys):
    assert main(["export", "savedmodel", str(tmp_path), str(tmp_path / "out")]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_bad_settings_fail_before_any_work(tmp_path):
    """Validated when read, and a bad preset leaves no empty run folder behind."""
    from supersub_tf.errors import SuperSubError
    from supersub_tf.run import run_pipeline

    for overrides, match in ((["data.max_per_class=-5"], "data.max_per_class"),
                             (["train.learning_rate=-1"], "train.learning_rate"),
                             (["deltas.bits=[]"], "deltas.bits is empty"),
                             (["name="], "name must be a folder name"),
                             (["train.width=0"], "train.width")):
        with pytest.raises(ConfigError, match=match):
            load_config(None, overrides)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listed, ["train.epochs=2"])
    config = load_config(None, [f"output_dir={tmp_path / 'runs'}", "name=bad",
                                "data.preset=no_such_preset"])
    with pytest.raises(SuperSubError, match="unknown preset 'no_such_preset'"):
        run_pipeline(config, log=lambda *_: None)
    assert not (tmp_path / "runs" / "bad").exists()


def test_data_summary_of_a_preset_without_images(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(tmp_path))  # no archive, and no download
    assert main(["data", "summary", "--preset", "superclassing_imagenet"]) == 0
    out = capsys.readouterr().out
    assert "dog                116  not available" in out
    assert "total              281" in out and "images not available: Tiny ImageNet not found" in out
    assert main(["data", "summary"]) == 2  # without a preset there is nothing to show
    assert "Tiny ImageNet not found" in capsys.readouterr().err


@pytest.mark.parametrize("text, key", [("train: 5\n", "train"),
                                       ("data:\n  synthetic: [1]\n", "data.synthetic")])
def test_a_scalar_section_is_blamed_on_the_file_also_under_quick(tmp_path, capsys, text, key):
    """``--quick`` overrides ``train.*``: the error names the YAML file and its key, not
    the profile's override."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    for flags in (["--quick"], []):
        assert main(["run", "--config", str(path), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {path}: {key} must be a section"), err
        assert "override" not in err


def test_an_empty_section_takes_overrides(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("train:\n")
    assert load_config(path, ["train.epochs=2"]).train.epochs == 2


def _refused_over_data(tmp_path, output_dir):
    """A run config whose data is refused after the run folder is made: an ImageNet tree
    whose val/ lacks a class, without data.partial_val."""
    import shutil

    from test_imagenet_folder import WNIDS, hierarchy, write_sorted_val, write_train

    root = tmp_path / "imagenet"
    write_train(root)
    write_sorted_val(root)
    shutil.rmtree(root / "val" / WNIDS[0])
    hierarchy().save(tmp_path / "h.json")
    return load_config(None, [f"output_dir={output_dir}", "name=refused", "networks=[]",
                              "data.dataset=imagenet", f"data.path={root}",
                              f"data.preset={tmp_path / 'h.json'}", "data.image_size=16"])


def test_a_run_refused_over_data_leaves_no_folder_and_no_lock(tmp_path):
    """What the refused command made goes (the run folder, the output folder, the lock);
    a run folder that was there before stays, whatever it holds."""
    from supersub_tf.errors import DataError
    from supersub_tf.run import run_pipeline

    runs = tmp_path / "out" / "runs"  # neither folder exists yet
    config = _refused_over_data(tmp_path, runs)
    with pytest.raises(DataError, match="has no val/n01530575/"):
        run_pipeline(config, log=lambda *_: None)
    assert not (tmp_path / "out").exists()

    earlier = runs / "refused"  # a run to resume: never removed
    (earlier / "plots").mkdir(parents=True)
    (earlier / "config.yaml").write_text("name: refused\n")
    with pytest.raises(DataError, match="has no val/n01530575/"):
        run_pipeline(config, log=lambda *_: None)
    assert sorted(p.name for p in runs.iterdir()) == ["refused"]  # no .refused.lock
    assert (earlier / "config.yaml").is_file() and (earlier / "plots").is_dir()


def test_a_failed_command_keeps_a_new_folder_holding_results(tmp_path):
    from supersub_tf.run.lock import lock_path, run_lock

    run_dir = tmp_path / "run"
    with run_lock(run_dir):  # a command that succeeds: no lock file left either
        run_dir.mkdir()
    assert run_dir.is_dir() and not lock_path(run_dir).exists()
    other = tmp_path / "other"
    with pytest.raises(RuntimeError):
        with run_lock(other):
            (other / "vanilla").mkdir(parents=True)
            (other / "vanilla" / "metrics.json").write_text("{}")
            (other / "config.yaml").write_text("")
            raise RuntimeError("after an hour of training")
    assert (other / "vanilla" / "metrics.json").is_file()
    assert not lock_path(other).exists()


# --------------------------------------------------------------------------- console start-up
STARTUP = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796604622.890849   20159 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.\n"
    "I0000 00:00:1796604622.9   20159 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized\nTo enable the following instructions: AVX2, rebuild TensorFlow.\n"
    "2025-09-17 14:44:05.176998: E external/local_xla/cuda_fft.cc:467] Unable to register "
    "cuFFT factory\n"
    "W0000 00:00:1796604625.1   20159 port.cc:9] a warning\n"
    "a plain line of some library\n"
    "/x/tensorflow/y.py:3: UserWarning: a Python warning\n")


@pytest.mark.parametrize("level, kept", [
    (1, [4, 5, 6, 7]),  # the error, the warning and the plain line that continues it
    (2, [4, 7]),
    (3, [7]),
])
def test_startup_lines_kept_follow_the_log_level(level, kept):
    from supersub_tf.console import kept_lines

    lines = STARTUP.splitlines(keepends=True)
    assert kept_lines(STARTUP, level) == "".join(lines[i] for i in kept)
    assert kept_lines("no log here\n", 3) == "no log here\n"


def test_native_startup_lines_are_filtered_on_first_import(tmp_path, monkeypatch, capfd):
    """A module that writes TensorFlow's start-up lines to file descriptor 2 while it is
    imported: at level 2 only its error line and Python's warning are left, a logger
    made during the import still writes after it, and the filter is gone afterwards."""
    import importlib
    import sys

    from supersub_tf.console import QuietNativeStartup

    (tmp_path / "fake_native_lib.py").write_text(
        "import os, sys\n"
        f"os.write(2, {STARTUP.encode()!r})\n"
        "print('python says hi', file=sys.stderr)\n"
        "import logging\n"
        "HANDLER = logging.StreamHandler()  # holds sys.stderr\n"
        "VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    quiet = QuietNativeStartup(["fake_native_lib"], min_level=2).install()
    try:
        module = importlib.import_module("fake_native_lib")
    finally:
        quiet.uninstall()
        sys.modules.pop("fake_native_lib", None)
    assert module.VALUE == 42 and quiet not in sys.meta_path
    assert module.__loader__.__class__.__name__ == "SourceFileLoader"
    lines = STARTUP.splitlines(keepends=True)
    # (capfd's sys.stderr writes to its file directly, not through descriptor 2: first)
    assert capfd.readouterr().err == "python says hi\n" + lines[4] + lines[7]
    module.HANDLER.stream.write("after the import\n")
    module.HANDLER.flush()
    assert capfd.readouterr().err == "after the import\n"


@pytest.mark.slow
def test_console_shows_no_tensorflow_startup_lines(tmp_path):
    """A command that imports TensorFlow prints none of its native start-up lines."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "supersub_tf", "data", "preview", "--dataset",
                           "synthetic", "--output", str(tmp_path / "p.png")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.png").is_file()
    for noise in ("absl::InitializeLog", "cudart_stub.cc", "Could not find cuda drivers",
                  "cuInit", "port.cc"):
        assert noise not in done.stderr, done.stderr
    assert not re.search(r"^[IWEF]\d{4} ", done.stderr, re.M), done.stderr  # no C++ log line


def test_bit_widths_have_one_check_and_one_list():
    """``choices.check_bits`` is the one check of a bit width: the config, the delta sets
    and the packing raise its message (each with its own exception class)."""
    import numpy as np

    from supersub_tf.choices import DELTA_BITS, check_bits
    from supersub_tf.config import parse_bits
    from supersub_tf.deltas.delta_set import QuantizedTensor
    from supersub_tf.deltas.packing import pack_codes

    assert DELTA_BITS == (2, 3, 4, 5, 6, 7, 8)
    assert [parse_bits(b) for b in ("float", None, "FP32", "2", 8, np.int64(5))] == [
        None, None, None, 2, 8, 5]
    rule = "must be an integer from 2 to 8, got 9"
    for bad in (9, 1, "4", 4.5, True):
        with pytest.raises(ValueError, match="delta bits must be an integer from 2 to 8"):
            check_bits(bad)
    with pytest.raises(ConfigError, match="deltas.bits entries must be float or an integer "
                                          "from 2 to 8, got 9"):
        load_config(None, ["deltas.bits=[4, 9]"])
    with pytest.raises(ConfigError, match="got 'eight'"):
        parse_bits("eight")
    with pytest.raises(ValueError, match=f"delta bits {rule}"):
        QuantizedTensor.quantize(np.ones((1, 1, 1, 2)), 9)
    with pytest.raises(ValueError, match=f"delta bits {rule}"):
        pack_codes(np.zeros(4, np.int8), 9)


def test_normalisation_modes_are_one_list():
    from supersub_tf.choices import NORMALIZATIONS
    from supersub_tf.data.pipeline import normalization_constants

    assert NORMALIZATIONS == ("imagenet", "unit", "none", "tf", "caffe")
    assert [normalization_constants(m)[0] for m in NORMALIZATIONS] == [255.0, 255.0, 1.0,
                                                                        127.5, 1.0]
    with pytest.raises(ConfigError, match="data.normalization must be one of imagenet, "
                                          "unit, none, tf, caffe, got 'zscore'"):
        load_config(None, ["data.normalization=zscore"])
    with pytest.raises(ConfigError, match="normalization must be one of imagenet, unit, "
                                          "none, tf, caffe, got 'zscore'"):
        normalization_constants("zscore")


def test_predict_help_lists_the_routing_registry():
    done = subprocess.run([sys.executable, "-m", "supersub_tf", "predict", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--routing {hard,topk,soft,gated}" in done.stdout
    assert "soft: every specialist, weighted by p(superclass)" in " ".join(done.stdout.split())
