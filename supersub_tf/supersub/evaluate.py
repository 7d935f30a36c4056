"""Accuracy of a Super-Sub pipeline on an ordered split, under each routing mode."""

from __future__ import annotations

from typing import Any

import numpy as np

from supersub_tf.hierarchy import Hierarchy
from supersub_tf.supersub.pipeline import SuperSubPipeline
from supersub_tf.supersub.routing import ROUTINGS, combine, routes_for, specialist_passes


def collect_predictions(pipeline: SuperSubPipeline, dataset, routings=ROUTINGS, k: int = 2,
                        tau: float = 0.5
                        ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Runs the pipeline over ``(images, labels)`` batches, for several routings at once.

    Stage 1 runs once per batch, and each specialist once, on the union of the images any
    of the routings sends to it (the top-``k`` superclasses and the true one); every
    routing's answer is then combined from those outputs (:mod:`routing`).

    Returns:
        ``(fine_probs by routing [N, C], labels {"fine", "superclass", "subclass"})``,
        plus ``"superclass_probs"`` (stage 1, ``[N, S]``), ``"subclass_probs"`` (stage 2
        over the union, ``[N, C]``), for catch-all specialists ``"other_probs"``
        (``[N, S]``, see :func:`~supersub_tf.supersub.routing.combine`) and
        ``"<routing>_passes"`` (specialist passes per image, ``[]`` arrays of one value)
        under the same dict as routings.
    """
    h = pipeline.hierarchy
    parts: dict[str, list[np.ndarray]] = {"superclass_probs": [], "subclass_probs": [],
                                          "other_probs": []}
    labels: dict[str, list[np.ndarray]] = {}
    for images, batch_labels in dataset:
        sup_probs, shared = pipeline.stage_one(images)
        union = np.concatenate([routes_for(sup_probs, "topk", k),
                                batch_labels["superclass"].numpy().reshape(-1, 1)], axis=1)
        parts["superclass_probs"].append(sup_probs)
        sub_given, other = pipeline.routed_subclass_probs(images, union, shared)
        parts["subclass_probs"].append(sub_given)
        if other is not None:
            parts["other_probs"].append(other)
        for key, value in batch_labels.items():
            labels.setdefault(key, []).append(value.numpy())
    out = {key: np.concatenate(v) for key, v in parts.items() if v}
    labels = {key: np.concatenate(v) for key, v in labels.items()}
    for routing in routings:
        routes = routes_for(out["superclass_probs"], routing, k, labels["superclass"], tau)
        out[routing] = combine(out["superclass_probs"], out["subclass_probs"], routes, h,
                               weighted=routing != "oracle", other_probs=out.get("other_probs"))
        out[f"{routing}_passes"] = np.asarray(specialist_passes(routes))
    return out, labels


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
