"""The scaling study's records: what each point costs and what it achieves.

A record per point of the study (:mod:`supersub_tf.studies.scaling`):

* **parameters**: the vanilla network's; for Super-Sub the generalist's, the delta
  values per specialist, and the total (generalist + every specialist's deltas, head
  and batch norm);
* **device-resident parameters**: what one forward pass keeps on the device (the
  generalist's for Super-Sub: the pipeline swaps deltas into the one trunk in place;
  the codes live in host memory, ``host_bytes``);
* **stored bytes**: the weight payload (vanilla: ``parameters * 4``, float32; Super-Sub:
  the float32 generalist plus every specialist's packed codes, float32 scales and owned
  float32 weights, as :func:`~supersub_tf.deltas.storage_report.storage_report` counts them)
  and the files on disk (``file_bytes``: the vanilla network's HDF5 weights file; the
  Super-Sub system's folder total). HDF5 adds about 80 kB of metadata per file, which
  dominates the smallest networks, so the plots use the payload;
* **inference cost**: analytic multiply-accumulates of the convolution and dense layers
  per image (batch norm folded, additions, ReLUs and pooling not counted; FLOPs = 2 x
  MACs); for Super-Sub under hard routing one generalist pass plus one specialist pass
  (the same trunk again and its head); and measured CPU latency (median ms of a call on
  ``latency_batch`` images after warm-up) and throughput (images/s at
  ``throughput_batch``), on validation images;
* **accuracy**: validation top-1 and top-5 (Super-Sub: hard routing; its top-5 ranks
  the routed superclass's subclasses), final training accuracy and the train-val gap
  from ``history.csv`` (for Super-Sub, of the generalist and the specialists' mean), and
  the per-epoch curves.

Measurements that need the networks (latency, MACs, top-5) are cached per point in
``scaling/<kind>.json``, keyed by the files they were measured on.

Function-level imports here are of TensorFlow and of the modules that import it when
they load (training, the pipeline): the study's settings and tables load without it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from supersub_tf.accuracy import topk_accuracy
from supersub_tf.analysis.costs import model_macs, time_inference
from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import bits_tag
from supersub_tf.deltas.delta_set import touched_layers
from supersub_tf.deltas.storage import MANIFEST, load_system
from supersub_tf.deltas.storage_report import storage_report
from supersub_tf.models.blocks import LOGITS_LAYER
from supersub_tf.run.layout import METRICS, RunLayout
from supersub_tf.studies.scaling_config import ScalingConfig, point_name, study_dir
from supersub_tf.training.history import HISTORY, read_history

#: Version of the Super-Sub measurements, part of their cache key: 2 scores top-1 and
#: top-5 with :func:`supersub_tf.accuracy.topk_accuracy` (a class hard routing gives
#: probability zero is never a hit).
_MEASUREMENTS = 2


# ------------------------------------------------------------------------------ costs


def timing_images(dataset, count: int):
    """The first ``count`` images of an ordered, batched dataset (repeated if fewer)."""
    chunks, have = [], 0
    for images, _ in dataset:
        chunks.append(images.numpy())
        have += len(chunks[-1])
        if have >= count:
            break
    images = np.concatenate(chunks)
    reps = -(-count // len(images))
    return np.concatenate([images] * reps)[:count]


# ------------------------------------------------------------------------------ records


def _nan_to_none(values) -> list:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
            for v in values]


def history_curves(path: Path) -> dict[str, list]:
    """``epoch`` (from 1), ``accuracy`` and ``val_accuracy`` per epoch of a history.csv."""
    history = read_history(path)
    n = len(history["epoch"])
    nan = [math.nan] * n
    return {"epoch": [int(e) + 1 for e in history["epoch"]],
            "accuracy": _nan_to_none(history.get("accuracy", nan)),
            "val_accuracy": _nan_to_none(history.get("val_accuracy", nan))}


def final_gap(curves: dict[str, list]) -> tuple[float | None, float | None, float | None]:
    """Last epoch's training accuracy, validation accuracy and their difference."""
    train = curves["accuracy"][-1] if curves["accuracy"] else None
    val = curves["val_accuracy"][-1] if curves["val_accuracy"] else None
    return train, val, (train - val if train is not None and val is not None else None)


def mean_curves(curves: list[dict[str, list]]) -> dict[str, list]:
    """Epoch-wise mean of several curves (over the epochs all of them have)."""
    n = min(len(c["epoch"]) for c in curves)
    out: dict[str, list] = {"epoch": curves[0]["epoch"][:n]}
    for key in ("accuracy", "val_accuracy"):
        columns = list(zip(*(c[key][:n] for c in curves)))
        out[key] = [None if any(v is None for v in col) else sum(col) / len(col)
                    for col in columns]
    return out


def _fingerprint(*paths: Path) -> list:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def _cached(cache: Path, key: dict, compute, log, label: str) -> dict:
    """``compute()``, or its stored result when ``cache`` holds one under the same key."""
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if stored.get("key") == json.loads(json.dumps(key)):
            log(f"[scale {label}] measurements cached in {cache}")
            return stored["measured"]
    measured = compute()
    atomic_write_text(cache, json.dumps({"key": key, "measured": measured}, indent=2) + "\n")
    return measured


def vanilla_record(config: ScalingConfig, size: dict[str, Any], images, log=print) -> dict:
    """The record of one vanilla point (its network must be trained)."""
    import tensorflow as tf
    import tf_keras as keras

    from supersub_tf.training.engine import FINAL_WEIGHTS
    from supersub_tf.training.networks import load_network

    name = point_name(size)
    run_dir = study_dir(config) / name
    vdir = RunLayout(run_dir).vanilla
    metrics = json.loads((vdir / METRICS).read_text())

    def measure() -> dict:
        keras.backend.clear_session()
        model = load_network(vdir).model
        measured: dict[str, Any] = dict(model_macs(model))
        if config.timing.enabled:
            forward = tf.function(lambda x: tf.nn.softmax(model(x, training=False)),
                                  reduce_retracing=True)
            measured["timing"] = time_inference(lambda x: np.asarray(forward(x)), images,
                                                config.timing)
        return measured

    key = {"weights": _fingerprint(vdir / FINAL_WEIGHTS, vdir / METRICS),
           "timing": dataclasses.asdict(config.timing)}
    measured = _cached(run_dir / "scaling" / "vanilla.json", key, measure, log, name)
    curves = history_curves(vdir / HISTORY)
    train_acc, val_acc, gap = final_gap(curves)
    params = int(metrics["parameters"])
    weights_file = vdir / FINAL_WEIGHTS
    timing = measured.get("timing") or {}
    return {
        "point": name, "kind": "vanilla", "label": f"{size['model']} x{size['width']:g}",
        "model": size["model"], "width": size["width"], "bits": None,
        "run_dir": str(run_dir),
        "parameters": params, "total_parameters": params, "device_parameters": params,
        "delta_values_per_specialist": None, "num_specialists": None,
        "stored_bytes": params * 4, "file_bytes": weights_file.stat().st_size,
        "host_bytes": 0,
        "macs_per_image": measured["macs"], "flops_per_image": 2 * measured["macs"],
        "train_flops": training_flops(measured["macs"],
                                      metrics["epochs"] * metrics["train_images"]),
        "latency_ms": timing.get("latency_ms"), "throughput_ips": timing.get("throughput_ips"),
        "timing": timing or None,
        "top1": metrics["top1"], "top5": metrics["top5"],
        "final_train_accuracy": train_acc, "final_val_accuracy": val_acc,
        "train_val_gap": gap,
        "train_seconds": metrics["train_seconds"], "epochs": metrics["epochs"],
        "train_images": metrics["train_images"], "val_images": metrics["val_images"],
        "curves": {"vanilla": curves},
    }


def training_flops(macs_per_image: float, image_passes: float) -> int:
    """Training compute: forward and backward passes cost about three forward passes,
    each ``2 * MACs`` FLOPs, over every training-image pass."""
    return int(6 * macs_per_image * image_passes)


def _host_bytes(system) -> int:
    """Host memory of a loaded pipeline beyond its device weights: the delta sets and
    the host copies of every weight a specialist changes (to restore the generalist)."""
    delta_sets = system.delta_sets
    copies = sum(w.numpy().nbytes for n in touched_layers(delta_sets.values())
                 for w in system.generalist.get_layer(n).weights)
    deltas = sum(q.codes.nbytes + (q.scales.nbytes if q.scales is not None else 0)
                 for d in delta_sets.values() for q in d.deltas.values())
    owned = sum(np.asarray(w).nbytes for d in delta_sets.values()
                for ws in d.owned.values() for w in ws)
    return int(copies + deltas + owned)


def _measure_supersub(config: ScalingConfig, system_dir: Path, val, images) -> dict:
    """What a Super-Sub point's record measures on its loaded system: MACs per image
    under hard routing, top-1 and top-5 on the validation split, device and host memory,
    and (``config.timing``) latency and throughput."""
    import tensorflow as tf
    import tf_keras as keras

    from supersub_tf.supersub.pipeline import SuperSubPipeline

    keras.backend.clear_session()
    system = load_system(system_dir)
    h = system.hierarchy
    pipeline = SuperSubPipeline.from_system(system)
    generalist_macs = model_macs(system.generalist)
    head = system.generalist.get_layer(LOGITS_LAYER)
    features = int(head.input_shape[-1])
    trunk_macs = generalist_macs["macs"] - features * head.units
    heads = [features * h.num_subclasses(s) for s in h.superclass_names]
    macs = generalist_macs["macs"] + trunk_macs + sum(heads) / len(heads)
    right = {1: 0, 5: 0}
    total = 0
    for batch, labels in val.dataset:
        fine_probs = pipeline.predict(batch, "hard").fine_probs
        fine = labels["fine"].numpy()
        for k in right:  # hits of this batch (the mean times the count, an integer)
            right[k] += round(topk_accuracy(fine_probs, fine, k) * len(fine))
        total += len(fine)
    measured = {"macs": int(round(macs)), "generalist_macs": generalist_macs["macs"],
                "trunk_macs": int(trunk_macs), "top1_hard": right[1] / total,
                "top5_hard": right[5] / total,
                "device_parameters": int(system.generalist.count_params()),
                "host_bytes": _host_bytes(system)}
    if config.timing.enabled:
        timing = time_inference(lambda x: pipeline.predict(x, "hard"), images, config.timing)
        routed = pipeline.superclass_probs(tf.constant(images[:timing["throughput_batch"]]))
        timing["specialists_per_throughput_batch"] = int(len(np.unique(routed.argmax(1))))
        measured["timing"] = timing
    return measured


def _supersub_training(run_dir: Path, base_kind: str, bits: int | None,
                       specialists: list[dict]) -> dict:
    """A Super-Sub point's training: its base network's and its specialists' curves,
    final accuracies and gaps, seconds and image passes."""
    layout = RunLayout(run_dir)
    base = json.loads(layout.metrics(base_kind).read_text())
    sdirs = [layout.delta_specialist(bits, s["superclass"]) for s in specialists]
    spec_metrics = [json.loads((d / METRICS).read_text()) for d in sdirs]
    gen_curves = history_curves(layout.network(base_kind) / HISTORY)
    mean_spec = mean_curves([history_curves(d / HISTORY) for d in sdirs])
    gen_train, gen_val, gen_gap = final_gap(gen_curves)
    spec_train, spec_val, spec_gap = final_gap(mean_spec)
    return {
        "base": base,
        # Training compute: the base network's image passes and every specialist's, each
        # a pass of (about) the base network's size.
        "passes": (base["epochs"] * base["train_images"]
                   + sum(m["epochs"] * m["train_images"] for m in spec_metrics)),
        "seconds": round(base["train_seconds"] + sum(m["train_seconds"]
                                                     for m in spec_metrics), 1),
        "fields": {
            "generalist_train_accuracy": gen_train, "generalist_val_accuracy": gen_val,
            "generalist_gap": gen_gap, "specialist_train_accuracy": spec_train,
            "specialist_val_accuracy": spec_val, "specialist_gap": spec_gap},
        "curves": {"generalist": gen_curves, "specialists_mean": mean_spec},
    }


def supersub_record(config: ScalingConfig, size: dict[str, Any], bits: int | None, val,
                    images, log=print) -> dict:
    """The record of one Super-Sub point (its system must be trained and evaluated)."""
    name, tag = point_name(size), bits_tag(bits)
    run_dir = study_dir(config) / name
    system_dir = RunLayout(run_dir).system(tag)
    result = json.loads(RunLayout(run_dir).supersub_result(tag).read_text())
    report = storage_report(system_dir)
    # The network the specialists adapt (and stage 1): the vanilla network or a generalist.
    base_kind = config.base.deltas.base
    key = {"system": _fingerprint(system_dir / MANIFEST),
           "timing": dataclasses.asdict(config.timing), "measurements": _MEASUREMENTS}
    measured = _cached(run_dir / "scaling" / f"supersub_{tag}.json", key,
                       lambda: _measure_supersub(config, system_dir, val, images), log,
                       f"{name} {tag}")
    specialists = report["specialists"]
    n = report["num_specialists"]
    payload = sum(s["code_bytes"] + s["scale_bytes"] + s["owned_bytes"] for s in specialists)
    owned_values = sum(s["owned_bytes"] for s in specialists) // 4
    generalist_params = int(report["parameters"])
    training = _supersub_training(run_dir, base_kind, bits, specialists)
    base = training["base"]
    timing = measured.get("timing") or {}
    routing = result["routing"]
    return {
        "point": name, "kind": f"supersub-{tag}",
        "label": f"Super-Sub {size['model']} x{size['width']:g}, {tag}",
        "model": size["model"], "width": size["width"], "bits": bits, "base": base_kind,
        "run_dir": str(run_dir), "system": str(system_dir),
        "parameters": generalist_params,
        "total_parameters": generalist_params + n * report["delta_values"] + owned_values,
        "device_parameters": measured["device_parameters"],
        "delta_values_per_specialist": report["delta_values"], "num_specialists": n,
        "stored_bytes": generalist_params * 4 + payload, "file_bytes": report["total_bytes"],
        "host_bytes": measured["host_bytes"], "storage_a": report["a"],
        "storage_units": report["a_n_plus_1"],
        "macs_per_image": measured["macs"], "flops_per_image": 2 * measured["macs"],
        "train_flops": training_flops(measured["generalist_macs"], training["passes"]),
        "latency_ms": timing.get("latency_ms"), "throughput_ips": timing.get("throughput_ips"),
        "timing": timing or None,
        "top1": routing["hard"]["top1"], "top5": measured["top5_hard"],
        "top1_topk": routing["topk"]["top1"], "top1_oracle": routing["oracle"]["top1"],
        "stage1_superclass_accuracy": routing["hard"]["stage1_superclass_accuracy"],
        "final_train_accuracy": None, "final_val_accuracy": None, "train_val_gap": None,
        **training["fields"],
        "train_seconds": training["seconds"],
        "epochs": base["epochs"],
        "train_images": base["train_images"],
        "val_images": base["val_images"],
        "curves": training["curves"],
    }
