"""The scaling study: Super-Sub against simply making the vanilla network bigger.

A vanilla network over all fine classes is trained at several sizes (backbone and
width), and the smaller ones also get a Super-Sub system (generalist + delta
specialists at each configured bit width). Every point uses the base run config with
only ``train.model`` and ``train.width`` changed: the same data, augmentation, epochs
and optimizer. Each point then gets a record of what it costs and what it achieves:

* **parameters**: the vanilla network's; for Super-Sub the generalist's, the delta
  values per specialist, and the total (generalist + every specialist's deltas, head
  and batch norm);
* **device-resident parameters**: what one forward pass keeps on the device (the
  generalist's for Super-Sub: the pipeline swaps deltas into the one trunk in place;
  the codes live in host memory, ``host_bytes``);
* **stored bytes**: the weight payload (vanilla: ``parameters * 4``, float32; Super-Sub:
  the float32 generalist plus every specialist's packed codes, float32 scales and owned
  float32 weights, as :func:`~supersub_tf.deltas.storage.storage_report` counts them)
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

Layout (``<output_dir>/<name>/``)::

    scaling_config.yaml               the resolved study config
    <model>_w<width>/                 one run directory per size (see supersub_tf.run):
        vanilla/, generalist/, deltas/<bits>/, systems/<bits>/, supersub/<bits>.json
        scaling/<kind>.json           cached measurements (latency, MACs, top-5)
    scaling.json                      every point's record
    scaling.md, plots/*.png           the report (supersub_tf.analysis.scaling_plots)

The study is resumable like the main job: a finished network is kept (its
``metrics.json``), a finished Super-Sub system too (its ``supersub/<bits>.json``), so a
rerun trains only what is missing, and a killed run continues where it stopped. A
point folder trained with other settings is refused, naming the settings that differ.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

from supersub_tf.atomic import atomic_write_text
from supersub_tf.config import (
    RunConfig, bits_tag, config_to_dict, load_study_config, parse_bits, save_config)
from supersub_tf.errors import ConfigError
from supersub_tf.freshness import ensure_fresh
from supersub_tf.run_lock import run_lock

#: The config file of the study; ``base`` paths in it are relative to its folder.
DEFAULT_SCALING_CONFIG = Path("configs") / "scaling.yaml"

_SIZE_NAME = re.compile(r"^(?P<model>[A-Za-z0-9_]+?)_w(?P<width>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?)$")


@dataclasses.dataclass
class TimingConfig:
    """How inference is timed on the CPU (``time.perf_counter`` medians).

    Attributes:
        enabled: Measure latency and throughput (off: those columns stay empty).
        latency_batch: Images per call for the latency (1: ms per image).
        throughput_batch: Images per call for the throughput (images/s).
        latency_repetitions: Timed calls at ``latency_batch``.
        throughput_repetitions: Timed calls at ``throughput_batch``.
        warmup: Untimed calls before each series (graph tracing, caches).
    """

    enabled: bool = True
    latency_batch: int = 1
    throughput_batch: int = 256
    latency_repetitions: int = 30
    throughput_repetitions: int = 5
    warmup: int = 2

    def __post_init__(self) -> None:
        for key in ("latency_batch", "throughput_batch", "latency_repetitions",
                    "throughput_repetitions"):
            if getattr(self, key) < 1:
                raise ConfigError(f"timing.{key} must be >= 1, got {getattr(self, key)}")
        if self.warmup < 0:
            raise ConfigError(f"timing.warmup must be >= 0, got {self.warmup}")


def _default_sizes() -> list:
    return [{"model": "resnet8", "width": 0.25}, {"model": "resnet8", "width": 0.5},
            {"model": "resnet20", "width": 0.5}, {"model": "resnet20", "width": 1.0}]


def _default_supersub_sizes() -> list:
    return [{"model": "resnet8", "width": 0.25}, {"model": "resnet8", "width": 0.5},
            {"model": "resnet20", "width": 0.5}]


@dataclasses.dataclass
class ScalingConfig:
    """The scaling study (``configs/scaling.yaml`` spells out these defaults).

    Attributes:
        name: The study's folder under ``output_dir``.
        output_dir: Where study folders go.
        base: The run config every point starts from (a mapping of RunConfig settings,
            or in YAML a path to a run config file); each point changes only
            ``train.model`` and ``train.width``. Its ``name``, ``output_dir``,
            ``networks`` and ``deltas.bits`` are set by the study.
        sizes: The vanilla sizes, each ``{model: resnet20, width: 0.5}`` or the point's
            folder name ``resnet20_w0.5``; at least two, best spanning 10x parameters.
        supersub_sizes: Those of ``sizes`` that also get a Super-Sub system.
        bits: Delta bit widths of the Super-Sub systems (``float`` for float32 deltas).
        timing: How inference is timed.
    """

    name: str = "scaling"
    output_dir: str = "runs"
    base: RunConfig = dataclasses.field(default_factory=RunConfig)
    sizes: list = dataclasses.field(default_factory=_default_sizes)
    supersub_sizes: list = dataclasses.field(default_factory=_default_supersub_sizes)
    bits: list = dataclasses.field(default_factory=lambda: [8])
    timing: TimingConfig = dataclasses.field(default_factory=TimingConfig)

    def __post_init__(self) -> None:
        self.sizes = [parse_size(s, f"sizes[{i}]") for i, s in enumerate(self.sizes)]
        if len(self.sizes) < 2:
            raise ConfigError(f"sizes: a scaling study needs at least 2 vanilla sizes, got "
                              f"{len(self.sizes)}")
        names = [point_name(s) for s in self.sizes]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"sizes: {', '.join(twice)} listed more than once")
        self.supersub_sizes = [parse_size(s, f"supersub_sizes[{i}]")
                               for i, s in enumerate(self.supersub_sizes)]
        for size in self.supersub_sizes:
            if point_name(size) not in names:
                raise ConfigError(f"supersub_sizes: {point_name(size)} is not one of the "
                                  f"sizes ({', '.join(names)})")
        bits = []
        for value in self.bits:
            try:
                bits.append(parse_bits(value))
            except ConfigError:
                raise ConfigError(f"bits: entries must be float or 2..8, got {value!r}") from None
        if self.supersub_sizes and not bits:
            raise ConfigError("bits: supersub_sizes needs at least one bit width")
        self.bits = bits
        if not self.name or "/" in self.name:
            raise ConfigError(f"name must be a folder name, got {self.name!r}")


#: Overrides of the quick profile (``scale --quick``): small data, one epoch, three
#: small sizes and one 8-bit system; about two minutes on two cores.
SCALING_QUICK_PROFILE = [
    "name=scaling_quick", "base.data.max_per_class=20", "base.preview.images_per_superclass=6",
    "base.train.epochs=1", "base.train.batch_size=32", "base.train.warmup_epochs=0",
    "sizes=[resnet8_w0.25, resnet8_w0.5, resnet20_w0.5]", "supersub_sizes=[resnet8_w0.25]",
    "bits=[8]", "timing.latency_repetitions=10", "timing.throughput_repetitions=2",
    "timing.throughput_batch=128", "timing.warmup=1"]


# ------------------------------------------------------------------------------ sizes


def parse_size(value: Any, where: str = "sizes") -> dict[str, Any]:
    """``{model, width}`` from a mapping or a point name such as ``resnet20_w0.5``.

    Raises:
        ConfigError: Naming ``where`` on a malformed entry, an unregistered model or a
            width that is not a positive number.
    """
    from supersub_tf.models import list_models

    if isinstance(value, str):
        match = _SIZE_NAME.match(value.strip())
        if not match:
            raise ConfigError(f"{where}: {value!r} is neither {{model: ..., width: ...}} nor "
                              "a name like resnet20_w0.5")
        model, width = match["model"], match["width"]
    elif isinstance(value, dict):
        unknown = set(value) - {"model", "width"}
        if unknown or "model" not in value:
            raise ConfigError(f"{where}: expected keys model and width, got {sorted(value)}")
        model, width = value["model"], value.get("width", 1.0)
    else:
        raise ConfigError(f"{where}: expected {{model: ..., width: ...}} or a name like "
                          f"resnet20_w0.5, got {value!r}")
    if model not in list_models():
        raise ConfigError(f"{where}: model {model!r} is not a registered backbone; choose one "
                          f"of {list_models()}")
    try:
        width = float(width)
    except (TypeError, ValueError):
        width = math.nan
    if isinstance(value, dict) and isinstance(value.get("width"), bool) \
            or not math.isfinite(width) or width <= 0:
        raise ConfigError(f"{where}: width must be a positive number, got {value!r}")
    return {"model": str(model), "width": width}


def point_name(size: dict[str, Any]) -> str:
    """The folder of one size: ``resnet20_w0.5``, ``resnet20_w1``."""
    return f"{size['model']}_w{size['width']:g}"


# ------------------------------------------------------------------------------ config


def load_scaling_config(path: str | os.PathLike | None = None,
                        overrides: list[str] | None = None) -> ScalingConfig:
    """Reads a scaling YAML (or the defaults when ``path`` is None) and applies overrides.

    ``base`` may be a path to a run config (relative to the scaling file's folder) or a
    mapping of RunConfig settings; see :func:`~supersub_tf.config.load_study_config`.
    ``sizes=[resnet8_w0.25, resnet20_w1]`` replaces a list. Every key is checked; an
    unknown one is named with its full path.
    """
    return load_study_config(ScalingConfig, path, overrides)


def study_dir(config: ScalingConfig) -> Path:
    """``<output_dir>/<name>``: the study's folder."""
    return Path(config.output_dir) / config.name


def is_supersub_size(config: ScalingConfig, size: dict[str, Any]) -> bool:
    return point_name(size) in {point_name(s) for s in config.supersub_sizes}


def point_config(config: ScalingConfig, size: dict[str, Any]) -> RunConfig:
    """The run config of one size: the base with only the backbone changed.

    Its run directory is ``<output_dir>/<name>/<model>_w<width>``; its networks are the
    vanilla one, plus the generalist and the delta specialists at ``config.bits`` for a
    Super-Sub size.
    """
    base = config.base
    supersub = is_supersub_size(config, size)
    return dataclasses.replace(
        base, name=point_name(size), output_dir=str(study_dir(config)),
        train=dataclasses.replace(base.train, model=size["model"], width=size["width"]),
        networks=["vanilla", "generalist", "supersub"] if supersub else ["vanilla"],
        deltas=dataclasses.replace(base.deltas, bits=list(config.bits)) if supersub
        else base.deltas)


# ------------------------------------------------------------------------------ training


def point_is_trained(config: RunConfig) -> bool:
    """True when every network and system of a point's config is finished."""
    from supersub_tf.deltas.storage import MANIFEST
    from supersub_tf.run import run_dir_of

    run_dir = run_dir_of(config)
    done = (run_dir / "vanilla" / "metrics.json").is_file()
    if "supersub" in config.networks:
        for tag in map(bits_tag, config.deltas.bits):
            done &= (run_dir / "supersub" / f"{tag}.json").is_file()
            done &= (run_dir / "systems" / tag / MANIFEST).is_file()
    return done


def train_point(config: RunConfig, source=None, log=print, retrain: bool = False) -> None:
    """Trains what one point lacks, with the main job's resumable stages.

    Raises:
        StaleRunError: When the point's folder holds stages trained with other settings
            (``retrain`` trains those again instead).
    """
    from supersub_tf.run import run_dir_of, supersub_stage, train_stage

    run_dir = run_dir_of(config)
    ensure_fresh(config, run_dir, retrain, log)
    if point_is_trained(config):
        log(f"[scale {config.name}] already trained")
        return
    if not (run_dir / "vanilla" / "metrics.json").is_file():
        train_stage(config, "vanilla", source, log)
    if "supersub" in config.networks:
        supersub_stage(config, source, log)  # trains the generalist first if missing


# ------------------------------------------------------------------------------ costs


def model_macs(model) -> dict[str, int]:
    """Multiply-accumulates per image of a Keras model's convolution and dense layers.

    A convolution costs ``H_out * W_out * k_h * k_w * C_in / groups * C_out`` (depthwise:
    ``H_out * W_out * k_h * k_w * C_in * multiplier``), a dense layer ``inputs * units``
    per position. Batch norm (folded into the convolution at inference), additions,
    activations and pooling are not counted. Nested models are walked.
    """
    import tf_keras as keras

    conv = dense = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            nested = model_macs(layer)
            conv, dense = conv + nested["conv_macs"], dense + nested["dense_macs"]
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, _ = layer.output_shape
            kh, kw = layer.kernel_size
            conv += h * w * kh * kw * layer.input_shape[-1] * layer.depth_multiplier
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output_shape
            kh, kw = layer.kernel_size
            conv += h * w * kh * kw * (layer.input_shape[-1] // layer.groups) * c_out
        elif isinstance(layer, keras.layers.Dense):
            shape = layer.input_shape
            positions = math.prod(d for d in shape[1:-1]) if len(shape) > 2 else 1
            dense += positions * shape[-1] * layer.units
    return {"macs": int(conv + dense), "conv_macs": int(conv), "dense_macs": int(dense)}


def timed_calls(fn, repetitions: int, warmup: int) -> list[float]:
    """Seconds of ``repetitions`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repetitions):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def time_inference(predict, images, timing: TimingConfig) -> dict[str, Any]:
    """Latency (median ms of a call on ``latency_batch`` images) and throughput (images/s
    at ``throughput_batch``) of ``predict(images)``, after ``warmup`` untimed calls."""
    import tensorflow as tf

    small = tf.constant(images[:timing.latency_batch])
    large = tf.constant(images[:timing.throughput_batch])
    t_small = timed_calls(lambda: predict(small), timing.latency_repetitions, timing.warmup)
    t_large = timed_calls(lambda: predict(large), timing.throughput_repetitions, timing.warmup)
    return {"latency_batch": int(small.shape[0]), "latency_ms": 1e3 * statistics.median(t_small),
            "latency_ms_min": 1e3 * min(t_small), "latency_repetitions": len(t_small),
            "throughput_batch": int(large.shape[0]),
            "throughput_ips": large.shape[0] / statistics.median(t_large),
            "throughput_repetitions": len(t_large)}


def timing_images(dataset, count: int):
    """The first ``count`` images of an ordered, batched dataset (repeated if fewer)."""
    import numpy as np

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
    from supersub_tf.training.history import read_history

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
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from supersub_tf.training.engine import FINAL_WEIGHTS, HISTORY
    from supersub_tf.training.networks import load_network

    name = point_name(size)
    run_dir = study_dir(config) / name
    vdir = run_dir / "vanilla"
    metrics = json.loads((vdir / "metrics.json").read_text())

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

    key = {"weights": _fingerprint(vdir / FINAL_WEIGHTS, vdir / "metrics.json"),
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
        "latency_ms": timing.get("latency_ms"), "throughput_ips": timing.get("throughput_ips"),
        "timing": timing or None,
        "top1": metrics["top1"], "top5": metrics["top5"],
        "final_train_accuracy": train_acc, "final_val_accuracy": val_acc,
        "train_val_gap": gap,
        "train_seconds": metrics["train_seconds"], "epochs": metrics["epochs"],
        "train_images": metrics["train_images"], "val_images": metrics["val_images"],
        "curves": {"vanilla": curves},
    }


def _host_bytes(system) -> int:
    """Host memory of a loaded pipeline beyond its device weights: the delta sets and
    the host copies of every weight a specialist changes (to restore the generalist)."""
    import numpy as np

    from supersub_tf.deltas.delta_set import touched_layers

    delta_sets = system.delta_sets
    copies = sum(w.numpy().nbytes for n in touched_layers(delta_sets.values())
                 for w in system.generalist.get_layer(n).weights)
    deltas = sum(q.codes.nbytes + (q.scales.nbytes if q.scales is not None else 0)
                 for d in delta_sets.values() for q in d.deltas.values())
    owned = sum(np.asarray(w).nbytes for d in delta_sets.values()
                for ws in d.owned.values() for w in ws)
    return int(copies + deltas + owned)


def supersub_record(config: ScalingConfig, size: dict[str, Any], bits: int | None, val,
                    images, log=print) -> dict:
    """The record of one Super-Sub point (its system must be trained and evaluated)."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from supersub_tf.deltas.storage import MANIFEST, load_system, storage_report
    from supersub_tf.models.blocks import LOGITS_LAYER
    from supersub_tf.supersub.pipeline import SuperSubPipeline
    from supersub_tf.deltas.specialist_training import deltas_dir
    from supersub_tf.training.engine import HISTORY

    name, tag = point_name(size), bits_tag(bits)
    run_dir = study_dir(config) / name
    system_dir = run_dir / "systems" / tag
    result = json.loads((run_dir / "supersub" / f"{tag}.json").read_text())
    report = storage_report(system_dir)
    generalist_metrics = json.loads((run_dir / "generalist" / "metrics.json").read_text())

    def measure() -> dict:
        keras.backend.clear_session()
        system = load_system(system_dir)
        h = system.hierarchy
        pipeline = SuperSubPipeline(system.generalist, system.delta_sets, h)
        generalist_macs = model_macs(system.generalist)
        head = system.generalist.get_layer(LOGITS_LAYER)
        features = int(head.input_shape[-1])
        trunk_macs = generalist_macs["macs"] - features * head.units
        heads = [features * h.num_subclasses(s) for s in h.superclass_names]
        macs = generalist_macs["macs"] + trunk_macs + sum(heads) / len(heads)
        right1 = right5 = total = 0
        for batch, labels in val.dataset:
            fine_probs = pipeline.predict(batch, "hard").fine_probs
            fine = labels["fine"].numpy()
            top5 = np.argsort(-fine_probs, axis=1)[:, :5]
            right1 += int((top5[:, 0] == fine).sum())
            right5 += int((top5 == fine[:, None]).any(1).sum())
            total += len(fine)
        measured = {"macs": int(round(macs)), "generalist_macs": generalist_macs["macs"],
                    "trunk_macs": int(trunk_macs), "top1_hard": right1 / total,
                    "top5_hard": right5 / total,
                    "device_parameters": int(system.generalist.count_params()),
                    "host_bytes": _host_bytes(system)}
        if config.timing.enabled:
            timing = time_inference(lambda x: pipeline.predict(x, "hard"), images,
                                    config.timing)
            routed = pipeline.superclass_probs(tf.constant(images[:timing["throughput_batch"]]))
            timing["specialists_per_throughput_batch"] = int(len(np.unique(routed.argmax(1))))
            measured["timing"] = timing
        return measured

    key = {"system": _fingerprint(system_dir / MANIFEST),
           "timing": dataclasses.asdict(config.timing)}
    measured = _cached(run_dir / "scaling" / f"supersub_{tag}.json", key, measure, log,
                       f"{name} {tag}")
    specialists = report["specialists"]
    n = report["num_specialists"]
    payload = sum(s["code_bytes"] + s["scale_bytes"] + s["owned_bytes"] for s in specialists)
    owned_values = sum(s["owned_bytes"] for s in specialists) // 4
    generalist_params = int(report["parameters"])
    sdirs = [deltas_dir(run_dir, bits) / s["superclass"] for s in specialists]
    spec_curves = [history_curves(d / HISTORY) for d in sdirs]
    spec_seconds = sum(json.loads((d / "metrics.json").read_text())["train_seconds"]
                       for d in sdirs)
    gen_curves = history_curves(run_dir / "generalist" / HISTORY)
    mean_spec = mean_curves(spec_curves)
    gen_train, gen_val, gen_gap = final_gap(gen_curves)
    spec_train, spec_val, spec_gap = final_gap(mean_spec)
    timing = measured.get("timing") or {}
    routing = result["routing"]
    return {
        "point": name, "kind": f"supersub-{tag}",
        "label": f"Super-Sub {size['model']} x{size['width']:g}, {tag}",
        "model": size["model"], "width": size["width"], "bits": bits,
        "run_dir": str(run_dir), "system": str(system_dir),
        "parameters": generalist_params,
        "total_parameters": generalist_params + n * report["delta_values"] + owned_values,
        "device_parameters": measured["device_parameters"],
        "delta_values_per_specialist": report["delta_values"], "num_specialists": n,
        "stored_bytes": generalist_params * 4 + payload, "file_bytes": report["total_bytes"],
        "host_bytes": measured["host_bytes"], "storage_a": report["a"],
        "storage_units": report["a_n_plus_1"],
        "macs_per_image": measured["macs"], "flops_per_image": 2 * measured["macs"],
        "latency_ms": timing.get("latency_ms"), "throughput_ips": timing.get("throughput_ips"),
        "timing": timing or None,
        "top1": routing["hard"]["top1"], "top5": measured["top5_hard"],
        "top1_topk": routing["topk"]["top1"], "top1_oracle": routing["oracle"]["top1"],
        "stage1_superclass_accuracy": routing["hard"]["stage1_superclass_accuracy"],
        "final_train_accuracy": None, "final_val_accuracy": None, "train_val_gap": None,
        "generalist_train_accuracy": gen_train, "generalist_val_accuracy": gen_val,
        "generalist_gap": gen_gap, "specialist_train_accuracy": spec_train,
        "specialist_val_accuracy": spec_val, "specialist_gap": spec_gap,
        "train_seconds": round(generalist_metrics["train_seconds"] + spec_seconds, 1),
        "epochs": generalist_metrics["epochs"],
        "train_images": generalist_metrics["train_images"],
        "val_images": generalist_metrics["val_images"],
        "curves": {"generalist": gen_curves, "specialists_mean": mean_spec},
    }


# ------------------------------------------------------------------------------ runner


def run_scaling(config: ScalingConfig, log=print, retrain: bool = False) -> Path:
    """Trains every missing point, measures all of them, writes the report.

    Holds the study folder's lock; every point is checked for stale stages before any
    training (``retrain`` trains those again instead of refusing).

    Returns:
        The study folder ``<output_dir>/<name>`` (``scaling.json``, ``scaling.md``,
        ``plots/``).
    """
    out = study_dir(config)
    with run_lock(out):
        return _run_study(config, out, log, retrain)


def _run_study(config: ScalingConfig, out: Path, log, retrain: bool) -> Path:
    from supersub_tf.analysis.scaling_plots import points_table, write_scaling_outputs
    from supersub_tf.data import create_source, load_dataset
    from supersub_tf.run import run_dir_of

    start = time.time()
    save_config(config, out / "scaling_config.yaml")
    configs = [point_config(config, size) for size in config.sizes]
    tags = ", ".join(map(bits_tag, config.bits))
    log(f"[scale] {config.name}: {len(configs)} vanilla sizes "
        f"({', '.join(c.name for c in configs)}); Super-Sub ({tags}) on "
        f"{', '.join(map(point_name, config.supersub_sizes)) or 'none'}")
    for cfg in configs:  # refuse stale folders before hours of training
        ensure_fresh(cfg, run_dir_of(cfg), retrain, log)
    source = create_source(config.base.data)
    for i, cfg in enumerate(configs, 1):
        log(f"[scale] point {i}/{len(configs)}: {cfg.name} ({', '.join(cfg.networks)})")
        train_point(cfg, source, log, retrain)
    trained = time.time()
    base = config.base
    val = load_dataset(base.data, "val", training=False, batch_size=base.train.eval_batch_size,
                       source=source)
    images = timing_images(val.dataset, max(config.timing.latency_batch,
                                            config.timing.throughput_batch))
    points = []
    for size in config.sizes:
        log(f"[scale] measuring {point_name(size)}")
        points.append(vanilla_record(config, size, images, log))
        if is_supersub_size(config, size):
            for bits in config.bits:
                points.append(supersub_record(config, size, bits, val, images, log))
    study = {
        "name": config.name, "study_dir": str(out),
        "config": config_to_dict(config),
        "dataset": base.data.dataset, "hierarchy": source.hierarchy.name,
        "num_classes": source.hierarchy.num_classes,
        "num_superclasses": source.hierarchy.num_superclasses,
        "image_size": base.data.image_size, "epochs": base.train.epochs,
        "wall_seconds": round(time.time() - start, 1),
        "measure_seconds": round(time.time() - trained, 1),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "points": points,
    }
    atomic_write_text(out / "scaling.json", json.dumps(study, indent=2) + "\n")
    report = write_scaling_outputs(study, out)
    log(points_table(points))
    log(f"[scale] {report} ({time.time() - start:.0f} s)")
    return out


__all__ = ["SCALING_QUICK_PROFILE", "ScalingConfig", "TimingConfig", "load_scaling_config",
           "model_macs", "parse_size", "point_config", "point_name",
           "run_scaling", "study_dir", "train_point"]
