"""LiteRT (TFLite) export of a Super-Sub system: one model per network, plus a manifest.

:func:`export_tflite` turns a loaded :class:`~supersub_tf.deltas.storage.SuperSubSystem`
into a folder that runs on its own with only ``ai_edge_litert`` and numpy::

    manifest.json              format, hierarchy, input spec, every model's file entry
    generalist.tflite          image -> superclass logits
    specialists/00_<name>.tflite, ...   image -> that superclass's subclass logits
    litert_runtime.py          the two-stage pipeline (a copy of
                               supersub_tf/export/litert_runtime.py)
    supersub_routing.py        routing and combination (supersub_tf/supersub/routing.py)
    supersub_manifest_files.py the file checks (supersub_tf/manifest_files.py)

Each specialist is first materialized (``W + dequantized delta``, its own batch norms
and head: exactly the network its quantization-aware training computed) and then
converted like the generalist. By default (``quantization="int8"``) every model is
*full-integer*: int8 weights (per output channel) and int8 activations calibrated on
training images, int8 input and output tensors, and only integer builtin ops (the
export checks that no float32 tensor is left). The other modes trade size or speed for
fidelity to the Keras models:

==========  ====================================  ==========================
mode        weights / activations                  calibration
==========  ====================================  ==========================
int8        int8 / int8 (full integer)            training images
int16x8     int8 / int16 (full integer, slow)     training images
dynamic     int8 / float32 (dynamic range)        none
float16     float16 / float32                     none
float32     float32 / float32                     none
==========  ====================================  ==========================

Design choices:

* **int8 input and output, not uint8.** int8 is LiteRT's native quantized type: a uint8
  input or output only adds a requantize op at each end. The runtime never hands raw
  pixels to a model anyway: it normalises the uint8 pixels in float32 exactly as the
  training pipeline does (same constants, same operations, so the same float values)
  and quantizes them with the model's own input scale and zero point, which keeps one
  preprocessing path for every mode (float models take the float32 values as they are).
  Outputs are dequantized logits; the softmax and the ``p(superclass) *
  p(subclass | superclass)`` combination run in float32 numpy.
* **Calibration from the training split, balanced.** The activation ranges come from
  training images (never the images an export is evaluated on): the generalist gets an
  equal share from every superclass, each specialist the images of its own superclass
  (the only images it ever sees at inference under hard routing). The images go through
  the same resize and normalisation as evaluation, without augmentation.

The measurement helpers (:func:`compare_with_keras`, :func:`export_sizes`,
:func:`benchmark_litert`, :func:`measure_export`) compare an export with the Keras
:class:`~supersub_tf.supersub.pipeline.SuperSubPipeline` it came from.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from supersub_tf.atomic import atomic_directory
from supersub_tf.config import EXPORT_QUANTIZATIONS
from supersub_tf.errors import ConfigError, DataError
from supersub_tf.export import litert_runtime
from supersub_tf.export.litert_runtime import FORMAT_NAME, FORMAT_VERSION, MANIFEST
from supersub_tf.manifest_files import file_entry
from supersub_tf.models.blocks import LOGITS_LAYER

if TYPE_CHECKING:
    from supersub_tf.config import DataConfig
    from supersub_tf.data.source import ImageSource
    from supersub_tf.deltas.storage import SuperSubSystem

#: Conversion modes (see the module docstring); the config validates against the same tuple.
QUANTIZATIONS = EXPORT_QUANTIZATIONS
#: Modes whose activations are calibrated (they need representative images).
CALIBRATED = ("int8", "int16x8")
RUNTIME_FILE = "litert_runtime.py"
GENERALIST_FILE = "generalist.tflite"
SPECIALIST_DIR = "specialists"
DEFAULT_CALIBRATION_SIZE = 256
_EXPORT_KIND = "Super-Sub LiteRT export"
#: Share of identical fine labels (LiteRT vs Keras, hard routing) an export aims for.
AGREEMENT_TARGET = 0.99
#: Keras decision margins (distance from a tie, see keras_predict) at which agreement is
#: also reported.
MARGINS = (0.01, 0.05, 0.1)


# ------------------------------------------------------------------------------ images
def normalization_constants(mode: str) -> tuple[float, tuple, tuple]:
    """``(pixel divisor, mean, std)`` with ``normalised = (pixel / divisor - mean) / std``.

    The same arithmetic as :func:`supersub_tf.data.pipeline.normalize` for each mode
    (``imagenet``, ``unit``, ``none``), so the runtime's float32 values equal the
    training pipeline's.
    """
    from supersub_tf.data.pipeline import IMAGENET_MEAN, IMAGENET_STD

    if mode == "imagenet":
        return 255.0, tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)
    if mode == "unit":
        return 255.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if mode == "none":
        return 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    raise ConfigError(f"normalization must be imagenet, unit or none, got {mode!r}")


def normalize_images(images: np.ndarray, mode: str) -> np.ndarray:
    """uint8 pixels ``[N, H, W, 3]`` -> float32 model input, as the runtime computes it."""
    divisor, mean, std = normalization_constants(mode)
    x = np.asarray(images).astype(np.float32) / np.float32(divisor)
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def load_images(data_config: DataConfig, split: str, *, source: ImageSource | None = None,
                per_superclass: int | None = None, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """A split's images as uint8 pixels at the configured size, with their fine labels.

    Args:
        data_config: Data settings (image size; the source is created from them).
        split: ``train``, ``val`` or ``test``.
        source: Reuse an already created source.
        per_superclass: Take only this many images of every superclass, drawn at random
            (with ``seed``) before decoding, so only those are read; None: the whole
            split in the source's order.
        seed: Seed of that draw.

    Returns:
        ``uint8 [N, S, S, 3]`` images (resized as the training pipeline does, not
        normalised, not augmented) and ``int32 [N]`` fine labels.
    """
    import tensorflow as tf

    from supersub_tf.data import create_source
    from supersub_tf.data.pipeline import resize

    src = source or create_source(data_config)
    src.check_split(split)
    hierarchy = src.hierarchy
    size = data_config.image_size
    if per_superclass is None:
        raws = [src.raw(split)]
    else:
        if per_superclass < 1:
            raise ConfigError(f"per_superclass must be >= 1, got {per_superclass}")
        raws = [src.raw(split, hierarchy.fine_labels_of(s), order_seed=seed + s)
                .take(per_superclass) for s in range(hierarchy.num_superclasses)]
    images, labels = [], []
    for raw in raws:
        ds = raw.map(lambda image, fine: (resize(image, size), tf.cast(fine, tf.int32)),
                     num_parallel_calls=tf.data.AUTOTUNE).batch(512)
        for batch_images, batch_fine in ds:
            images.append(batch_images.numpy())
            labels.append(batch_fine.numpy())
    if not images:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros(0, np.int32)
    return np.concatenate(images), np.concatenate(labels).astype(np.int32)


def calibration_images(data_config: DataConfig, *, source: ImageSource | None = None,
                       per_superclass: int = DEFAULT_CALIBRATION_SIZE, seed: int = 0
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Representative images for :func:`export_tflite`: ``per_superclass`` random
    *training* images of every superclass, uint8, with their fine labels."""
    return load_images(data_config, "train", source=source, per_superclass=per_superclass,
                       seed=seed)


def evaluation_images(data_config: DataConfig, *, source: ImageSource | None = None,
                      count: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Validation images (uint8) and fine labels for comparing an export with Keras:
    the whole split, or a seeded random subset of ``count`` images in split order."""
    images, fine = load_images(data_config, "val", source=source)
    if count and count < len(images):
        keep = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
        images, fine = images[keep], fine[keep]
    return images, fine


def _balanced(fine_to_superclass: np.ndarray, fine: np.ndarray, superclasses: list[int],
              count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to ``count`` images, an equal share (as far as there are images)
    from each of ``superclasses``, drawn at random."""
    pools = [rng.permutation(np.flatnonzero(fine_to_superclass[fine] == s))
             for s in superclasses]
    quota = [0] * len(pools)
    remaining = count
    while remaining > 0:  # round-robin over the superclasses that still have images
        open_pools = [i for i, p in enumerate(pools) if quota[i] < len(p)]
        if not open_pools:
            break
        share = max(1, remaining // len(open_pools))
        for i in open_pools:
            take = min(share, len(pools[i]) - quota[i], remaining)
            quota[i] += take
            remaining -= take
            if remaining == 0:
                break
    return np.sort(np.concatenate([p[:q] for p, q in zip(pools, quota)]).astype(np.int64))


# ------------------------------------------------------------------------------ convert
def convert_model(model, quantization: str = "int8",
                  representative: np.ndarray | None = None) -> bytes:
    """Converts one Keras model to a ``.tflite`` flatbuffer.

    Args:
        model: A float Keras model (normalised float32 images -> logits).
        quantization: One of :data:`QUANTIZATIONS`.
        representative: Normalised float32 images ``[N, H, W, 3]`` for the calibrated
            modes (``int8``, ``int16x8``), fed one at a time.

    Raises:
        ConfigError: For an unknown mode, or a calibrated mode without images.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization in CALIBRATED:
        if representative is None or not len(representative):
            raise ConfigError(f"{quantization} quantization needs representative images")
        data = np.asarray(representative, np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([data[i:i + 1]] for i in range(len(data)))
        if quantization == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            io_type = tf.int8
        else:
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            io_type = tf.int16
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    with warnings.catch_warnings():
        # Printed for every integer-input conversion: it asks for the legacy
        # quantized_input_stats, which the representative dataset replaces.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()


def _tensor_spec(detail: Mapping[str, Any]) -> dict[str, Any]:
    scale, zero = detail["quantization"]
    return {"dtype": np.dtype(detail["dtype"]).name,
            "shape": [int(d) for d in detail["shape_signature"]],
            "scale": float(scale), "zero_point": int(zero)}


def inspect_model(path: str | os.PathLike) -> dict[str, Any]:
    """A ``.tflite`` file's input and output specs (dtype, shape, quantization), its op
    names and how many float32 tensors it has (0 for a full-integer model)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = interpreter.get_tensor_details()
    try:  # a private method: LiteRT has no public op listing
        ops = sorted({op["op_name"] for op in interpreter._get_ops_details()})
    except AttributeError:
        ops = None
    return {"input": _tensor_spec(interpreter.get_input_details()[0]),
            "output": _tensor_spec(interpreter.get_output_details()[0]),
            "ops": ops,
            "float_tensors": sum(np.dtype(t["dtype"]) == np.float32 for t in tensors)}


def _specialist_file(index: int, name: str) -> str:
    """``specialists/<index>_<safe name>.tflite``: unique by index, readable by name."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "s"
    return f"{SPECIALIST_DIR}/{index:02d}_{safe}.tflite"


def _write_model(root: Path, relative: str, model, quantization: str,
                 representative: np.ndarray | None) -> dict[str, Any]:
    """Converts, writes and inspects one model; its manifest entry (without roles)."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(convert_model(model, quantization, representative))
    info = inspect_model(path)
    if quantization == "int8" and info["float_tensors"]:
        raise DataError(f"{path}: the int8 conversion left {info['float_tensors']} float32 "
                        f"tensors (ops {info['ops']}); the model is not full-integer")
    entry = file_entry(root, relative)
    entry.update(input=info["input"], output=info["output"], ops=info["ops"],
                 calibration_images=0 if representative is None else int(len(representative)))
    return entry


def export_tflite(system: SuperSubSystem, out_dir: str | os.PathLike,
                  images: np.ndarray | None = None, fine: np.ndarray | None = None, *,
                  quantization: str = "int8",
                  calibration_size: int = DEFAULT_CALIBRATION_SIZE, seed: int = 0) -> Path:
    """Writes a system as LiteRT models with a manifest and the runtime, atomically.

    Args:
        system: A loaded system (:func:`~supersub_tf.deltas.storage.load_system`).
        out_dir: The export folder to create or replace (an earlier export, an empty
            folder, or nothing; anything else is refused).
        images: Representative *training* images, ``uint8 [N, S, S, 3]`` at the
            backbone's image size (:func:`calibration_images` draws them); needed for
            ``int8`` and ``int16x8``, ignored otherwise.
        fine: Their fine labels ``[N]`` (to pick each model's calibration images).
        quantization: One of :data:`QUANTIZATIONS` (see the module docstring).
        calibration_size: Images per model: the generalist gets this many, balanced
            over the superclasses; each specialist up to this many of its superclass.
        seed: Seed of that selection.

    Returns:
        The export folder.

    Raises:
        ConfigError: For an unknown mode, or calibration images that are missing, of
            another size or dtype, or lack a superclass.
        DataError: When ``out_dir`` cannot be replaced, or an int8 model is not
            full-integer.
    """
    from supersub_tf.deltas.specialist import materialize

    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    h = system.hierarchy
    catch_all = any(d.catch_all for d in system.delta_sets.values())
    size = int(system.backbone["image_size"])
    mode = system.backbone.get("normalization", "imagenet")
    divisor, mean, std = normalization_constants(mode)
    calibrate = quantization in CALIBRATED
    if calibrate:
        images, fine = _check_calibration(images, fine, size, h)
        x = normalize_images(images, mode)
    rng = np.random.default_rng(seed)

    def representative(superclasses: list[int]) -> np.ndarray | None:
        if not calibrate:
            return None
        return x[_balanced(h.fine_to_superclass, fine, superclasses, calibration_size, rng)]

    with atomic_directory(out_dir, MANIFEST, _EXPORT_KIND) as work:
        generalist = {"role": "generalist", "num_outputs": h.num_superclasses,
                      **_write_model(work, GENERALIST_FILE, system.generalist, quantization,
                                     representative(list(range(h.num_superclasses))))}
        specialists = []
        for k, name in enumerate(h.superclass_names):
            model = materialize(system.generalist, system.delta_sets[name])
            entry = _write_model(work, _specialist_file(k, name), model, quantization,
                                 representative([k]))
            specialists.append({"superclass": name, "num_subclasses": h.num_subclasses(k),
                                "num_outputs": h.num_subclasses(k) + int(catch_all), **entry})
        shutil.copyfile(Path(litert_runtime.__file__), work / RUNTIME_FILE)
        for copy_name, module in litert_runtime.MODULE_COPIES.items():
            shutil.copyfile(Path(module.__file__), work / copy_name)
        manifest = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            "quantization": quantization,
            "catch_all": catch_all,
            "hierarchy": h.to_dict(),
            "input": {"size": size, "dtype": "uint8", "shape": [None, size, size, 3],
                      "layout": "NHWC", "channels": "RGB", "normalization": mode,
                      "pixel_divisor": divisor, "mean": list(mean), "std": list(std),
                      "formula": "(pixel / pixel_divisor - mean) / std in float32, then "
                                 "each model's input quantization"},
            "calibration": ({"split": "train", "images_per_model": calibration_size,
                             "generalist": "balanced over superclasses",
                             "specialists": "images of their superclass", "seed": seed}
                            if calibrate else None),
            "source_system": {"path": None if system.path is None else str(system.path),
                              "backbone": dict(system.backbone),
                              "delta_settings": dict(system.delta_settings)},
            "generalist": generalist,
            "specialists": specialists,
            "runtime": file_entry(work, RUNTIME_FILE),
            "runtime_modules": [file_entry(work, name) for name in litert_runtime.MODULE_COPIES],
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
    return Path(out_dir)


def _check_calibration(images, fine, size: int, hierarchy) -> tuple[np.ndarray, np.ndarray]:
    if images is None or fine is None:
        raise ConfigError("int8 export needs representative training images and their fine "
                          "labels (see calibration_images)")
    images, fine = np.asarray(images), np.asarray(fine).reshape(-1)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise ConfigError(f"calibration images must be uint8 [N, {size}, {size}, 3], got "
                          f"{images.dtype} {list(images.shape)}")
    if len(fine) != len(images):
        raise ConfigError(f"{len(images)} calibration images but {len(fine)} labels")
    if len(fine) and (fine.min() < 0 or fine.max() >= hierarchy.num_classes):
        raise ConfigError(f"calibration labels must lie in 0..{hierarchy.num_classes - 1}")
    present = set(hierarchy.fine_to_superclass[fine].tolist())
    lacking = [n for k, n in enumerate(hierarchy.superclass_names) if k not in present]
    if lacking:
        raise ConfigError(f"no calibration images of superclass(es) {lacking}")
    return images, fine.astype(np.int64)


def open_export(export_dir: str | os.PathLike, num_threads: int | None = 2,
                verify: bool = True) -> litert_runtime.LiteRTSuperSub:
    """:class:`~supersub_tf.export.litert_runtime.LiteRTSuperSub` over an export, its
    :class:`~supersub_tf.export.litert_runtime.ExportError` raised as DataError."""
    try:
        return litert_runtime.LiteRTSuperSub(export_dir, num_threads=num_threads, verify=verify)
    except litert_runtime.ExportError as err:
        raise DataError(str(err)) from None


# ------------------------------------------------------------------------------ measure
def keras_predict(system: SuperSubSystem, images: np.ndarray, *, batch_size: int = 256,
                  routing: str = "hard") -> dict[str, np.ndarray]:
    """The Keras :class:`SuperSubPipeline`'s predictions on uint8 images, batch by batch.

    Returns:
        ``fine``, ``superclass``, ``fine_prob``, ``margin`` ``[N]`` and
        ``superclass_probs`` ``[N, S]``, plus ``seconds`` spent. ``margin`` is how far
        each decision is from a tie: the smaller of the superclass margin (top-1 minus
        top-2 of ``p(superclass)``, which decides the route) and the fine margin (top-1
        minus top-2 of the combined fine probabilities in the routed block).
    """
    from supersub_tf.supersub.pipeline import SuperSubPipeline

    pipeline = SuperSubPipeline(system.generalist, system.delta_sets, system.hierarchy)
    mode = system.backbone.get("normalization", "imagenet")
    parts: dict[str, list] = {"fine": [], "superclass": [], "fine_prob": [],
                              "superclass_probs": [], "margin": []}
    start = time.perf_counter()
    for i in range(0, len(images), batch_size):
        pred = pipeline.predict(normalize_images(images[i:i + batch_size], mode), routing)
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
    from supersub_tf.deltas.storage import storage_report

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
    from supersub_tf.analysis.costs import timed_calls

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
