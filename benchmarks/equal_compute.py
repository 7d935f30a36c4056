"""Does Super-Sub beat a vanilla network given the same training compute?

The paper compares Super-Sub with the vanilla network it was built from. A reviewer asks
more: Super-Sub trains its specialists on top of that network, and runs two networks per
image, so it must also beat

* **the compute-matched vanilla network**: the same backbone and recipe trained from
  scratch for as many training-image passes as the whole Super-Sub system used (the
  vanilla network's epochs + the generalist's, if any + every specialist's epochs times
  its images; with the default's 9 + 9 that is 18 epochs);
* **an ensemble of vanilla networks** of the same training compute and the same forward
  passes per image as hard routing: the run's vanilla network and one trained from
  another seed (``seed + 1``), probabilities averaged;
* **a wider vanilla network** of about the Super-Sub system's stored bytes (optional,
  ``--wider WIDTH``).

It reads the main job's run (``--run``, default ``runs/default``), trains or reuses
(under ``--runs``, default ``runs``) the compute-matched vanilla network
(``vanilla_e<epochs>``), the second seed's run (``default_seed<seed>``: its vanilla
network is the ensemble's second member, its Super-Sub the seed-to-seed spread; trained
as a whole main job with ``--seed-runs``), and reads any variant runs given with
``--variant NAME=RUN_DIR`` (other specialist epochs, distillation, float deltas, the
paper's generalist design, each a finished main job; a run of several bit widths gives a
row per bit width). Each row: top-1 under every
routing, training seconds, and the difference to the vanilla network of its run and to
the compute-matched one.

    python benchmarks/equal_compute.py --run runs/default \\
        --variant "vanilla base, 3 epochs, lr 0.02=runs/eq_e3"

Prints the tables and writes ``benchmarks/results/equal_compute_full.json``; its
``"default"`` object holds the default system's headline numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import common
from supersub_tf.config import load_config
from supersub_tf.run.layout import RunLayout
from supersub_tf.training.predictions import PREDICTIONS, load_predictions

SCRIPT = "equal_compute"
PAPER_GAIN = 0.033
ROUTINGS = ("hard", "topk", "soft", "gated", "oracle")


def system_compute(run_dir: Path, tag: str | None = None) -> dict[str, Any]:
    """The training compute of a run's system of bit width ``tag`` (default: the first),
    as the main job records it (:func:`supersub_tf.run.training_compute`: epochs of the
    training set and seconds)."""
    from supersub_tf.config import bits_tag
    from supersub_tf.run import training_compute

    config = load_config(RunLayout(run_dir).config)
    return training_compute(run_dir, config.deltas.base, tag or bits_tag(config.deltas.bits[0]))


def train_vanilla(runs: Path, name: str, overrides: list[str]) -> Path:
    """A vanilla network of the default config with ``overrides`` (trained unless its
    folder is finished); returns its run directory."""
    from supersub_tf.run import train_stage

    config = common.load_run_config([*overrides, f"name={name}", f"output_dir={runs}",
                                     "networks=[vanilla]"])
    with contextlib.chdir(common.REPO):
        train_stage(config, "vanilla")
    return runs / name


def vanilla_top1(run_dir: Path) -> float:
    return json.loads(RunLayout(run_dir).metrics("vanilla").read_text())["top1"]


def ensemble_top1(run_dirs: list[Path]) -> float:
    """Top-1 of the vanilla networks of ``run_dirs`` with their probabilities averaged."""
    probs, labels = zip(*(load_predictions(RunLayout(d).vanilla / PREDICTIONS) for d in run_dirs))
    for other in labels[1:]:
        if not np.array_equal(other["fine"], labels[0]["fine"]):
            raise SystemExit("the ensemble's vanilla networks were evaluated on other images")
    mean = np.mean(probs, axis=0)
    return float((mean.argmax(1) == labels[0]["fine"]).mean())


def matched_vanilla(runs: Path, epochs: int) -> float | None:
    """Top-1 of a finished vanilla network of the default recipe trained ``epochs``
    epochs (``runs/vanilla_e<epochs>`` or the budget study's ``runs/budget/e<epochs>``),
    or None: rows whose compute has no such network get no compute-matched difference."""
    for folder in (runs / f"vanilla_e{epochs}", runs / "budget" / f"e{epochs}"):
        if RunLayout(folder).metrics("vanilla").is_file():
            return vanilla_top1(folder)
    return None


def system_row(name: str, run_dir: Path, runs: Path, tag: str | None = None) -> dict[str, Any]:
    """One Super-Sub system (bit width ``tag`` of a finished run, default its first) as a
    table row, with the vanilla network of its run and, where one was trained, the vanilla
    network of its own training compute."""
    config = load_config(RunLayout(run_dir).config)
    from supersub_tf.config import bits_tag

    results = common.supersub_results(run_dir)
    tag = tag or bits_tag(config.deltas.bits[0])
    result = results[tag]
    own_vanilla = vanilla_top1(run_dir)
    compute = system_compute(run_dir, tag)
    matched_epochs = round(compute["epochs_equivalent"])
    matched_top1 = matched_vanilla(runs, matched_epochs)
    comparison = result.get("vanilla_comparison", {})
    row = {"name": name, "run": str(run_dir), "bits": tag, "base": result.get("base", "generalist"),
           "specialist_epochs": config.deltas.epochs, "learning_rate": config.deltas.learning_rate,
           "distill": config.deltas.distill, "seed": config.seed,
           "vanilla_top1": own_vanilla, "compute": compute,
           "compute_matched_epochs": matched_epochs,
           "compute_matched_vanilla_top1": matched_top1,
           "top1": {r: result["routing"][r]["top1"] for r in ROUTINGS if r in result["routing"]},
           "specialist_passes": {r: result["routing"][r]["specialist_passes"]
                                 for r in ROUTINGS if r in result["routing"]},
           "stage1_superclass_accuracy": result["routing"]["hard"]["stage1_superclass_accuracy"],
           "errors_from_stage1": result["routing"]["hard"]["errors_from_stage1"],
           "vanilla_restricted_top1": comparison.get("vanilla_restricted_top1"),
           "mean_oracle_gain": comparison.get("mean_oracle_gain"),
           "mixed_with_vanilla": comparison.get("mixed_with_vanilla"),
           "generalist_routing": comparison.get("generalist_routing")}
    row["minus_vanilla"] = {r: v - own_vanilla for r, v in row["top1"].items()}
    if matched_top1 is not None:  # the vanilla network of the row's own training compute
        row["minus_compute_matched"] = {r: v - matched_top1 for r, v in row["top1"].items()}
    return row


def variant_rows(spec: str, runs: Path) -> list[dict[str, Any]]:
    """The rows of ``--variant NAME=RUN_DIR``: one per bit width the run trained, named
    ``NAME, <bits>`` when there are several."""
    from supersub_tf.config import bits_tag

    name, _, path = spec.partition("=")
    run_dir = Path(path).resolve()
    tags = [bits_tag(b) for b in load_config(RunLayout(run_dir).config).deltas.bits]
    return [system_row(name if len(tags) == 1 else f"{name}, {tag}", run_dir, runs, tag)
            for tag in tags]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/default", help="the default system's run")
    parser.add_argument("--runs", default="runs", help="where the baselines' runs go")
    parser.add_argument("--seed-runs", type=int, default=1,
                        help="other seeds of the default run to train and read (default 1)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=RUN_DIR",
                        help="a finished run of another design to put in the table")
    parser.add_argument("--wider", type=float, default=0.0,
                        help="also train a vanilla network of this width (0: no)")
    parser.add_argument("--output", help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args()
    started = time.perf_counter()
    run_dir, runs = Path(args.run).resolve(), Path(args.runs).resolve()
    config = load_config(RunLayout(run_dir).config)
    compute = system_compute(run_dir)
    epochs = round(compute["epochs_equivalent"])
    matched_dir = train_vanilla(runs, f"vanilla_e{epochs}", [f"train.epochs={epochs}"])
    matched = vanilla_top1(matched_dir)
    matched_seconds = json.loads(RunLayout(matched_dir).metrics("vanilla").read_text())[
        "train_seconds"]
    seed_dirs = []
    for k in range(1, args.seed_runs + 1):
        seed_dir = runs / f"{config.name}_seed{config.seed + k}"
        overrides = [f"seed={config.seed + k}", f"name={seed_dir.name}", f"output_dir={runs}"]
        if not RunLayout(seed_dir).report_json.is_file():  # the whole main job, another seed
            common.ensure_run(overrides, wait=True)
        seed_dirs.append(seed_dir)
    ensemble = ensemble_top1([run_dir, *seed_dirs[:1]]) if seed_dirs else None
    wider = None
    if args.wider:
        wider_dir = train_vanilla(runs, f"vanilla_w{args.wider:g}", [f"train.width={args.wider}"])
        wider_metrics = json.loads(RunLayout(wider_dir).metrics("vanilla").read_text())
        wider = {"width": args.wider, "top1": wider_metrics["top1"],
                 "parameters": wider_metrics["parameters"],
                 "train_seconds": wider_metrics["train_seconds"]}

    default = system_row("default", run_dir, runs)
    seeds = [system_row(f"default, seed {config.seed + k + 1}", d, runs)
             for k, d in enumerate(seed_dirs)]
    variants = []
    for spec in args.variant:
        variants += variant_rows(spec, runs)

    rows = [default, *seeds, *variants]
    print_rows = []
    for row in rows:
        for r in ("hard", "soft", "gated"):
            if r in row["top1"]:
                against = row.get("minus_compute_matched", {}).get(r)
                print_rows.append([row["name"], r, common.pct(row["top1"][r]),
                                   common.points(row["minus_vanilla"][r]),
                                   f"{common.points(against)} (e{row['compute_matched_epochs']})",
                                   f"{row['specialist_passes'][r]:.2f}",
                                   f"{row['compute']['train_seconds']:.0f}"])
    common.print_table(
        "Super-Sub against the vanilla network of its run and the vanilla network of its "
        "training compute (e<epochs>; '-' where none was trained)",
        ["system", "routing", "top-1", "- vanilla", "- matched", "passes", "train s"],
        print_rows)
    hard_values = [r["top1"]["hard"] for r in [default, *seeds]]
    soft_values = [r["top1"]["soft"] for r in [default, *seeds] if "soft" in r["top1"]]
    baselines = [["vanilla network (seed %d)" % config.seed, common.pct(default["vanilla_top1"])],
                 [f"compute-matched vanilla ({epochs} epochs)", common.pct(matched)]]
    if ensemble is not None:
        baselines.append(["ensemble of 2 vanilla networks", common.pct(ensemble)])
    if wider:
        baselines.append([f"vanilla x{wider['width']:g} ({wider['parameters']:,} parameters)",
                          common.pct(wider["top1"])])
    common.print_table("Baselines", ["network", "top-1"], baselines)
    # The differences are those of inference routings: oracle is told the true superclass,
    # so it is no system to compare with a vanilla network (its own field: oracle_top1).
    def routed(values):
        return {r: v for r, v in values.items() if r != "oracle"} if values else values

    payload = {
        "default": {
            "vanilla_top1": default["vanilla_top1"],
            "compute_matched_vanilla_top1": matched,
            "compute_matched_epochs": epochs,
            "compute_matched_train_seconds": matched_seconds,
            "vanilla_ensemble_top1": ensemble,
            "oracle_top1": default["top1"]["oracle"],
            "vanilla_restricted_top1": default["vanilla_restricted_top1"],
            "mean_oracle_gain": default["mean_oracle_gain"],
            "supersub_top1": routed(default["top1"]),
            "minus_vanilla": routed(default["minus_vanilla"]),
            "minus_compute_matched": routed(default["minus_compute_matched"]),
            "minus_ensemble": ({r: v - ensemble for r, v in routed(default["top1"]).items()}
                               if ensemble is not None else None),
            "train_seconds": default["compute"]["train_seconds"],
            "run_wall_seconds": _run_wall_seconds(run_dir),
            "seed_spread": {"hard": _spread(hard_values), "soft": _spread(soft_values)},
            "command": f"python -m supersub_tf run (run folder {run_dir.name})",
        },
        "paper_gain": PAPER_GAIN,
        "wider_vanilla": wider,
        "rows": rows,
    }
    path = common.write_result(SCRIPT, "full", payload, started, args.output)
    print(f"[equal_compute] {path}")


def _run_wall_seconds(run_dir: Path) -> float | None:
    path = run_dir / "wall_time.json"
    return sum(json.loads(path.read_text())["seconds"]) if path.is_file() else None


def _spread(values: list[float]) -> dict[str, Any]:
    return {"values": values, "mean": float(np.mean(values)) if values else None,
            "range": float(np.ptp(values)) if values else None}


if __name__ == "__main__":
    main()
