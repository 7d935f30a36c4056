"""The analysis stage of a run: from saved validation predictions to figures and JSON.

Reads what :mod:`supersub_tf.training.networks` left in a run directory and answers
the paper's first questions:

* where the vanilla network's mistakes fall (within vs across superclasses, against
  chance), its confusions, per-superclass accuracy and mistake severity;
* whether specialists, given the true superclass, beat the vanilla network on their
  own superclass's images (restricted to those subclasses, and unrestricted);
* how the generalist's superclass accuracy compares with the vanilla network's.

Writes ``analysis/*.json`` and ``plots/*.png``; needs no retraining (``python -m
supersub_tf analyze <run>`` reruns it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from supersub_tf.analysis.metrics import analyze, restricted_accuracy, superclass_accuracy
from supersub_tf.analysis.plots import (plot_confusion, plot_misclassified,
                                        plot_specialists_vs_vanilla, plot_training_curves)
from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import DataConfig
from supersub_tf.errors import DataError, SuperSubError
from supersub_tf.hierarchy import Hierarchy
from supersub_tf.run.layout import TOP_NETWORKS, RunLayout
from supersub_tf.training.history import HISTORY
from supersub_tf.training.predictions import PREDICTIONS, load_predictions



def load_wordnet():
    """WordNet for mistake severity, or None when neither source is installed."""
    from supersub_tf.wordnet import WordNet

    try:
        return WordNet.load("auto")
    except SuperSubError:
        return None


def specialists_vs_vanilla(run_dir: Path, hierarchy: Hierarchy, vanilla_probs: np.ndarray,
                           vanilla_labels: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per superclass: each specialist (true superclass given) against the vanilla network
    on the same validation images, restricted to that superclass's subclasses and not."""
    rows = []
    for k, name in enumerate(hierarchy.superclass_names):
        path = RunLayout(run_dir).specialist(name) / PREDICTIONS
        if not path.exists():
            continue
        probs, labels = load_predictions(path)
        mask = vanilla_labels["superclass"] == k
        if not np.array_equal(vanilla_labels["fine"][mask], labels["fine"]):
            raise DataError(f"{path}: its images are not the vanilla network's {name} "
                            "validation images in the same order; retrain or re-evaluate")
        vanilla_fine = vanilla_probs[mask].argmax(1)
        rows.append({
            "superclass": name, "images": int(mask.sum()),
            "specialist": float(np.mean(probs.argmax(1) == labels["subclass"])),
            "vanilla_restricted": restricted_accuracy(vanilla_probs, vanilla_labels["fine"],
                                                      hierarchy, k),
            "vanilla": float(np.mean(vanilla_fine == labels["fine"])),
        })
    return rows


def misclassified_images(data_config: DataConfig, source, indices: np.ndarray) -> list:
    """The validation images at ``indices`` (uint8, as the networks saw them)."""
    from supersub_tf.data import load_dataset
    from supersub_tf.data.pipeline import denormalize

    wanted, found, offset = set(int(i) for i in indices), {}, 0
    val = load_dataset(data_config, "val", training=False, batch_size=256, source=source)
    for images, _ in val.dataset.as_numpy_iterator():
        for j in range(len(images)):
            if offset + j in wanted:
                found[offset + j] = denormalize(images[j], data_config.normalization)
        offset += len(images)
        if len(found) == len(wanted):
            break
    return [found[int(i)] for i in indices]


def analyze_networks(run_dir: str | Path, hierarchy: Hierarchy, data_config: DataConfig,
                source=None, misclassified: int = 32, seed: int = 0, log=print) -> dict:
    """The analysis of a run directory's trained networks, from their saved predictions
    (the main job's report is :func:`supersub_tf.run.analyze_run`); returns the summary it
    also writes.

    Args:
        run_dir: The run directory with trained networks.
        hierarchy: The run's hierarchy.
        data_config: The run's data settings (to show misclassified images).
        source: The dataset source, to fetch misclassified images; None skips them.
        misclassified: How many misclassified images to show.
        seed: Which misclassified images are drawn.
        log: Where progress lines go.
    """
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    out, plots = layout.analysis, layout.plots
    summary: dict[str, Any] = {"figures": {}}
    figures = summary["figures"]
    vanilla_path = layout.vanilla / PREDICTIONS
    if vanilla_path.exists():
        probs, labels = load_predictions(vanilla_path)
        result = analyze(probs, labels["fine"], hierarchy, load_wordnet())
        atomic_write_text(out / "vanilla.json", json.dumps(result, indent=1) + "\n")
        summary["vanilla"] = {key: result[key] for key in
                              ("images", "top1", "top5", "superclass_accuracy", "errors",
                               "per_superclass", "most_confused_pairs", "severity")}
        sizes = [len(s.subclasses) for s in hierarchy.superclasses]
        figures["confusion_fine"] = plot_confusion(
            np.array(result["confusion"]), hierarchy.class_names, plots / "confusion_fine.png",
            "Vanilla network: fine confusion (rows normalised)", block_sizes=sizes,
            block_names=hierarchy.superclass_names).name
        figures["confusion_superclass"] = plot_confusion(
            np.array(result["superclass_confusion"]), hierarchy.superclass_names,
            plots / "confusion_superclass.png",
            "Vanilla network: confusion aggregated to superclasses").name
        errors = np.flatnonzero(probs.argmax(1) != labels["fine"])
        if source is not None and len(errors):
            rng = np.random.default_rng(seed)
            chosen = np.sort(rng.choice(errors, min(misclassified, len(errors)), replace=False))
            preds = probs.argmax(1)
            figures["misclassified"] = plot_misclassified(
                misclassified_images(data_config, source, chosen),
                [hierarchy.class_names[labels["fine"][i]] for i in chosen],
                [hierarchy.class_names[preds[i]] for i in chosen],
                plots / "misclassified.png", title="Vanilla network: misclassified (true -> "
                                                   "predicted)").name
        rows = specialists_vs_vanilla(run_dir, hierarchy, probs, labels)
        if rows:
            summary["specialists_vs_vanilla"] = rows
            figures["specialists_vs_vanilla"] = plot_specialists_vs_vanilla(
                rows, plots / "specialists_vs_vanilla.png").name
        generalist_path = layout.generalist / PREDICTIONS
        if generalist_path.exists():
            g_probs, g_labels = load_predictions(generalist_path)
            summary["generalist_vs_vanilla"] = {
                "generalist": float(np.mean(g_probs.argmax(1) == g_labels["superclass"])),
                "vanilla": superclass_accuracy(probs, labels["fine"], hierarchy)}
    histories = {name: layout.network(name) / HISTORY for name in TOP_NETWORKS
                 if (layout.network(name) / HISTORY).exists()}
    if histories:
        figures["training_curves"] = plot_training_curves(
            histories, plots / "training_curves.png").name
    specialist_histories = {p.parent.name: p for p in
                            sorted(layout.specialists.glob("*/history.csv"))}
    if specialist_histories:
        figures["specialist_curves"] = plot_training_curves(
            specialist_histories, plots / "specialist_curves.png",
            title="Specialists: training curves").name
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    log(f"[analysis] {out / 'summary.json'}")
    return summary
