"""How an export compares with the Keras pipeline it came from: agreement, size, speed.

One measurement module for both exports. The reference is always the in-process
:class:`~supersub_tf.supersub.pipeline.SuperSubPipeline` (:func:`keras_predict`); the
SavedModel is run through plain ``tf.saved_model.load`` as a serving stack would
(:func:`savedmodel_predict`), the LiteRT export through its own runtime
(:func:`compare_with_keras`, :func:`benchmark_litert`), and sizes are measured on disk
against the stored system (:func:`export_size_report`, :func:`export_sizes`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from supersub_tf.analysis.costs import timed_calls
from supersub_tf.data.pipeline import normalize_images
from supersub_tf.deltas.storage_report import storage_report
from supersub_tf.errors import ExportError
from supersub_tf.export import litert_runtime
from supersub_tf.export.savedmodel import (
    INPUT_NAME, MARKER, METADATA_FILE, OUTPUTS, SIGNATURE, call_signature)
from supersub_tf.export.tflite import open_export
from supersub_tf.manifest_files import MANIFEST
from supersub_tf.models.blocks import LOGITS_LAYER
from supersub_tf.supersub.pipeline import SuperSubPipeline

if TYPE_CHECKING:
    from supersub_tf.deltas.storage import SuperSubSystem

#: Share of identical fine labels (LiteRT vs Keras, hard routing) an export aims for.
AGREEMENT_TARGET = 0.99
#: Keras decision margins (distance from a tie, see keras_predict) at which agreement is
#: also reported.
MARGINS = (0.01, 0.05, 0.1)


# ------------------------------------------------------------------------------ LiteRT
def keras_predict(system: SuperSubSystem, images: np.ndarray, *, batch_size: int = 256,
                  routing: str = "hard", k: int = 2, tau: float = 0.5
                  ) -> dict[str, np.ndarray]:
    """The Keras :class:`SuperSubPipeline`'s predictions on uint8 images, batch by batch
    (``routing``, ``k`` and ``tau`` as :meth:`SuperSubPipeline.predict` takes them).

    Returns:
        ``fine``, ``superclass``, ``fine_prob``, ``margin`` ``[N]`` and
        ``superclass_probs`` ``[N, S]``, plus ``seconds`` spent. ``margin`` is how far
        each decision is from a tie: the smaller of the superclass margin (top-1 minus
        top-2 of ``p(superclass)``, which decides the route) and the fine margin (top-1
        minus top-2 of the combined fine probabilities in the routed block).
    """
    pipeline = SuperSubPipeline.from_system(system)
    mode = system.backbone.normalization
    parts: dict[str, list] = {"fine": [], "superclass": [], "fine_prob": [],
                              "superclass_probs": [], "margin": []}
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        pred = pipeline.predict(normalize_images(images[i:i + batch_size], mode), routing,
                                k=k, tau=tau)
        for key in parts:
            if key != "margin":
                parts[key].append(getattr(pred, key))
        sup2 = np.sort(pred.superclass_probs, axis=1)[:, -2:]
        fine2 = np.sort(pred.fine_probs, axis=1)[:, -2:]
        parts["margin"].append(np.minimum(sup2[:, 1] - sup2[:, 0], fine2[:, 1] - fine2[:, 0]))
    result = {key: np.concatenate(v) if v else np.zeros(0) for key, v in parts.items()}
    result["seconds"] = time.perf_counter() - start
    return result


def compare_with_keras(export_dir: str | os.PathLike, system: SuperSubSystem,
                       images: np.ndarray, fine: np.ndarray | None = None, *,
                       batch_size: int = 256, num_threads: int = 2,
                       reference: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Agreement (hard routing) of an export with the Keras pipeline, and accuracies.

    Args:
        export_dir: An export of ``system``.
        system: The system it was exported from.
        images: ``uint8 [N, S, S, 3]`` evaluation images (e.g. ``load_images(..., "val")``).
        fine: Their fine labels, for accuracies (optional).
        batch_size: Images per batch for both pipelines.
        num_threads: LiteRT interpreter threads.
        reference: Precomputed :func:`keras_predict` output for ``images`` (saves
            recomputing it when several exports of one system are compared).

    Returns:
        ``images``; ``fine_agreement`` (share of identical fine labels),
        ``superclass_agreement`` (identical stage-1 routing), ``specialist_agreement``
        (identical fine labels among the images routed alike), ``disagreements``,
        ``agreement_by_margin`` (for Keras decision margins, see :func:`keras_predict`,
        of at least 0.01, 0.05 and 0.1: the share of images and their agreement; the
        quantized models mostly flip near-ties); the
        mean and max absolute difference of the stage-1 probabilities; with labels,
        ``keras_accuracy`` and ``litert_accuracy`` (fine top-1) and both superclass
        accuracies; the seconds each pipeline took.
    """
    if reference is None:
        reference = keras_predict(system, images, batch_size=batch_size)
    runtime = open_export(export_dir, num_threads=num_threads)
    start = time.perf_counter()
    lite = runtime.predict(images, batch_size=batch_size)
    lite_seconds = time.perf_counter() - start
    n = len(images)
    same_route = lite["superclass_probs"].argmax(1) == reference["superclass_probs"].argmax(1)
    same_fine = lite["fine"] == reference["fine"]
    diff = np.abs(lite["superclass_probs"] - reference["superclass_probs"]) if n else np.zeros(1)
    result: dict[str, Any] = {
        "export": str(export_dir), "quantization": runtime.manifest.get("quantization"),
        "images": n,
        "fine_agreement": float(same_fine.mean()) if n else 1.0,
        "disagreements": int((~same_fine).sum()),
        "superclass_agreement": float(same_route.mean()) if n else 1.0,
        "specialist_agreement": (float(same_fine[same_route].mean())
                                 if same_route.any() else 1.0),
        "agreement_by_margin": _agreement_by_margin(same_fine, reference.get("margin")),
        "superclass_prob_mean_abs_diff": float(diff.mean()),
        "superclass_prob_max_abs_diff": float(diff.max()),
        "keras_seconds": float(reference.get("seconds", float("nan"))),
        "litert_seconds": lite_seconds,
    }
    if fine is not None:
        fine = np.asarray(fine)
        truth_super = system.hierarchy.fine_to_superclass[fine]
        result.update(
            keras_accuracy=float((reference["fine"] == fine).mean()),
            litert_accuracy=float((lite["fine"] == fine).mean()),
            keras_superclass_accuracy=float(
                (reference["superclass_probs"].argmax(1) == truth_super).mean()),
            litert_superclass_accuracy=float(
                (lite["superclass_probs"].argmax(1) == truth_super).mean()))
    return result


def _agreement_by_margin(same: np.ndarray, margin: np.ndarray | None) -> list[dict]:
    if margin is None:
        return []
    rows = []
    for threshold in MARGINS:
        confident = np.asarray(margin) >= threshold
        rows.append({"min_margin": threshold,
                     "share": float(confident.mean()) if len(same) else 0.0,
                     "agreement": float(same[confident].mean()) if confident.any() else 1.0})
    return rows


def float32_bytes(system: SuperSubSystem) -> dict[str, int]:
    """Bytes of the generalist and every specialist as separate float32 networks
    (parameters x 4, batch-norm statistics included, as the storage report counts)."""
    params = int(system.generalist.count_params())
    head_kernel, head_bias = system.generalist.get_layer(LOGITS_LAYER).get_weights()
    trunk = params - head_kernel.size - head_bias.size
    sizes = {"generalist": params * 4}
    for name, delta_set in system.delta_sets.items():
        sizes[name] = (trunk + sum(w.size for w in delta_set.owned[LOGITS_LAYER])) * 4
    return sizes


def export_sizes(export_dir: str | os.PathLike,
                 system: SuperSubSystem | None = None) -> dict[str, Any]:
    """File sizes of an export, against the system's storage format and float32 networks.

    Returns:
        ``models`` (file, bytes per model), ``models_bytes`` (their sum), ``total_bytes``
        (the whole folder: manifest and runtime included); with ``system``,
        ``float32_bytes`` (all N + 1 networks as float32) and, when the system was read
        from a folder, ``storage_bytes`` (its compact generalist + deltas format), with
        the ratios of the models to each.
    """
    root = Path(export_dir)
    manifest = litert_runtime.read_manifest(root)
    entries = [manifest["generalist"], *manifest["specialists"]]
    models = [{"file": e["file"], "superclass": e.get("superclass"), "bytes": int(e["bytes"])}
              for e in entries]
    models_bytes = sum(m["bytes"] for m in models)
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    result: dict[str, Any] = {"export": str(root), "quantization": manifest.get("quantization"),
                              "models": models, "models_bytes": models_bytes,
                              "generalist_bytes": models[0]["bytes"],
                              "specialist_bytes_mean": (float(np.mean([m["bytes"]
                                                                       for m in models[1:]]))
                                                        if len(models) > 1 else 0.0),
                              "total_bytes": total}
    if system is not None:
        floats = float32_bytes(system)
        result["float32_bytes"] = sum(floats.values())
        result["models_vs_float32"] = models_bytes / result["float32_bytes"]
        if system.path is not None and (Path(system.path) / MANIFEST).is_file():
            storage = storage_report(system.path)
            result["storage_bytes"] = int(storage["total_bytes"])
            result["models_vs_storage"] = models_bytes / result["storage_bytes"]
    return result


def benchmark_litert(export_dir: str | os.PathLike, images: np.ndarray, *,
                     num_threads: int = 2, batch_size: int = 256,
                     repeats: int = 3) -> dict[str, Any]:
    """Images per second of the LiteRT two-stage pipeline (hard routing).

    One untimed warm-up pass, then ``repeats`` timed passes over ``images``; the best
    pass counts (the least disturbed by other processes on a shared machine).
    """
    runtime = open_export(export_dir, num_threads=num_threads)
    runtime.predict(images[:batch_size], batch_size=batch_size)  # warm-up, one batch
    times = timed_calls(lambda: runtime.predict(images, batch_size=batch_size),
                        max(1, repeats), warmup=0)
    best = min(times)
    return {"images": len(images), "num_threads": num_threads, "batch_size": batch_size,
            "seconds": times, "images_per_second": len(images) / best if best else math.inf}


def measure_export(export_dir: str | os.PathLike, system: SuperSubSystem, images: np.ndarray,
                   fine: np.ndarray | None = None, *, num_threads: int = 2,
                   batch_size: int = 256, repeats: int = 3,
                   reference: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """:func:`compare_with_keras`, :func:`export_sizes` and :func:`benchmark_litert` in
    one dict (keys ``comparison``, ``sizes``, ``speed``), plus ``meets_target``: at
    least 99% identical fine labels, the target of the export issue."""
    comparison = compare_with_keras(export_dir, system, images, fine, batch_size=batch_size,
                                    num_threads=num_threads, reference=reference)
    return {"comparison": comparison, "sizes": export_sizes(export_dir, system),
            "speed": benchmark_litert(export_dir, images, num_threads=num_threads,
                                      batch_size=batch_size, repeats=repeats),
            "meets_target": comparison["fine_agreement"] >= AGREEMENT_TARGET}


def format_measurement(report: Mapping[str, Any]) -> str:
    """A readable summary of :func:`measure_export`'s numbers."""
    c, s, v = report["comparison"], report["sizes"], report["speed"]
    lines = [f"LiteRT export {c['export']} ({c['quantization']})",
             f"identical fine labels vs Keras: {c['fine_agreement']:.2%} of {c['images']:,} "
             f"images ({c['disagreements']} differ; target {AGREEMENT_TARGET:.0%}: "
             f"{'met' if report['meets_target'] else 'not met'})",
             f"identical routing (stage 1): {c['superclass_agreement']:.2%}; identical fine "
             f"labels when routed alike: {c['specialist_agreement']:.2%}"]
    for row in c.get("agreement_by_margin", []):
        lines.append(f"  images whose Keras margin is >= {row['min_margin']:.2f} "
                     f"({row['share']:.1%} of them): {row['agreement']:.2%} identical")
    if "keras_accuracy" in c:
        lines.append(f"top-1: Keras {c['keras_accuracy']:.2%}, LiteRT {c['litert_accuracy']:.2%}"
                     f" (superclass: {c['keras_superclass_accuracy']:.2%} vs "
                     f"{c['litert_superclass_accuracy']:.2%})")
    lines.append(f"models: {s['models_bytes']:,} bytes (generalist {s['generalist_bytes']:,}, "
                 f"specialist mean {s['specialist_bytes_mean']:,.0f}); folder "
                 f"{s['total_bytes']:,}")
    if "float32_bytes" in s:
        lines.append(f"float32 networks: {s['float32_bytes']:,} bytes "
                     f"(models are {s['models_vs_float32']:.1%} of it)")
    if "storage_bytes" in s:
        lines.append(f"storage format (generalist + deltas): {s['storage_bytes']:,} bytes "
                     f"(models are {s['models_vs_storage']:.2f}x it)")
    lines.append(f"LiteRT speed: {v['images_per_second']:,.0f} images/s "
                 f"({v['num_threads']} threads, batch {v['batch_size']})")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ SavedModel
def savedmodel_predict(export_dir: str | os.PathLike, images: np.ndarray,
                       batch_size: int = 256) -> dict[str, np.ndarray]:
    """Runs an exported SavedModel's signature over uint8 images, batch by batch.

    It loads the folder with plain ``tf.saved_model.load``, as a serving stack would.

    Returns:
        Every numeric output of :data:`OUTPUTS`, concatenated over the batches, plus
        ``seconds``: the wall time of the calls (loading excluded).
    """
    serve = tf.saved_model.load(str(export_dir)).signatures[SIGNATURE]
    numeric = [name for name, (dtype, _) in OUTPUTS.items() if dtype != "string"]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in numeric}
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        batch = tf.constant(images[first:first + batch_size])
        outputs = call_signature(serve, **{INPUT_NAME: batch})
        for name in numeric:
            parts[name].append(outputs[name].numpy())
    seconds = time.perf_counter() - start
    result = {name: (np.concatenate(values) if values else np.zeros(0))
              for name, values in parts.items()}
    result["seconds"] = seconds
    return result


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def export_size_report(export_dir: str | os.PathLike,
                       system: str | os.PathLike | None = None) -> dict[str, Any]:
    """On-disk bytes of an exported SavedModel, next to its source system's storage.

    Args:
        export_dir: A folder written by :func:`export_savedmodel`.
        system: The system directory to compare with; defaults to the source recorded in
            ``supersub_export.json`` when it still exists.

    Returns:
        ``savedmodel_bytes`` (every file), ``variables_bytes`` (the weights),
        ``graph_bytes`` (``saved_model.pb``), and when a system is found its
        ``system_bytes`` (:func:`~supersub_tf.deltas.storage_report.storage_report`'s total),
        ``float32_network_bytes`` (one float32 generalist), ``num_specialists``,
        ``savedmodel_units`` and ``system_units`` (sizes in float32 networks, against
        ``separate_networks = N + 1``) and ``savedmodel_to_system`` (their ratio).

    Raises:
        ExportError: When ``export_dir`` is not an exported SavedModel.
    """
    root = Path(export_dir)
    if not (root / MARKER).is_file():
        raise ExportError(f"{root}: no {MARKER} (not a SavedModel)")
    report: dict[str, Any] = {
        "path": str(root), "savedmodel_bytes": _folder_bytes(root),
        "variables_bytes": _folder_bytes(root / "variables"),
        "graph_bytes": (root / MARKER).stat().st_size,
    }
    if system is None:
        try:
            metadata = json.loads((root / METADATA_FILE).read_text(encoding="utf-8"))
            source = metadata["source"]["path"]
        except (OSError, ValueError, KeyError, TypeError):
            source = None
        system = source if source and (Path(source) / MANIFEST).is_file() else None
    if system is not None:
        storage = storage_report(system)
        unit = storage["float32_network_bytes"]
        report.update({
            "system": storage["path"], "system_bytes": storage["total_bytes"],
            "float32_network_bytes": unit, "num_specialists": storage["num_specialists"],
            "savedmodel_units": report["savedmodel_bytes"] / unit,
            "system_units": storage["total_units"],
            "separate_networks": storage["separate_networks"],
            "savedmodel_to_system": report["savedmodel_bytes"] / storage["total_bytes"],
        })
    return report


def format_export_size_report(report: Mapping[str, Any]) -> str:
    """A few readable lines of :func:`export_size_report`'s numbers."""
    lines = [f"SavedModel {report['path']}: {report['savedmodel_bytes']:,} bytes "
             f"(variables {report['variables_bytes']:,}, graph {report['graph_bytes']:,})"]
    if "system_bytes" in report:
        lines += [
            f"system {report['system']}: {report['system_bytes']:,} bytes",
            f"in float32 networks ({report['float32_network_bytes']:,} bytes): SavedModel "
            f"{report['savedmodel_units']:.3f}, system {report['system_units']:.3f}, "
            f"N + 1 separate networks {report['separate_networks']}",
            f"SavedModel / system = {report['savedmodel_to_system']:.3f}",
        ]
    return "\n".join(lines)
