"""The typed run contract: a run folder's layout, a stored system's backbone record, and
the one freshness check of the run's orchestration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supersub_tf.config import load_config
from supersub_tf.deltas.backbone import DEFAULT_NORMALIZATION, Backbone
from supersub_tf.errors import StorageError
from supersub_tf.run.freshness import (
    SETTINGS_FILE, StaleRunError, delta_settings, network_settings)
from supersub_tf.run.layout import METRICS, NETWORK, SETTINGS, RunLayout

QUIET = {"log": lambda *_: None}


# ------------------------------------------------------------------------- RunLayout
def test_the_layout_names_the_on_disk_layout_of_every_run(tmp_path):
    """The names are the ones run folders have always had: an old run keeps working."""
    layout = RunLayout(tmp_path / "run")
    relative = {name: getattr(layout, name).relative_to(layout.root).as_posix()
                for name in ("config", "data_summary", "data_gaps", "wall_time", "report",
                             "report_json", "export_record", "plots", "analysis", "vanilla",
                             "generalist", "specialists", "systems", "supersub_results")}
    assert relative == {
        "config": "config.yaml", "data_summary": "data_summary.json",
        "data_gaps": "data_gaps.txt", "wall_time": "wall_time.json", "report": "report.md",
        "report_json": "report.json", "export_record": "export.json", "plots": "plots",
        "analysis": "analysis", "vanilla": "vanilla", "generalist": "generalist",
        "specialists": "specialists", "systems": "systems", "supersub_results": "supersub"}
    root = layout.root
    assert layout.preview("val") == root / "plots" / "preview_val.png"
    assert layout.specialist("dog") == layout.network("specialist", "dog") == \
        root / "specialists" / "dog"
    assert layout.metrics("vanilla") == root / "vanilla" / "metrics.json"
    assert layout.metrics("specialist", "dog") == root / "specialists" / "dog" / "metrics.json"
    # Bit widths as bits or as their tag, float deltas included.
    assert layout.deltas(4) == layout.deltas("4bit") == root / "deltas" / "4bit"
    assert layout.delta_specialist(None, "dog") == root / "deltas" / "float" / "dog"
    assert layout.system(8) == root / "systems" / "8bit"
    assert layout.supersub_result(None) == root / "supersub" / "float.json"
    assert (SETTINGS, METRICS, NETWORK, SETTINGS_FILE) == (
        "settings.json", "metrics.json", "network.json", "settings.json")
    config = load_config(None, [f"output_dir={tmp_path}", "name=abc"])
    assert RunLayout.of(config).root == tmp_path / "abc"
    assert RunLayout(str(tmp_path)).root == tmp_path  # a str is taken as a path


def test_the_layout_refuses_a_network_it_does_not_know(tmp_path):
    layout = RunLayout(tmp_path)
    with pytest.raises(ValueError, match="no network folder of kind 'supersub'"):
        layout.network("supersub")
    with pytest.raises(ValueError, match="needs its superclass"):
        layout.network("specialist")


def test_the_run_lock_s_disposable_files_are_the_layout_s():
    from supersub_tf.run.lock import DISPOSABLE

    assert DISPOSABLE == ("config.yaml", "data_summary.json", "data_gaps.txt",
                          "wall_time.json", "plots/preview_*.png")


@pytest.mark.slow
def test_every_file_of_a_finished_run_is_where_the_layout_says(tiny_supersub_run):
    """The main job writes exactly the files its layout names: each run-level name the
    layout gives exists, and every file of the run lies under a name of the layout."""
    _, run_dir = tiny_supersub_run
    layout = RunLayout(run_dir)
    split = load_config(layout.config).preview.split
    for path in (layout.config, layout.data_summary, layout.wall_time, layout.report,
                 layout.report_json, layout.export_record, layout.preview(split)):
        assert path.is_file(), path
    for kind in ("vanilla", "generalist"):
        assert layout.metrics(kind).is_file()
        assert (layout.network(kind) / SETTINGS).is_file()
        assert (layout.network(kind) / NETWORK).is_file()
    superclasses = [row["superclass"]
                    for row in json.loads(layout.data_summary.read_text())["rows"]]
    for bits in (None, 4):
        assert layout.supersub_result(bits).is_file()
        assert (layout.system(bits) / "manifest.json").is_file()
        for name in superclasses:
            assert (layout.delta_specialist(bits, name) / METRICS).is_file()
            assert (layout.delta_specialist(bits, name) / SETTINGS).is_file()
    named = {layout.config, layout.data_summary, layout.data_gaps, layout.wall_time,
             layout.report, layout.report_json, layout.export_record}
    folders = [layout.plots, layout.analysis, layout.vanilla, layout.generalist,
               layout.specialists, layout.systems, layout.supersub_results,
               layout.root / RunLayout.DELTAS]
    stray = [p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()
             and p not in named and not any(f in p.parents for f in folders)]
    assert stray == []


# ------------------------------------------------------------------------- Backbone
def test_a_backbone_round_trips_through_its_stored_object():
    backbone = Backbone("resnet8", 0.25, 32, "unit", num_classes=10, parameters=1234,
                        extra={"note": "kept"})
    stored = backbone.to_dict()
    assert stored == {"model": "resnet8", "width": 0.25, "image_size": 32,
                      "normalization": "unit", "num_classes": 10, "parameters": 1234,
                      "note": "kept"}
    assert Backbone.from_dict(json.loads(json.dumps(stored))) == backbone
    # Before the system is saved the counts are unknown, and not written.
    assert Backbone("resnet8", 1.0, 64).to_dict() == {
        "model": "resnet8", "width": 1.0, "image_size": 64, "normalization": "imagenet"}


def test_an_old_stored_backbone_reads_with_an_int_image_size_and_the_default_mode():
    old = {"model": "resnet20", "width": 1, "image_size": "64", "num_classes": "10"}
    backbone = Backbone.from_dict(old)
    assert (backbone.image_size, backbone.width, backbone.num_classes) == (64, 1.0, 10)
    assert backbone.normalization == DEFAULT_NORMALIZATION == "imagenet"
    assert backbone.parameters is None


@pytest.mark.parametrize("stored, message", [
    ({"model": "resnet8", "width": 1.0}, "m.json: the backbone lacks image_size"),
    ({"model": "resnet8", "width": 1.0, "image_size": "big"},
     "m.json: backbone image_size must be a positive int, got 'big'"),
    ({"model": "resnet8", "width": 1.0, "image_size": 0},
     "m.json: backbone image_size must be a positive int, got 0"),
    ({"model": "resnet8", "width": 1.0, "image_size": 8, "normalization": "sepia"},
     "m.json: backbone normalization 'sepia' is none of imagenet, unit, none"),
    ({"model": "resnet8", "width": "wide", "image_size": 8}, "m.json: unreadable backbone"),
    (["resnet8"], "m.json: the backbone is list, not an object"),
])
def test_a_bad_stored_backbone_is_named(stored, message):
    with pytest.raises(StorageError, match=message.replace("(", r"\(")):
        Backbone.from_dict(stored, "m.json")


def test_a_run_s_backbone_comes_from_its_config():
    config = load_config(None, ["train.model=resnet8", "train.width=0.5",
                                "data.image_size=48", "data.normalization=unit"])
    assert Backbone.from_config(config) == Backbone("resnet8", 0.5, 48, "unit")


# ------------------------------------------------------------------------- freshness
def _stale_folder(folder: Path, settings: dict) -> None:
    """A finished stage folder recorded with ``settings`` but one epoch."""
    folder.mkdir(parents=True)
    (folder / SETTINGS_FILE).write_text(json.dumps({**settings, "train.epochs": 1}))
    (folder / METRICS).write_text("{}")


def test_the_supersub_stage_refuses_stale_delta_specialists_before_any_work(
        tmp_path, monkeypatch):
    """The supersub stage checks its delta specialists and base network itself, also for
    a config whose networks leave ``supersub`` out, before the data is even read (the
    trainers below check nothing)."""
    from supersub_tf.run import pipeline

    monkeypatch.setattr(pipeline, "create_source",
                        lambda data: pytest.fail("read the data of a stale run"))
    config = load_config(None, [f"output_dir={tmp_path}", "name=run", "networks=[vanilla]",
                                "deltas.bits=[4]"])
    layout = RunLayout.of(config)
    _stale_folder(layout.delta_specialist(4, "dog"), delta_settings(config, 4))
    with pytest.raises(StaleRunError, match=rf"deltas/4bit/dog \(train\.epochs: 1 -> "
                                            rf"{config.train.epochs}\)\. "):
        pipeline.supersub_stage(config, **QUIET)


def test_a_trainer_takes_the_folder_it_is_given(tmp_path, monkeypatch):
    """``train_network`` decides nothing about freshness: a finished folder is loaded as it
    is, whatever its record says (the run's stages refused it before)."""
    from supersub_tf.training import networks

    config = load_config(None, ["train.epochs=3"])
    layout = RunLayout(tmp_path / "run")
    _stale_folder(layout.vanilla, network_settings(config, "vanilla"))
    monkeypatch.setattr(networks, "load_network", lambda out: ("loaded", out))
    assert networks.train_network(config, None, "vanilla", layout.root, **QUIET) == (
        "loaded", layout.vanilla)
    assert json.loads((layout.vanilla / SETTINGS).read_text())["train.epochs"] == 1
