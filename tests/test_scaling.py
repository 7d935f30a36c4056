"""The scaling study: config validation, the resumable runner on tiny synthetic data, and
the report from hand-made points."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from supersub_tf.config import load_config
from supersub_tf.errors import ConfigError
from supersub_tf.studies.scaling import (
    SCALING_QUICK_PROFILE, ScalingConfig, load_scaling_config, point_config, point_name)

ROOT = Path(__file__).resolve().parents[1]

TINY_BASE = {
    "data": {"dataset": "synthetic", "preset": "", "image_size": 16,
             "synthetic": {"num_superclasses": 2, "subclasses_per_superclass": 2,
                           "images_per_class": 24, "image_size": 16}},
    "train": {"epochs": 1, "batch_size": 16, "learning_rate": 0.05, "warmup_epochs": 0,
              "verbose": "0", "eval_batch_size": 64},
    "preview": {"images_per_superclass": 2},
}

TINY_TIMING = {"latency_batch": 1, "throughput_batch": 8, "latency_repetitions": 2,
               "throughput_repetitions": 1, "warmup": 1}


def tiny_scaling(tmp_path: Path, **extra) -> Path:
    """A scaling YAML of two tiny sizes, the smaller with an 8-bit Super-Sub system."""
    data = {"name": "tiny", "output_dir": str(tmp_path / "runs"), "base": TINY_BASE,
            "sizes": [{"model": "resnet8", "width": 0.25}, "resnet8_w0.5"],
            "supersub_sizes": ["resnet8_w0.25"], "bits": [8], "timing": TINY_TIMING}
    data.update(extra)
    path = tmp_path / "scaling.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize("overrides, match", [
    (["sizes=[resnet8_w0.25]"], "sizes: a scaling study needs at least 2"),
    (["supersub_sizes=[resnet14_w0.5]"], "supersub_sizes: resnet14_w0.5 is not one of"),
    (["sizez=[resnet8_w1]"], "unknown setting.*sizez"),
    (["base.train.epoch=2"], r"unknown setting.*base\.train\.epoch"),
    (["timing.repetitions=3"], r"unknown setting.*timing\.repetitions"),
    (["sizes=[resnet9_w1, resnet8_w1]"], r"sizes\[0\]: model 'resnet9'"),
    (["sizes=[resnet8_w1, resnet8_w1.0]"], "sizes: resnet8_w1 listed more than once"),
    (["sizes=[{model: resnet8, width: -1}, resnet8_w1]"], r"sizes\[0\]: width"),
    (["sizes=[resnet8, resnet14_w1]"], r"sizes\[0\]: 'resnet8' is neither"),
    (["bits=[9]"], "bits: entries must be"),
    (["timing.throughput_batch=0"], "timing.throughput_batch"),
    (["base.data.image_size=4"], "data.image_size"),
])
def test_bad_settings_are_named(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_scaling_config(ROOT / "supersub_tf" / "configs" / "scaling.yaml", overrides)


def test_yaml_spells_out_the_defaults_and_spans_10x():
    from supersub_tf.models import create_model

    config = load_scaling_config(ROOT / "supersub_tf" / "configs" / "scaling.yaml")
    # base: scaling_base.yaml, beside the file: the 32 px run config of its committed results
    base = load_config(ROOT / "supersub_tf" / "configs" / "scaling_base.yaml")
    assert config == dataclasses.replace(ScalingConfig(), base=base)
    assert (base.data.image_size, base.train.model, base.train.epochs) == (32, "resnet20", 4)
    assert len(config.sizes) >= 4
    smallest, largest = (create_model(s["model"], 67, (32, 32, 3), width=s["width"])
                         for s in (config.sizes[0], config.sizes[-1]))   # listed small to large
    assert largest.count_params() >= 10 * smallest.count_params()
    supersub = {point_name(s) for s in config.supersub_sizes}
    assert supersub and supersub < {point_name(s) for s in config.sizes}


def test_overrides_base_path_and_quick_profile(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("train:\n  epochs: 7\n")
    path = tiny_scaling(tmp_path)
    config = load_scaling_config(path, ["base.train.epochs=2", "sizes=resnet8_w0.25,resnet14_w1",
                                        "supersub_sizes=[]"])
    assert config.base.train.epochs == 2 and config.base.data.dataset == "synthetic"
    assert [point_name(s) for s in config.sizes] == ["resnet8_w0.25", "resnet14_w1"]
    other = load_scaling_config(path, [f"base={base}", "base.train.batch_size=8"])
    assert other.base.train.epochs == 7 and other.base.train.batch_size == 8
    assert other.base.data.dataset == "tiny_imagenet"       # the base file replaced it all
    assert load_scaling_config(None, ["base=", "base.seed=3"]).base.seed == 3
    (tmp_path / "rel.yaml").write_text(yaml.safe_dump({"base": "base.yaml",
                                                       "sizes": ["resnet8_w1", "resnet14_w1"],
                                                       "supersub_sizes": []}))
    assert load_scaling_config(tmp_path / "rel.yaml").base.train.epochs == 7   # beside the file
    with pytest.raises(ConfigError, match="base: run config not found"):
        load_scaling_config(path, ["base=missing.yaml"])
    quick = load_scaling_config(ROOT / "supersub_tf" / "configs" / "scaling.yaml", SCALING_QUICK_PROFILE)
    assert quick.name == "scaling_quick" and quick.base.train.epochs == 1
    assert quick.base.data.dataset == "tiny_imagenet" and len(quick.sizes) >= 3
    # Each point is the base config with only the backbone (and its networks) changed.
    cfg = point_config(quick, quick.sizes[0])
    assert cfg.name == "resnet8_w0.25" and cfg.output_dir.endswith("scaling_quick")
    assert (cfg.train.model, cfg.train.width) == ("resnet8", 0.25)
    assert cfg.data == quick.base.data and cfg.train.epochs == quick.base.train.epochs
    assert cfg.networks == ["vanilla", "supersub"] and cfg.deltas.bits == [8]   # vanilla base
    assert point_config(quick, quick.sizes[1]).networks == ["vanilla"]


# ------------------------------------------------------------------------------ runner


@pytest.fixture(scope="module")
def trained_study(tmp_path_factory):
    """A tiny study run once (two vanilla sizes, one Super-Sub system), with the list of
    the stage folders each ``fit`` trained."""
    import supersub_tf.deltas.specialist_training as delta_specialists
    import supersub_tf.training.networks as networks
    from supersub_tf.studies.scaling import run_scaling

    tmp_path = tmp_path_factory.mktemp("scaling")
    config = load_scaling_config(tiny_scaling(tmp_path))
    fits: list[str] = []

    def spy(real):
        def fit(model, train, val, cfg, out_dir, steps):
            fits.append(str(Path(out_dir).relative_to(tmp_path / "runs" / "tiny")))
            return real(model, train, val, cfg, out_dir, steps)
        return fit

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(networks, "fit", spy(networks.fit))
        patch.setattr(delta_specialists, "fit", spy(delta_specialists.fit))
        study = run_scaling(config, log=lambda *_: None)
        first_fits = list(fits)
        yield {"study": study, "config": config, "tmp_path": tmp_path, "fits": fits,
               "first_fits": first_fits, "run": lambda c: run_scaling(c, log=lambda *_: None)}


def study_points(study: Path) -> dict:
    record = json.loads((study / "scaling.json").read_text())
    return {(p["point"], p["kind"]): p for p in record["points"]}


@pytest.mark.slow
def test_study_trains_each_network_once(trained_study):
    assert trained_study["study"] == trained_study["tmp_path"] / "runs" / "tiny"
    assert sorted(trained_study["first_fits"]) == [
        "resnet8_w0.25/deltas/8bit/disc", "resnet8_w0.25/deltas/8bit/square",
        "resnet8_w0.25/vanilla", "resnet8_w0.5/vanilla"]   # the specialists' base: vanilla
    assert set(study_points(trained_study["study"])) == {
        ("resnet8_w0.25", "vanilla"), ("resnet8_w0.25", "supersub-8bit"),
        ("resnet8_w0.5", "vanilla")}


@pytest.mark.slow
def test_records_count_parameters_bytes_and_flops(trained_study):
    points = study_points(trained_study["study"])
    small, big = points["resnet8_w0.25", "vanilla"], points["resnet8_w0.5", "vanilla"]
    system = points["resnet8_w0.25", "supersub-8bit"]
    assert big["parameters"] > 2 * small["parameters"]
    assert big["flops_per_image"] > 2 * small["flops_per_image"]
    assert small["stored_bytes"] == 4 * small["parameters"] < small["file_bytes"]
    # Super-Sub: the vanilla network on the device, its deltas stored compactly, two trunk
    # passes; it trained the vanilla network and as many specialist image passes again.
    assert system["base"] == "vanilla"
    assert system["device_parameters"] == system["parameters"] < system["total_parameters"]
    assert system["parameters"] == small["parameters"]
    assert system["train_flops"] > small["train_flops"] > 0
    assert system["num_specialists"] == 2
    assert system["parameters"] * 4 < system["stored_bytes"] < 3 * system["parameters"] * 4
    assert system["flops_per_image"] == pytest.approx(2 * small["flops_per_image"], rel=0.05)


@pytest.mark.slow
def test_records_accuracy_and_curves(trained_study):
    points = study_points(trained_study["study"])
    small, system = points["resnet8_w0.25", "vanilla"], points["resnet8_w0.25", "supersub-8bit"]
    for p in points.values():
        assert p["top1"] <= p["top5"]
    assert small["curves"]["vanilla"]["epoch"] == [1]
    assert small["final_val_accuracy"] is not None and system["specialist_gap"] is not None


def test_train_val_gap_from_a_hand_made_history(tmp_path):
    """The gap is the last epoch's training minus validation accuracy, of the last row of
    an epoch written twice (a resumed run); specialists' curves are averaged per epoch."""
    from supersub_tf.studies.scaling_records import final_gap, history_curves, mean_curves

    path = tmp_path / "history.csv"
    path.write_text("epoch,accuracy,loss,val_accuracy\n0,0.20,2.0,0.25\n1,0.30,1.8,0.31\n"
                    "1,0.40,1.7,0.35\n")
    curves = history_curves(path)
    assert curves == {"epoch": [1, 2], "accuracy": [0.2, 0.4], "val_accuracy": [0.25, 0.35]}
    train, val, gap = final_gap(curves)
    assert (train, val) == (0.4, 0.35) and gap == pytest.approx(0.05)
    other = {"epoch": [1, 2, 3], "accuracy": [0.1, 0.2, 0.9], "val_accuracy": [None, 0.25, 0.5]}
    assert mean_curves([curves, other]) == {
        "epoch": [1, 2], "accuracy": [pytest.approx(0.15), pytest.approx(0.3)],
        "val_accuracy": [None, pytest.approx(0.3)]}
    assert final_gap({"epoch": [], "accuracy": [], "val_accuracy": []}) == (None, None, None)


@pytest.mark.slow
def test_figures_report_and_resolved_config(trained_study):
    study = trained_study["study"]
    for name in ("top1_vs_parameters", "top1_vs_stored_bytes", "top1_vs_flops",
                 "top1_vs_latency", "top1_vs_device_parameters", "overfitting"):
        assert (study / "plots" / f"{name}.png").stat().st_size > 5_000
    report = (study / "scaling.md").read_text()
    assert "| resnet8_w0.5 | vanilla |" in report and "supersub-8bit" in report
    assert "plots/top1_vs_latency.png" in report
    assert load_scaling_config(study / "scaling_config.yaml") == trained_study["config"]


@pytest.mark.slow
def test_rerun_trains_nothing_and_a_deleted_point_alone(trained_study):
    import shutil

    study, fits = trained_study["study"], trained_study["fits"]
    weights = {p: p.stat().st_mtime_ns for p in study.rglob("final.weights.h5")}
    fits.clear()
    trained_study["run"](trained_study["config"])
    assert fits == []
    assert {p: p.stat().st_mtime_ns for p in study.rglob("final.weights.h5")} == weights
    shutil.rmtree(study / "resnet8_w0.5")
    trained_study["run"](trained_study["config"])
    assert fits == ["resnet8_w0.5/vanilla"]
    kept = {p: t for p, t in weights.items() if "resnet8_w0.25" in str(p)}
    assert {p: p.stat().st_mtime_ns for p in kept} == kept


@pytest.mark.slow
def test_a_point_trained_otherwise_is_refused(trained_study):
    changed = load_scaling_config(tiny_scaling(trained_study["tmp_path"]),
                                  ["base.train.epochs=2"])
    with pytest.raises(ConfigError, match=r"train\.epochs: 1 -> 2"):
        trained_study["run"](changed)


# ------------------------------------------------------------------------------ report


def hand_made_points() -> list[dict]:
    def vanilla(point, params, top1, ms, gap=0.05):
        return {"point": point, "kind": "vanilla", "parameters": params,
                "total_parameters": params, "device_parameters": params,
                "stored_bytes": 4 * params, "file_bytes": 4 * params + 80_000,
                "flops_per_image": 60 * params, "latency_ms": ms, "throughput_ips": 1e3 / ms,
                "top1": top1, "top5": top1 + 0.2, "final_train_accuracy": top1 + gap,
                "final_val_accuracy": top1, "train_val_gap": gap, "train_seconds": params / 100,
                "curves": {"vanilla": {"epoch": [1, 2], "accuracy": [0.1, top1 + gap],
                                       "val_accuracy": [0.1, top1]}}}

    points = [vanilla("r8_small", 6_000, 0.10, 1.0), vanilla("r8_big", 22_000, 0.16, 1.5),
              vanilla("r20_big", 280_000, 0.30, 4.0, gap=0.1)]
    points.append({"point": "r8_small", "kind": "supersub-8bit", "parameters": 6_000,
                   "total_parameters": 60_000, "device_parameters": 6_000,
                   "stored_bytes": 40_000, "file_bytes": 130_000, "flops_per_image": 720_000,
                   "latency_ms": 5.0, "throughput_ips": 200.0, "top1": 0.2, "top5": 0.3,
                   "final_train_accuracy": None, "train_val_gap": None,
                   "generalist_gap": 0.01, "specialist_gap": 0.04, "train_seconds": 100,
                   "curves": {"generalist": {"epoch": [1, 2], "accuracy": [0.3, 0.5],
                                             "val_accuracy": [0.3, 0.49]},
                              "specialists_mean": {"epoch": [1, 2], "accuracy": [0.4, 0.6],
                                                   "val_accuracy": [0.4, 0.56]}}})
    return points


def test_report_from_hand_made_points(tmp_path):
    from supersub_tf.analysis.scaling_plots import (
        equal_cost_rows, interpolate_vanilla, rebuild_scaling_report)
    from supersub_tf.errors import DataError

    points = hand_made_points()
    # Linear in log(cost) between the vanilla sizes around the system's cost.
    assert interpolate_vanilla(points, "total_parameters", 22_000) == pytest.approx(0.16)
    import math

    t = (math.log(60_000) - math.log(22_000)) / (math.log(280_000) - math.log(22_000))
    assert interpolate_vanilla(points, "total_parameters", 60_000) == pytest.approx(
        0.16 + t * 0.14)
    assert interpolate_vanilla(points, "total_parameters", 1_000) is None
    rows = {row[1]: row for row in equal_cost_rows(points)}
    assert rows["parameters"][3] == f"{100 * (0.16 + t * 0.14):.1f}%"
    assert rows["parameters resident on the device"][3:] == ["10.0%", "+10.0"]
    assert rows["CPU latency, ms per call"][3] == "outside the vanilla range"
    noisy = [dict(p, latency_ms=2.0) if p["point"] == "r8_small" and p["kind"] == "vanilla"
             else p for p in points]                      # slower than the bigger r8_big
    assert interpolate_vanilla(noisy, "latency_ms", 3.0) is None
    assert {r[1]: r[3] for r in equal_cost_rows(noisy)}["CPU latency, ms per call"] == \
        "vanilla cost not growing with size"
    (tmp_path / "scaling.json").write_text(json.dumps({"name": "hand", "points": points}))
    report = rebuild_scaling_report(tmp_path)
    text = report.read_text()
    assert "# Scaling study `hand`" in text
    assert "| r20_big | vanilla | 280,000 | 280,000 | 1,120.0 |" in text
    assert "gen +1.0, spec +4.0" in text and "at equal cost" in text
    for name in ("top1_vs_parameters", "top1_vs_latency", "overfitting"):
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 5_000
        assert f"plots/{name}.png" in text
    # Points without timing give no latency figure, and the report still builds.
    for p in points:
        p["latency_ms"] = p["throughput_ips"] = None
    (tmp_path / "plots" / "top1_vs_latency.png").unlink()
    (tmp_path / "scaling.json").write_text(json.dumps({"name": "hand", "points": points}))
    assert "top1_vs_latency" not in rebuild_scaling_report(tmp_path).read_text()
    assert not (tmp_path / "plots" / "top1_vs_latency.png").exists()
    with pytest.raises(DataError, match="not a scaling study"):
        rebuild_scaling_report(tmp_path / "nowhere")
