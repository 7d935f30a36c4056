"""The budget crossover study: at which training budget, if any, does Super-Sub pay off?

Every point trains the base network (the vanilla network; with ``deltas.base:
generalist`` also the generalist) and the delta specialists (one bit width) with the
base run config, changing only the epochs: ``train.epochs = e`` for the networks, and
the delta specialists' fine-tuning epochs scaled by the same factor as the base
config's. Each point reports the vanilla network's top-1, stage 1's superclass accuracy,
the pipeline's top-1 under every routing (with specialist passes per image), the share
of its errors made in stage 1, and Super-Sub minus two vanilla networks: the one of the
point (the paper's comparison) and the **compute-matched** one, trained from scratch for
as many image passes as the point's whole system (``e`` + the specialists' epochs, + the
generalist's ``e`` when it is the base): the folder ``e<m>/vanilla`` of that budget ``m``,
shared with a budget point of ``m`` epochs when there is one. The study writes a table
and a figure of both differences against the budget and against stage 1's accuracy.

Run folders are not kept from one machine to the next, so each finished point is also
written as one small JSON record under ``results_dir`` (meant to be committed): a rerun
skips a point whose record holds the same settings, and trains the others, so the study
resumes from what is committed. Within one machine the points' run folders resume too
(the main job's stages, with the same freshness check and lock).

Layout::

    <output_dir>/<name>/e<epochs>/        one run directory per budget (see supersub_tf.run)
    <results_dir>/<name>/e<epochs>.json   one record per finished point
    <results_dir>/<name>/budget.json, budget.md, supersub_minus_vanilla.png
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import (
    RunConfig, bits_tag, config_to_dict, load_study_config, parse_bits, save_config)
from supersub_tf.errors import ConfigError
from supersub_tf.run.freshness import delta_settings, ensure_fresh, network_settings
from supersub_tf.run.layout import METRICS, RunLayout
from supersub_tf.run.lock import run_lock
from supersub_tf.supersub.routing import ALL_ROUTINGS

DEFAULT_BUDGET_CONFIG = "budget"  # built-in (supersub_tf/configs/budget.yaml)


@dataclasses.dataclass
class BudgetConfig:
    """The budget study (``supersub_tf/configs/budget.yaml`` spells out these defaults).

    Attributes:
        name: The study's folder under ``output_dir`` and ``results_dir``.
        output_dir: Where the points' run folders go.
        results_dir: Where the per-point records and the study's table and figure go.
        base: The run config every point starts from (a mapping, or in YAML a path);
            its ``name``, ``output_dir``, ``networks``, ``deltas.bits``, ``export`` and
            the epochs are set by the study.
        epochs: The budgets, as epochs of the vanilla network and the generalist; at
            least two, best spanning 8x or more.
        bits: Delta bit width of the specialists (``float`` for float32 deltas).
    """

    name: str = "budget"
    output_dir: str = "runs"
    results_dir: str = "benchmarks/results"
    base: RunConfig = dataclasses.field(default_factory=RunConfig)
    epochs: list = dataclasses.field(default_factory=lambda: [1, 2, 4, 9])
    bits: Any = 4

    def __post_init__(self) -> None:
        if len(self.epochs) < 2 or len(set(self.epochs)) != len(self.epochs):
            raise ConfigError(f"epochs: a budget study needs at least 2 distinct budgets, "
                              f"got {self.epochs}")
        if any(not isinstance(e, int) or isinstance(e, bool) or e < 1 for e in self.epochs):
            raise ConfigError(f"epochs: every budget must be a positive integer, got "
                              f"{self.epochs}")
        self.epochs = sorted(self.epochs)
        self.bits = parse_bits(self.bits, "bits")
        if not self.name or "/" in self.name:
            raise ConfigError(f"name must be a folder name, got {self.name!r}")


#: The quick profile (``budget --quick``): the main job's quick data and network, three
#: budgets; a few minutes on two cores.
BUDGET_QUICK_PROFILE = [
    "name=budget_quick", "results_dir=runs/budget_quick_results",
    "base.data.max_per_class=20", "base.train.model=resnet8", "base.train.width=0.25",
    "base.train.batch_size=32", "base.train.warmup_epochs=0", "epochs=[1, 2, 4]"]


def load_budget_config(path: str | os.PathLike | None = None,
                       overrides: list[str] | None = None) -> BudgetConfig:
    """Reads a budget YAML (or the defaults) with overrides, as the scaling study's."""
    return load_study_config(BudgetConfig, path, overrides)


def delta_epochs(base: RunConfig, epochs: int) -> int:
    """The delta specialists' epochs at a budget: the base's ratio to its train epochs."""
    base_deltas = base.deltas.epochs or base.train.specialist_epochs or base.train.epochs
    return max(1, round(epochs * base_deltas / base.train.epochs))


def point_config(config: BudgetConfig, epochs: int) -> RunConfig:
    """The run config of one budget (``<output_dir>/<name>/e<epochs>``)."""
    base = config.base
    networks = ["vanilla", *(["generalist"] if base.deltas.base == "generalist" else []),
                "supersub"]
    return dataclasses.replace(
        base, name=f"e{epochs}", output_dir=str(Path(config.output_dir) / config.name),
        networks=networks,
        train=dataclasses.replace(base.train, epochs=epochs, specialist_epochs=0),
        deltas=dataclasses.replace(base.deltas, bits=[config.bits],
                                   epochs=delta_epochs(base, epochs)),
        export=dataclasses.replace(base.export, enabled=False))


def matched_epochs(run: RunConfig) -> int:
    """Epochs of the vanilla network with a point's training compute: its networks'
    epochs (the generalist's too when it is the base) plus the delta specialists' (each
    sees its superclass's images, together every training image once per epoch)."""
    networks = run.train.epochs * (2 if run.deltas.base == "generalist" else 1)
    return networks + run.deltas.epochs


def matched_config(config: BudgetConfig, run: RunConfig) -> RunConfig:
    """The compute-matched vanilla network of a point: vanilla only, in the folder of
    the budget with that many epochs (``e<m>``)."""
    return dataclasses.replace(point_config(config, matched_epochs(run)), networks=["vanilla"])


def point_settings(run: RunConfig, matched: RunConfig | None = None) -> dict[str, Any]:
    """What a point's numbers depend on (its record is reused only when these match)."""
    return {"vanilla": network_settings(run, "vanilla"),
            "deltas": delta_settings(run, run.deltas.bits[0]),
            "gate_tau": run.deltas.gate_tau, "topk": run.deltas.topk,
            **({"matched_vanilla": network_settings(matched, "vanilla")} if matched else {})}


def results_folder(config: BudgetConfig) -> Path:
    return Path(config.results_dir) / config.name


def point_record(run: RunConfig, matched: RunConfig) -> dict[str, Any]:
    """The numbers of one trained point and its compute-matched vanilla network, read
    from their run folders."""
    from supersub_tf.run import run_dir_of

    layout = RunLayout(run_dir_of(run))
    vanilla = json.loads(layout.metrics("vanilla").read_text())
    reference = json.loads(RunLayout(run_dir_of(matched)).metrics("vanilla").read_text())
    generalist_path = layout.metrics("generalist")
    generalist = (json.loads(generalist_path.read_text())
                  if run.deltas.base == "generalist" and generalist_path.is_file() else None)
    tag = bits_tag(run.deltas.bits[0])
    supersub = json.loads(layout.supersub_result(tag).read_text())
    routing = {name: {"top1": m["top1"], "specialist_passes": m.get("specialist_passes"),
                      "minus_vanilla": m["top1"] - vanilla["top1"],
                      "minus_compute_matched": m["top1"] - reference["top1"]}
               for name, m in supersub["routing"].items() if name in ALL_ROUTINGS}
    deltas = sorted(layout.deltas(tag).glob(f"*/{METRICS}"))
    comparison = supersub.get("vanilla_comparison", {})
    return {
        "epochs": run.train.epochs, "delta_epochs": run.deltas.epochs, "bits": tag,
        "base": run.deltas.base,
        "vanilla_top1": vanilla["top1"],
        "generalist_top1": generalist and generalist["top1"],
        "stage1_superclass_accuracy": supersub["routing"]["hard"]["stage1_superclass_accuracy"],
        "compute_matched_epochs": matched.train.epochs,
        "compute_matched_vanilla_top1": reference["top1"],
        "vanilla_restricted_top1": comparison.get("vanilla_restricted_top1"),
        "mean_oracle_gain": comparison.get("mean_oracle_gain"),
        "vanilla_final_train_accuracy": vanilla["final_train_accuracy"],
        "routing": routing,
        "errors_from_stage1": supersub["routing"]["hard"]["errors_from_stage1"],
        "gated_curve": supersub.get("gated_curve", []),
        "train_seconds": {
            "vanilla": vanilla["train_seconds"],
            **({"generalist": generalist["train_seconds"]} if generalist else {}),
            "delta_specialists": round(sum(json.loads(p.read_text())["train_seconds"]
                                           for p in deltas), 1)},
        "compute_matched_train_seconds": reference["train_seconds"],
        "storage_a": supersub["storage"]["a"],
        "settings": point_settings(run, matched),
    }


def _reusable(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    # JSON round trip: the record's settings went through json, so compare the same way.
    return record if record.get("settings") == json.loads(json.dumps(settings)) else None


def run_budget(config: BudgetConfig, log=print, retrain: bool = False) -> Path:
    """Trains (or reads from records) every budget point and writes the study.

    Returns:
        The results folder (``budget.json``, ``budget.md``, the figure).
    """
    study = Path(config.output_dir) / config.name
    with run_lock(study):
        return _run_study(config, study, log, retrain)


def _run_study(config: BudgetConfig, study: Path, log, retrain: bool) -> Path:
    from supersub_tf.analysis.budget_plots import plot_budget, write_budget_report
    from supersub_tf.data import create_source
    from supersub_tf.run import run_dir_of, supersub_stage, train_stage

    start = time.time()
    save_config(config, study / "budget_config.yaml")
    out = results_folder(config)
    runs = [point_config(config, e) for e in config.epochs]
    records, source = [], None
    for run in runs:
        path = out / f"{run.name}.json"
        matched = matched_config(config, run)
        record = None if retrain else _reusable(path, point_settings(run, matched))
        if record is not None:
            log(f"[budget] {run.name}: from {path}")
        else:
            ensure_fresh(run, run_dir_of(run), retrain, log)
            ensure_fresh(matched, run_dir_of(matched), retrain, log)
            source = source or create_source(config.base.data)
            networks = [n for n in run.networks if n != "supersub"]
            log(f"[budget] {run.name}: training {', '.join(networks)} and "
                f"{bits_tag(config.bits)} delta specialists ({run.train.epochs} epochs, "
                f"deltas {run.deltas.epochs}); compute-matched vanilla: "
                f"{matched.train.epochs} epochs ({matched.name}/vanilla)")
            train_stage(run, networks, source, log)
            supersub_stage(run, source, log)
            train_stage(matched, ["vanilla"], source, log)
            record = point_record(run, matched)
            atomic_write_text(path, json.dumps(record, indent=2) + "\n")  # commit this file
        records.append(record)
    result = {"name": config.name, "config": config_to_dict(config),
              "dataset": config.base.data.dataset, "preset": config.base.data.preset,
              "model": config.base.train.model, "width": config.base.train.width,
              "image_size": config.base.data.image_size, "points": records,
              "crossover": crossover(records),
              "wall_seconds_this_invocation": round(time.time() - start, 1),
              "train_seconds_all_points": round(sum(sum(r["train_seconds"].values())
                                                    for r in records), 1)}
    atomic_write_text(out / "budget.json", json.dumps(result, indent=2) + "\n")
    plot_budget(records, out / "supersub_minus_vanilla.png")
    report = write_budget_report(result, out / "budget.md")
    log(f"[budget] {report}")
    return out


def crossover(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per routing, against the point's vanilla network and against the compute-matched
    one: the budgets where Super-Sub wins, and where the sign of the difference changes
    between two points (interpolated in log2 epochs)."""
    import math

    found = {}
    for routing, against in [(r, a) for r in ("hard", "topk", "soft", "gated")
                             for a in ("minus_vanilla", "minus_compute_matched")]:
        points = [(r["epochs"], r["routing"][routing][against]) for r in records
                  if routing in r["routing"] and against in r["routing"][routing]]
        if not points:
            continue
        wins = [e for e, d in points if d > 0]
        crossings = []
        for (e0, d0), (e1, d1) in zip(points, points[1:]):
            if (d0 <= 0 < d1) or (d1 <= 0 < d0):
                t = d0 / (d0 - d1)
                crossings.append(round(2 ** (math.log2(e0) + t * (math.log2(e1) -
                                                                   math.log2(e0))), 2))
        key = routing if against == "minus_vanilla" else f"{routing} vs compute-matched"
        found[key] = {"budgets_won": wins, "crossings_at_epochs": crossings,
                      "best_difference": max(d for _, d in points)}
    return found


__all__ = ["BUDGET_QUICK_PROFILE", "BudgetConfig", "crossover", "delta_epochs",
           "load_budget_config", "matched_epochs", "point_config", "run_budget"]
