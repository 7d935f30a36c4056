"""The question benchmarks' helpers and logic on hand-made run directories (no training)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from supersub_tf.config import save_config
from supersub_tf.run.freshness import network_settings, record_settings

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def bench(monkeypatch):
    """The ``benchmarks/`` folder importable (its scripts import ``common``)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import common

    return common


def supersub_result(tag: str, hard: float, topk: float, oracle: float, a: float) -> dict:
    """A ``supersub/<tag>.json`` of two specialists (superclasses a and b)."""
    unit = 1000
    specialist = {"bytes": int(a * unit), "code_bytes": int(a * unit) - 100, "scale_bytes": 20,
                  "owned_bytes": 50, "overhead_bytes": 30}

    def routing(top1: float) -> dict:
        return {"top1": top1, "stage1_superclass_accuracy": 0.8, "errors": round(10 * (1 - top1)),
                "errors_from_stage1": 0.5,
                "per_superclass": [{"superclass": "a", "images": 4, "top1": top1},
                                   {"superclass": "b", "images": 6, "top1": top1}]}

    return {"bits": None if tag == "float" else int(tag[:-3]), "system": f"systems/{tag}",
            "storage": {"float32_network_bytes": unit, "specialists": [specialist, specialist],
                        "specialist_bytes": 2 * int(a * unit), "generalist_bytes": 1500,
                        "manifest_bytes": 200, "total_bytes": 1700 + 2 * int(a * unit),
                        "total_units": (1700 + 2 * int(a * unit)) / unit, "a": a,
                        "a_n_plus_1": 2 * a + 1, "separate_networks": 3},
            "routing": {"hard": routing(hard), "topk": routing(topk), "oracle": routing(oracle)}}


SUPERSUB = {"8bit": supersub_result("8bit", 0.6, 0.7, 0.9, 0.4),
            "float": supersub_result("float", 0.5, 0.6, 0.9, 1.1)}


def make_report() -> dict:
    """A ``report.json`` of a run with 2 superclasses (2 and 3 subclasses), 10 images."""
    return {
        "data": {"dataset": "hand-made", "rows": [
            {"superclass": "a", "subclasses": 2, "train": 40, "val": 4},
            {"superclass": "b", "subclasses": 3, "train": 60, "val": 6}]},
        "networks": {
            "vanilla": {"top1": 0.5, "epochs": 2, "steps": 14, "train_images": 100},
            "generalist": {"top1": 0.8, "epochs": 2, "steps": 14, "train_images": 100},
            "specialist/a": {"epochs": 2, "train_images": 40},  # no steps: estimated
            "specialist/b": {"epochs": 2, "steps": 8, "train_images": 60}},
        "analysis": {
            "vanilla": {
                "images": 10, "top1": 0.5,
                "superclass_accuracy": {"from_top1": 0.8, "from_summed_probs": 0.7},
                "errors": {"images": 10, "errors": 5, "within": 3, "across": 2,
                           "within_share": 0.6, "across_share": 0.4,
                           "chance_within_share": 0.4},
                "per_superclass": [
                    {"superclass": "a", "images": 4, "fine_accuracy": 0.5,
                     "superclass_accuracy": 0.75, "within_errors": 1, "across_errors": 1},
                    {"superclass": "b", "images": 6, "fine_accuracy": 0.5,
                     "superclass_accuracy": 5 / 6, "within_errors": 2, "across_errors": 1}],
                "most_confused_pairs": [
                    {"true_name": "a1", "predicted_name": "a2", "true_superclass": "a",
                     "predicted_superclass": "a", "count": 2, "share": 0.5,
                     "same_superclass": True},
                    {"true_name": "b1", "predicted_name": "a1", "true_superclass": "b",
                     "predicted_superclass": "a", "count": 1, "share": 0.5,
                     "same_superclass": False}],
                "severity": {"mean_wordnet_height": None}},
            "specialists_vs_vanilla": [
                {"superclass": "a", "images": 4, "specialist": 0.75, "vanilla_restricted": 0.5,
                 "vanilla": 0.5},
                {"superclass": "b", "images": 6, "specialist": 0.5, "vanilla_restricted": 2 / 3,
                 "vanilla": 0.5}],
            "generalist_vs_vanilla": {"generalist": 0.8, "vanilla": {"from_top1": 0.8}},
            "supersub": SUPERSUB},
        "wall_seconds": 12.0,
    }


def make_run(bench, root: Path, name: str = "tiny", report: bool = True) -> Path:
    """A finished run directory ``root/name`` of the default config (8-bit deltas)."""
    config = bench.load_run_config([f"name={name}", f"output_dir={root}", "deltas.bits=[8]"])
    run_dir = root / name
    run_dir.mkdir(parents=True)
    save_config(config, run_dir / "config.yaml")
    record_settings(run_dir / "vanilla", network_settings(config, "vanilla"))
    content = make_report()
    (run_dir / "data_summary.json").write_text(json.dumps(content["data"]))
    (run_dir / "supersub").mkdir()
    for tag, result in SUPERSUB.items():
        (run_dir / "supersub" / f"{tag}.json").write_text(json.dumps(result))
    if report:
        (run_dir / "report.json").write_text(json.dumps(content))
    return run_dir


def test_table_and_number_formatting(bench):
    table = bench.text_table(["name", "value", "note"],
                               [["a", 1.5, None], ["longer", 12345, True]], align="lrl")
    lines = table.splitlines()
    assert lines[0].split() == ["name", "value", "note"]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split() == ["a", "1.500", "-"] and lines[3].split() == ["longer", "12,345",
                                                                            "yes"]
    assert lines[2].index("1.500") + len("1.500") == lines[3].index("12,345") + len("12,345")
    with pytest.raises(ValueError):
        bench.text_table(["a", "b"], [[1]])
    assert (bench.pct(0.2594), bench.pct(None), bench.points(0.033), bench.points(-0.029)) == (
        "25.9%", "-", "+3.3", "-2.9")
    assert [t for t in sorted(["4bit", "float", "2bit", "8bit"], key=bench.tag_order)] == [
        "float", "8bit", "4bit", "2bit"]
    assert bench.tag_bits("float") == 32 and bench.tag_bits("6bit") == 6


def test_write_result_is_named_by_mode_and_records_the_machine(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(sys, "argv", ["benchmarks/x.py", "--small"])
    path = bench.write_result("x", bench.mode_name(True), {"where": tmp_path, "n": 3}, 0.0)
    assert path == tmp_path / "x_small.json"
    result = json.loads(path.read_text())
    assert result["benchmark"] == "x" and result["mode"] == "small" and result["n"] == 3
    assert result["where"] == str(tmp_path) and result["command"].endswith("x.py --small")
    assert {"cpus", "platform", "tensorflow", "date", "git"} <= set(result["machine"])
    assert result["wall_seconds"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["x_small.json"]  # atomic: no leftovers
    assert bench.mode_name(False, "untrained") == "full_untrained"


def test_small_mode_is_the_quick_profile_under_its_own_name(bench):
    config = bench.load_run_config(bench.run_overrides(True, ["deltas.bits=[float,4]"]))
    assert config.name == bench.SMALL_RUN and config.data.max_per_class == 40
    assert config.deltas.bits == [None, 4]
    full = bench.load_run_config(bench.run_overrides(False))
    assert full.name == "default" and full.data.max_per_class == 0


def test_missing_parts(bench, tmp_path):
    from supersub_tf.run.completion import missing_parts

    run_dir = make_run(bench, tmp_path)
    config = bench.load_run_config(["name=tiny", f"output_dir={tmp_path}", "deltas.bits=[8]"])
    assert bench.resolve_run_dir(config) == run_dir
    assert missing_parts(run_dir, config) == []
    config.deltas.bits = [8, 4]
    assert missing_parts(run_dir, config) == ["supersub/4bit"]
    (run_dir / "report.json").unlink()
    assert missing_parts(run_dir, config) == ["report.json"]


def test_ensure_run_reads_a_finished_run_without_training(bench, tmp_path, monkeypatch):
    run_dir = make_run(bench, tmp_path)
    import supersub_tf.run as run_module

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must not be trained")

    monkeypatch.setattr(run_module, "run_pipeline", no_training)
    monkeypatch.setattr(run_module, "supersub_stage", no_training)
    info = bench.ensure_run(["name=tiny", f"output_dir={tmp_path}", "deltas.bits=[8]"])
    assert info["run_dir"] == run_dir and not info["trained"] and info["missing"] == []
    assert bench.run_summary(info)["name"] == "tiny"
    assert bench.ensure_run(run=run_dir)["report"]["wall_seconds"] == 12.0
    epochs = bench.load_run_config().train.epochs
    with pytest.raises(SystemExit, match=rf"other settings(.|\n)*vanilla \(train\.epochs: "
                                         rf"{epochs} -> {epochs + 1}"):
        bench.ensure_run(["name=tiny", f"output_dir={tmp_path}", "deltas.bits=[8]",
                          f"train.epochs={epochs + 1}"])
    # Another command writing the run: refused at once, naming the lock.
    from test_freshness import LOCK_HOLDER

    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run_dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit, match=r"in use by pid .*\.lock.*--wait"):
            bench.ensure_run(["name=tiny", f"output_dir={tmp_path}", "deltas.bits=[8]"])
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(SystemExit, match="no report.json"):
        bench.ensure_run(run=make_run(bench, tmp_path, "unfinished", report=False))


def test_question_scripts_on_a_hand_made_report(bench, tmp_path, monkeypatch, capsys):
    import specialists_vs_vanilla
    import storage_vs_accuracy
    import supersub_vs_vanilla
    import within_vs_across_errors

    report = make_report()
    errors = within_vs_across_errors.summarize(report)
    a, b = errors["per_superclass"]
    assert a["within_share"] == 0.5 and a["chance_within_share"] == 0.25
    assert b["within_share"] == pytest.approx(2 / 3) and b["chance_within_share"] == 0.5
    assert errors["overall"]["times_chance"] == pytest.approx(1.5)
    assert errors["superclasses_above_chance"] == 2 and errors["top_pairs_within"] == 1

    specialists = specialists_vs_vanilla.comparison(report, batch_size=16)
    assert specialists["wins_restricted"] == 1 and specialists["wins_unrestricted"] == 1
    assert [r["steps"] for r in specialists["rows"]] == [6, 8] and specialists["steps_estimated"]
    assert specialists["mean_specialist"] == pytest.approx((4 * 0.75 + 6 * 0.5) / 10)

    supersub = supersub_vs_vanilla.compare(report, bench.supersub_results(
        make_run(bench, tmp_path)), topk=2)
    assert [s["tag"] for s in supersub["systems"]] == ["float", "8bit"]
    assert supersub["best_hard"] == {"tag": "8bit", "top1": 0.6,
                                     "minus_vanilla": pytest.approx(0.1)}
    assert supersub["systems"][1]["stage2_accuracy_when_routed_right"] == pytest.approx(0.75)

    rows = storage_vs_accuracy.storage_rows(SUPERSUB, vanilla_top1=0.5)
    eight = next(r for r in rows if r["tag"] == "8bit")
    assert eight["bits"] == 8 and eight["a"] == 0.4 and eight["codes_units"] == 0.3
    assert eight["hard_minus_float"] == pytest.approx(0.1)

    # A whole script: read the run, print, write the JSON.
    output = tmp_path / "q1.json"
    monkeypatch.setattr(sys, "argv", ["within_vs_across_errors.py", "--run",
                                      str(tmp_path / "tiny"), "--output", str(output)])
    within_vs_across_errors.main()
    assert "60.0% of the vanilla network's 5 errors" in capsys.readouterr().out
    written = json.loads(output.read_text())
    assert written["overall"]["within_share"] == 0.6 and written["run"]["name"] == "tiny"


@pytest.mark.slow
def test_question_scripts_read_a_real_tiny_run(bench, tiny_supersub_run, tmp_path,
                                               monkeypatch, capsys):
    """The scripts against what the real writers produce (the main job on a tiny synthetic
    hierarchy), so a report field they read cannot drift from the one the run writes."""
    import storage_vs_accuracy
    import supersub_vs_vanilla
    import within_vs_across_errors

    _, run_dir = tiny_supersub_run
    report = json.loads((run_dir / "report.json").read_text())
    results = {tag: json.loads((run_dir / "supersub" / f"{tag}.json").read_text())
               for tag in ("float", "4bit")}
    outputs = {}
    for name, module in (("q1", within_vs_across_errors), ("q3", supersub_vs_vanilla),
                         ("q4", storage_vs_accuracy)):
        path = tmp_path / f"{name}.json"
        monkeypatch.setattr(sys, "argv", [f"{name}.py", "--run", str(run_dir),
                                          "--output", str(path)])
        module.main()
        outputs[name] = json.loads(path.read_text())
    capsys.readouterr()
    errors = report["analysis"]["vanilla"]["errors"]
    assert outputs["q1"]["overall"]["within_share"] == pytest.approx(errors["within_share"])
    best = outputs["q3"]["best_hard"]
    hard = {tag: r["routing"]["hard"]["top1"] for tag, r in results.items()}
    assert best["top1"] == max(hard.values()) == hard[best["tag"]]
    assert best["minus_vanilla"] == pytest.approx(
        best["top1"] - report["networks"]["vanilla"]["top1"])
    (row,) = [r for r in outputs["q4"]["rows"] if r["tag"] == "4bit"]
    assert row["a"] == pytest.approx(results["4bit"]["storage"]["a"])
    assert (tmp_path / "q4.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the figure


@pytest.mark.slow
def test_run_record_keeps_what_the_documents_cite(bench, tiny_supersub_run):
    """The committed record of a run: the numbers the README quotes, no machine paths."""
    import run_record

    _, run_dir = tiny_supersub_run
    report = json.loads((run_dir / "report.json").read_text())
    record = run_record.run_record(run_dir)
    assert record["run"] == f"runs/{run_dir.name}"
    assert record["networks"]["vanilla"]["top1"] == report["networks"]["vanilla"]["top1"]
    assert record["vanilla_errors"]["errors"] == report["analysis"]["vanilla"]["errors"]
    hard = json.loads((run_dir / "supersub" / "4bit.json").read_text())["routing"]["hard"]
    assert record["supersub"]["4bit"]["routing"]["hard"]["top1"] == hard["top1"]
    assert "per_superclass" not in record["supersub"]["4bit"]["routing"]["hard"]
    assert str(run_dir.resolve()) not in json.dumps(record)
    with pytest.raises(SystemExit, match="no report.json"):
        run_record.run_record(run_dir / "vanilla")


def fake_vanilla_base_run(root: Path, name: str, vanilla_probs, fine, epochs: int = 9,
                          seed: int = 0) -> Path:
    """A finished run of the default config (vanilla base) with two 4-bit specialists."""
    from supersub_tf.config import RunConfig
    from supersub_tf.training.predictions import save_predictions

    run = root / name
    config = RunConfig(name=name, seed=seed)
    config.train.epochs = epochs
    save_config(config, run / "config.yaml")
    (run / "vanilla").mkdir(parents=True)
    top1 = float((np.argmax(vanilla_probs, 1) == fine).mean())
    (run / "vanilla" / "metrics.json").write_text(json.dumps(
        {"top1": top1, "epochs": epochs, "train_images": 100, "train_seconds": 50.0}))
    save_predictions(run / "vanilla" / "val_predictions.npz", np.asarray(vanilla_probs,
                     np.float32), {"fine": fine})
    for superclass, images in (("a", 40), ("b", 60)):
        folder = run / "deltas" / "4bit" / superclass
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(
            {"train_images": images, "epochs": 9, "train_seconds": 20.0}))
    result = supersub_result("4bit", 0.6, 0.65, 0.9, 0.2)
    result["base"] = "vanilla"
    result["routing"]["soft"] = dict(result["routing"]["topk"], top1=0.7)
    for mode in result["routing"].values():
        mode["specialist_passes"] = 1.0
    result["vanilla_comparison"] = {"vanilla_restricted_top1": 0.7, "mean_oracle_gain": 0.2}
    (run / "supersub").mkdir()
    (run / "supersub" / "4bit.json").write_text(json.dumps(result))
    return run


def test_equal_compute_counts_image_passes_and_finds_the_matched_vanilla(bench, tmp_path):
    import equal_compute

    fine = np.array([0, 1, 1, 0])
    right = np.eye(2)[fine] * 0.6 + 0.2            # always right
    wrong = np.eye(2)[1 - fine] * 0.6 + 0.2        # always wrong
    run = fake_vanilla_base_run(tmp_path, "default", right, fine)
    other = fake_vanilla_base_run(tmp_path, "default_seed1", wrong * 0.5 + right * 0.5 + 0.01
                                  * np.eye(2)[fine], fine, seed=1)
    compute = equal_compute.system_compute(run)
    # vanilla 9 x 100 images, specialists 9 x 40 + 9 x 60: 18 epochs' worth of passes.
    assert compute["epochs_equivalent"] == 18 and compute["specialist_epochs_equivalent"] == 9
    assert compute["train_seconds"] == 90.0
    assert equal_compute.matched_vanilla(tmp_path, 18) is None
    fake_vanilla_base_run(tmp_path, "vanilla_e18", wrong, fine, epochs=18)
    assert equal_compute.matched_vanilla(tmp_path, 18) == 0.0
    row = equal_compute.system_row("default", run, tmp_path)
    assert row["minus_vanilla"]["hard"] == pytest.approx(0.6 - 1.0)
    assert row["minus_compute_matched"]["soft"] == pytest.approx(0.7 - 0.0)
    assert row["compute_matched_epochs"] == 18 and row["mean_oracle_gain"] == 0.2
    # The ensemble averages probabilities: the sure, right member wins every image.
    assert equal_compute.ensemble_top1([run, other]) == 1.0
    # A variant run of two bit widths: one row each, with its own system's numbers.
    from supersub_tf.config import load_config

    bits = fake_vanilla_base_run(tmp_path, "bits", right, fine)
    config = load_config(bits / "config.yaml", ["deltas.bits=[4,float]"])
    save_config(config, bits / "config.yaml")
    result = json.loads((bits / "supersub" / "4bit.json").read_text())
    result["routing"]["hard"]["top1"] = 0.55
    (bits / "supersub" / "float.json").write_text(json.dumps(result))
    for superclass in ("a", "b"):
        (bits / "deltas" / "float" / superclass).mkdir(parents=True)
        (bits / "deltas" / "float" / superclass / "metrics.json").write_text(
            (bits / "deltas" / "4bit" / superclass / "metrics.json").read_text())
    rows = equal_compute.variant_rows(f"deltas={bits}", tmp_path)
    assert [(r["name"], r["bits"], r["top1"]["hard"]) for r in rows] == [
        ("deltas, 4bit", "4bit", 0.6), ("deltas, float", "float", 0.55)]
    assert rows[1]["minus_compute_matched"]["hard"] == pytest.approx(0.55)


def test_heldout_selection_chooses_by_heldout_accuracy_then_cost(bench):
    import heldout_selection

    rows = [{"name": "a", "heldout_top1": 0.5, "specialist_passes": 10.0},
            {"name": "b", "heldout_top1": 0.6, "specialist_passes": 10.0},
            {"name": "c", "heldout_top1": 0.6, "specialist_passes": 1.0},
            {"name": "d", "heldout_top1": 0.6, "specialist_passes": 1.0}]
    assert heldout_selection.choose(rows)["name"] == "c"   # best, cheaper, then earlier
    assert heldout_selection.choose(rows[:2])["name"] == "b"


def test_gate_floor_drops_only_the_extra_specialists_below_the_floor(bench):
    """Floor 0 is today's gated routing; a floor keeps each unsure image's first
    specialist and drops a later one whose p(superclass) is below it."""
    import gate_floor

    from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass
    from supersub_tf.supersub.routing import routes_for

    h = Hierarchy([Superclass(name, tuple(Subclass(i, i) for i in ids)) for name, ids in
                   (("a", ("a0", "a1")), ("b", ("b0",)), ("c", ("c0",)))])
    stage_one_fine = np.array([[0.9, 0.05, 0.03, 0.02],    # confident: its own answer
                               [0.3, 0.2, 0.4, 0.1],       # unsure, p(s) .5 .4 .1
                               [0.4, 0.45, 0.1, 0.05]],    # unsure, p(s) .85 .1 .05
                              np.float32)
    sup = np.stack([stage_one_fine[:, :2].sum(1), stage_one_fine[:, 2],
                    stage_one_fine[:, 3]], 1)
    probs = {"superclass_probs": sup, "stage_one_fine": stage_one_fine,
             "subclass_probs": np.array([[0.5, 0.5, 1, 1], [0.9, 0.1, 1, 1],
                                         [0.2, 0.8, 1, 1]], np.float32)}
    plain = routes_for(sup, "gated", 2, tau=0.6, stage_one_fine=stage_one_fine)
    assert (gate_floor.floor_routes(probs, 2, 0.6, 0.0) == plain).all()
    floored = gate_floor.floor_routes(probs, 2, 0.6, 0.2)
    assert floored.tolist() == [[-1, -1], [0, 1], [0, -1]]
    point = gate_floor.score(probs, np.array([0, 0, 1]), h, 2, 0.6, 0.2)
    assert point["specialist_passes"] == pytest.approx(1.0)    # (0 + 2 + 1) / 3
    assert point["top1"] == pytest.approx(1.0)


@pytest.mark.slow
def test_heldout_selection_scores_held_out_images_of_a_real_run(bench, tmp_path, monkeypatch,
                                                                capsys):
    """A tiny main job with a held-out split: every system and routing is scored on the
    held-out images, which no network trained on; a run without them is refused."""
    import heldout_selection
    from test_training import tiny_config

    from supersub_tf.run import run_pipeline

    monkeypatch.setenv("SUPERSUB_CACHE_DIR", str(tmp_path / "cache"))
    config = tiny_config(tmp_path, epochs=1)
    config.data.test_fraction = 0.25
    config.networks = ["vanilla", "supersub"]
    config.export.enabled = False
    run_dir = run_pipeline(config, log=lambda *_: None)
    output = tmp_path / "heldout.json"
    monkeypatch.setattr(sys, "argv", ["heldout_selection.py", "--candidate", f"tiny={run_dir}",
                                      "--output", str(output)])
    heldout_selection.main()
    capsys.readouterr()
    result = json.loads(output.read_text())
    rows = result["candidates"]
    assert {r["routing"] for r in rows} == {"hard", "topk", "soft", "gated"}
    assert all(r["heldout_images"] > 0 and 0 <= r["heldout_top1"] <= 1 for r in rows)
    # the validation numbers are the main job's own, for the same system and routing
    recorded = json.loads((run_dir / "supersub" / "4bit.json").read_text())["routing"]
    assert all(r["val_top1"] == recorded[r["routing"]]["top1"] for r in rows)
    assert result["chosen"]["heldout_top1"] == max(r["heldout_top1"] for r in rows)
    # gated's threshold: the cheapest point of the chosen system's held-out curve within
    # 0.3 points of its best routing; tau 0 (vanilla's own answer) costs no pass at all
    gate = result["gate_tau"]
    curve = gate["curve"]
    assert curve[0]["tau"] == 0.0 and curve[0]["specialist_passes"] == 0.0
    close = [p for p in curve if p["top1"] >= gate["best_routing_top1"] - 0.003 - 1e-9]
    if close:
        assert gate["point"]["specialist_passes"] == min(p["specialist_passes"] for p in close)
    else:   # a tiny run's gated curve may stay below the best routing: its most accurate point
        assert gate["point"]["top1"] == max(p["top1"] for p in curve)
    assert gate["chosen"] == gate["point"]["tau"]
    config.data.test_fraction = 0.0   # a run without held-out images
    save_config(config, run_dir / "config.yaml")
    with pytest.raises(SystemExit, match="without held-out images"):
        heldout_selection.heldout_scores(run_dir)
