"""The budget crossover study on a tiny synthetic hierarchy: points, records, resume."""

from __future__ import annotations

import json

import pytest

from supersub_tf.config import load_config
from supersub_tf.errors import ConfigError
from supersub_tf.studies.budget import (
    BudgetConfig, crossover, delta_epochs, load_budget_config, matched_epochs, point_config,
    run_budget)

TINY_BASE = {
    "data": {"dataset": "synthetic", "preset": "", "image_size": 16,
             "synthetic": {"num_superclasses": 2, "subclasses_per_superclass": 2,
                           "images_per_class": 24, "image_size": 16}},
    "train": {"model": "resnet8", "width": 0.25, "epochs": 2, "batch_size": 16,
              "warmup_epochs": 0, "verbose": "0"},
    "deltas": {"epochs": 1},
}


def tiny_study(tmp_path, *overrides):
    import yaml

    path = tmp_path / "budget.yaml"
    path.write_text(yaml.safe_dump({"name": "b", "output_dir": str(tmp_path / "runs"),
                                    "results_dir": str(tmp_path / "results"),
                                    "base": TINY_BASE, "epochs": [1, 2]}))
    return load_budget_config(path, list(overrides))


def test_points_scale_the_epochs_and_nothing_else(tmp_path):
    config = tiny_study(tmp_path, "epochs=[1, 4]")
    assert delta_epochs(config.base, 4) == 2  # the base's 1 delta epoch per 2 epochs
    point = point_config(config, 4)
    assert (point.name, point.train.epochs, point.deltas.epochs, point.deltas.bits) == \
        ("e4", 4, 2, [4])
    assert point.networks == ["vanilla", "supersub"]      # the vanilla base: no generalist
    assert matched_epochs(point) == 4 + 2                  # vanilla + specialists' passes
    paper = point_config(tiny_study(tmp_path, "base.deltas.base=generalist"), 4)
    assert paper.networks == ["vanilla", "generalist", "supersub"]
    assert matched_epochs(paper) == 4 + 4 + 2              # + the generalist's
    assert not point.export.enabled and point.train.model == config.base.train.model
    for bad, match in ((["epochs=[2]"], "at least 2"), (["epochs=[1, 0]"], "positive"),
                       (["bits=9"], "bits must be")):
        with pytest.raises(ConfigError, match=match):
            tiny_study(tmp_path, *bad)
    defaults = load_budget_config("budget")
    assert defaults.base == load_config("default")
    assert max(defaults.epochs) / min(defaults.epochs) >= 8 and len(defaults.epochs) >= 4


def test_crossover_on_hand_made_records():
    def record(epochs, *diffs):
        return {"epochs": epochs, "routing": {
            r: {"minus_vanilla": d, "minus_compute_matched": d - 0.05}
            for r, d in zip(("hard", "topk", "gated"), diffs)}}

    found = crossover([record(1, -0.04, -0.02, -0.03), record(4, 0.02, 0.03, 0.01)])
    assert found["hard"]["budgets_won"] == [4]
    assert found["hard"]["crossings_at_epochs"] == [pytest.approx(2.52, abs=0.01)]
    assert found["topk"]["best_difference"] == 0.03
    assert found["topk vs compute-matched"]["budgets_won"] == []
    assert found["topk vs compute-matched"]["best_difference"] == pytest.approx(-0.02)


@pytest.mark.slow
def test_study_trains_writes_records_and_resumes_from_them(tmp_path, monkeypatch):
    config = tiny_study(tmp_path)
    out = run_budget(config, log=lambda *_: None)
    result = json.loads((out / "budget.json").read_text())
    assert [p["epochs"] for p in result["points"]] == [1, 2]
    point = result["points"][0]
    assert set(point["routing"]) == {"hard", "topk", "soft", "gated", "oracle"}
    assert point["routing"]["hard"]["minus_vanilla"] == pytest.approx(
        point["routing"]["hard"]["top1"] - point["vanilla_top1"])
    # Epoch 1 + 1 delta epoch: the compute-matched vanilla network trains 2 epochs, the
    # folder the budget point of 2 epochs shares.
    assert point["compute_matched_epochs"] == 2
    assert point["compute_matched_vanilla_top1"] == result["points"][1]["vanilla_top1"]
    assert (out / "supersub_minus_vanilla.png").stat().st_size > 0
    assert "| epochs |" in (out / "budget.md").read_text()

    # The run folders are gone (another machine): the committed records suffice.
    import shutil

    import supersub_tf.run as run_module

    shutil.rmtree(tmp_path / "runs")
    monkeypatch.setattr(run_module, "train_stage", lambda *a, **k: pytest.fail("retrained"))
    again = run_budget(config, log=lambda *_: None)
    assert json.loads((again / "budget.json").read_text())["points"] == result["points"]
    # A record of other settings is not reused.
    changed = tiny_study(tmp_path, "base.train.learning_rate=0.05")
    with pytest.raises(BaseException, match="retrained"):
        run_budget(changed, log=lambda *_: None)


def test_budget_defaults_are_the_committed_yaml():
    from supersub_tf.config import RunConfig

    default = BudgetConfig()
    assert (default.name, default.output_dir, default.results_dir) == (
        "budget", "runs", "benchmarks/results")
    # 4 budgets spanning 9x, up to the main job's 9 epochs, on the main job's config
    assert (default.epochs, default.bits, default.base) == ([1, 2, 4, 9], 4, RunConfig())
    assert load_budget_config("budget") == default       # budget.yaml spells them out
