"""Accuracy of a Super-Sub pipeline on an ordered split, under each routing mode."""

from __future__ import annotations

from typing import Any

import numpy as np

from supersub_tf.hierarchy import Hierarchy
from supersub_tf.supersub.pipeline import ROUTINGS, SuperSubPipeline


def collect_predictions(pipeline: SuperSubPipeline, dataset, routings=ROUTINGS, k: int = 2
                        ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Runs the pipeline over ``(images, labels)`` batches.

    Returns:
        ``(fine_probs by routing [N, C], labels {"fine", "superclass", "subclass"})``,
        plus ``"superclass_probs"`` (stage 1, ``[N, S]``) under the same dict as routings.
    """
    probs: dict[str, list[np.ndarray]] = {r: [] for r in routings}
    probs["superclass_probs"] = []
    labels: dict[str, list[np.ndarray]] = {}
    for images, batch_labels in dataset:
        true_super = batch_labels["superclass"].numpy()
        for routing in routings:
            pred = pipeline.predict(images, routing, k=k, true_superclass=true_super)
            probs[routing].append(pred.fine_probs)
        probs["superclass_probs"].append(pred.superclass_probs)
        for key, value in batch_labels.items():
            labels.setdefault(key, []).append(value.numpy())
    return ({r: np.concatenate(v) for r, v in probs.items()},
            {key: np.concatenate(v) for key, v in labels.items()})


def pipeline_metrics(fine_probs: np.ndarray, superclass_probs: np.ndarray,
                     labels: dict[str, np.ndarray], hierarchy: Hierarchy) -> dict[str, Any]:
    """Top-1, per-superclass accuracy and where the errors come from, for one routing.

    ``errors_from_stage1`` is the share of wrong fine predictions whose stage-1
    superclass (the generalist's top choice) was already wrong: mistakes the
    specialists could not have fixed under hard routing.
    """
    fine = fine_probs.argmax(1)
    right = fine == labels["fine"]
    stage1_wrong = superclass_probs.argmax(1) != labels["superclass"]
    errors = int((~right).sum())
    per_superclass = []
    for s, name in enumerate(hierarchy.superclass_names):
        mask = labels["superclass"] == s
        per_superclass.append({"superclass": name, "images": int(mask.sum()),
                               "top1": float(right[mask].mean()) if mask.any() else None})
    return {
        "top1": float(right.mean()),
        "stage1_superclass_accuracy": float((~stage1_wrong).mean()),
        "errors": errors,
        "errors_from_stage1": float((~right & stage1_wrong).sum() / errors) if errors else 0.0,
        "per_superclass": per_superclass,
    }
