"""Accuracy of a Super-Sub pipeline on an ordered split, under each routing mode."""

from __future__ import annotations

from typing import Any

import numpy as np

from supersub_tf.hierarchy import Hierarchy
from supersub_tf.progress import progress
from supersub_tf.supersub.pipeline import SuperSubPipeline
from supersub_tf.supersub.routing import (
    ROUTINGS, combine, routes_for, routing_mode, specialist_passes)


def collect_predictions(pipeline: SuperSubPipeline, dataset, routings=ROUTINGS, k: int = 2,
                        tau: float = 0.5
                        ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Runs the pipeline over ``(images, labels)`` batches, for several routings at once.

    Stage 1 runs once per batch, and each specialist once, on the union of the images any
    of the routings sends to it (always the top-``k`` superclasses, which
    :func:`~supersub_tf.supersub.routing.gated_curve` reads, and the true one); every
    routing's answer is then combined from those outputs (:mod:`routing`).

    Returns:
        ``(fine_probs by routing [N, C], labels {"fine", "superclass", "subclass"})``,
        plus ``"superclass_probs"`` (stage 1, ``[N, S]``), for a vanilla stage 1
        ``"stage_one_fine"`` (its ``p(fine)``, ``[N, C]``), ``"subclass_probs"`` (stage 2
        over the union, ``[N, C]``), for catch-all specialists ``"other_probs"``
        (``[N, S]``, see :func:`~supersub_tf.supersub.routing.combine`) and
        ``"<routing>_passes"`` (specialist passes per image, ``[]`` arrays of one value)
        under the same dict as routings.

    Raises:
        ValueError: For a routing that is not in :data:`~supersub_tf.supersub.routing.MODES`.
    """
    h = pipeline.hierarchy
    parts: dict[str, list[np.ndarray]] = {"superclass_probs": [], "subclass_probs": [],
                                          "other_probs": [], "stage_one_fine": []}
    labels: dict[str, list[np.ndarray]] = {}
    modes = [routing_mode(r) for r in routings]  # an unknown name fails before any batch
    batches = int(dataset.cardinality())  # negative when unknown: no progress shown
    for images, batch_labels in (progress(dataset, "evaluate", total=batches, unit="batches")
                                 if batches > 0 else dataset):
        sup_probs, stage_one_fine, shared = pipeline.stage_one(images)
        union = np.concatenate([routes_for(sup_probs, "topk", k),
                                *(routes_for(sup_probs, m.name, k, tau=tau,
                                             stage_one_fine=stage_one_fine)
                                  for m in modes if not m.needs_truth),
                                batch_labels["superclass"].numpy().reshape(-1, 1)], axis=1)
        parts["superclass_probs"].append(sup_probs)
        if stage_one_fine is not None:
            parts["stage_one_fine"].append(stage_one_fine)
        sub_given, other = pipeline.routed_subclass_probs(images, union, shared)
        parts["subclass_probs"].append(sub_given)
        if other is not None:
            parts["other_probs"].append(other)
        for key, value in batch_labels.items():
            labels.setdefault(key, []).append(value.numpy())
    out = {key: np.concatenate(v) for key, v in parts.items() if v}
    labels = {key: np.concatenate(v) for key, v in labels.items()}
    for mode in modes:
        routes = routes_for(out["superclass_probs"], mode.name, k, labels["superclass"], tau,
                            out.get("stage_one_fine"))
        out[mode.name] = combine(out["superclass_probs"], out["subclass_probs"], routes, h,
                                 weighted=mode.weighted, other_probs=out.get("other_probs"),
                                 stage_one_fine=out.get("stage_one_fine"))
        out[f"{mode.name}_passes"] = np.asarray(specialist_passes(routes))
    return out, labels


def pipeline_metrics(fine_probs: np.ndarray, superclass_probs: np.ndarray,
                     labels: dict[str, np.ndarray], hierarchy: Hierarchy) -> dict[str, Any]:
    """Top-1, per-superclass accuracy and where the errors come from, for one routing.

    ``errors_from_stage1`` is the share of wrong fine predictions whose stage-1
    superclass (stage 1's top choice) was already wrong: mistakes the
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


#: Weight of the specialist in :func:`vanilla_comparison`'s mixed stage 2.
MIX_WEIGHT = 0.5


def restricted_top1(fine_probs: np.ndarray, labels: dict[str, np.ndarray],
                    hierarchy: Hierarchy) -> tuple[float, list[float | None]]:
    """Top-1 of a fine classifier told each image's true superclass (the argmax over
    that superclass's classes only), overall and per superclass: what a specialist must
    beat to add anything."""
    right = np.zeros(len(labels["fine"]), bool)
    per_superclass: list[float | None] = []
    for s in range(hierarchy.num_superclasses):
        rows = np.flatnonzero(labels["superclass"] == s)
        block = hierarchy.fine_labels_of(s)
        if len(rows):
            right[rows] = block[fine_probs[np.ix_(rows, block)].argmax(1)] == labels["fine"][rows]
        per_superclass.append(float(right[rows].mean()) if len(rows) else None)
    return float(right.mean()), per_superclass


def _renormalised_blocks(fine_probs: np.ndarray, hierarchy: Hierarchy) -> np.ndarray:
    """``p(fine | s)`` of a fine classifier: its probabilities renormalised per block."""
    out = np.zeros_like(fine_probs)
    for s in range(hierarchy.num_superclasses):
        block = hierarchy.fine_labels_of(s)
        out[:, block] = fine_probs[:, block] / np.maximum(
            fine_probs[:, block].sum(1, keepdims=True), 1e-12)
    return out


def vanilla_comparison(probs: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                       hierarchy: Hierarchy, vanilla_probs: np.ndarray, k: int = 2,
                       tau: float = 0.5, generalist_probs: np.ndarray | None = None
                       ) -> dict[str, Any]:
    """Super-Sub against the vanilla network on the same images.

    Args:
        probs, labels: :func:`collect_predictions` output (``soft`` among its routings,
            so every specialist's block is there for every image).
        vanilla_probs: ``[N, C]`` the vanilla network's validation probabilities, in
            the same order.
        generalist_probs: ``[N, S]`` a generalist's, to measure routing by it over the
            same specialists (two networks at inference; evaluation only).

    Returns:
        ``vanilla_top1``, ``vanilla_restricted_top1`` (the vanilla network told the true
        superclass) and per superclass, ``oracle_gain_per_superclass`` (specialists
        minus that) and its mean, ``mixed`` (stage 2 as ``MIX_WEIGHT`` * specialist +
        the rest the vanilla network's renormalised block, Hinton et al.'s combination
        of specialists with the generalist) and ``generalist_routing`` top-1 by mode.
    """
    if len(vanilla_probs) != len(labels["fine"]):
        raise ValueError(f"vanilla predictions of {len(vanilla_probs)} images, Super-Sub's "
                         f"of {len(labels['fine'])}: not the same split")
    fine = labels["fine"]
    top1 = {"vanilla_top1": float((vanilla_probs.argmax(1) == fine).mean())}
    restricted, per_restricted = restricted_top1(vanilla_probs, labels, hierarchy)
    oracle_right = probs["oracle"].argmax(1) == fine
    gains = []
    for s, base in enumerate(per_restricted):
        rows = labels["superclass"] == s
        if base is not None:
            gains.append(float(oracle_right[rows].mean()) - base)
    mixed_sub = (MIX_WEIGHT * probs["subclass_probs"]
                 + (1 - MIX_WEIGHT) * _renormalised_blocks(vanilla_probs, hierarchy))
    mixed = {}
    for routing in ("hard", "topk", "soft", "oracle"):
        routes = routes_for(probs["superclass_probs"], routing, k, labels["superclass"], tau,
                            probs.get("stage_one_fine"))
        combined = combine(probs["superclass_probs"], mixed_sub, routes, hierarchy,
                           weighted=routing_mode(routing).weighted)
        mixed[routing] = float((combined.argmax(1) == fine).mean())
    result = {**top1, "vanilla_restricted_top1": restricted,
              "vanilla_restricted_per_superclass": per_restricted,
              "oracle_gain_per_superclass": gains,
              "mean_oracle_gain": float(np.mean(gains)) if gains else None,
              "mixed_with_vanilla": {"specialist_weight": MIX_WEIGHT, "top1": mixed}}
    if generalist_probs is not None:
        by_generalist = {}
        for routing in ("hard", "topk", "soft"):
            routes = routes_for(generalist_probs, routing, k)
            combined = combine(generalist_probs, probs["subclass_probs"], routes, hierarchy)
            by_generalist[routing] = float((combined.argmax(1) == fine).mean())
        result["generalist_routing"] = {
            "stage1_superclass_accuracy": float(
                (generalist_probs.argmax(1) == labels["superclass"]).mean()),
            "top1": by_generalist}
    return result
