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

How an export compares with the Keras pipeline (agreement, sizes, speed) is measured by
:mod:`supersub_tf.export.measure`; the images come from :mod:`supersub_tf.data.arrays`.

Function-level imports: TensorFlow's converter and the specialists' materialization
load TensorFlow, and LiteRT's interpreter is a native library of its own, loaded only
where a model is inspected or run: importing this module (``predict`` does) loads
neither.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from supersub_tf.atomic import atomic_directory, landing_folder
from supersub_tf.config import EXPORT_QUANTIZATIONS
from supersub_tf.data.pipeline import normalization_constants, normalize_images
from supersub_tf.errors import ConfigError, ExportError, OutputError
from supersub_tf.export import litert_runtime
from supersub_tf.export.litert_runtime import FORMAT_NAME, FORMAT_VERSION, MANIFEST
from supersub_tf.manifest_files import file_entry
from supersub_tf.progress import Progress

if TYPE_CHECKING:
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
#: Weight bytes per parameter of a converted model (int8, int16x8 and dynamic store int8
#: weights), a margin for biases and quantization parameters, and the flatbuffer's own
#: bytes per model: together an upper estimate of an export's size (the default run's
#: int8 models are 1.2 bytes per parameter; 6,351-parameter ones are 18 kB).
_WEIGHT_BYTES = {"float32": 4, "float16": 2}
_SIZE_MARGIN = 1.25
_MODEL_OVERHEAD_BYTES = 64 * 1024


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


# ------------------------------------------------------------------------------ space
def estimated_export_bytes(system: SuperSubSystem, quantization: str) -> int:
    """An upper estimate of the bytes :func:`export_tflite` writes: one model per network
    (stage 1 and every specialist, each about the size of the trunk) and the runtime."""
    per_model = (int(system.generalist.count_params() * _WEIGHT_BYTES.get(quantization, 1)
                     * _SIZE_MARGIN) + _MODEL_OVERHEAD_BYTES)
    copies = sum(Path(module.__file__).stat().st_size
                 for module in (litert_runtime, *litert_runtime.MODULE_COPIES.values()))
    return per_model * (1 + system.hierarchy.num_superclasses) + copies


def check_free_space(out_dir: str | os.PathLike, needed: int) -> None:
    """Refuses an export that cannot fit, before the first of its conversions (which take
    minutes) rather than at a write after them.

    Raises:
        OutputError: Naming ``out_dir``, when its filesystem has fewer than ``needed``
            bytes free (the new export is written beside the old one, which is replaced
            only when the new one is complete).
    """
    folder = landing_folder(out_dir)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OutputError(f"{out_dir}: cannot write it (the export needs about "
                          f"{needed / 1e6:,.1f} MB, {free / 1e6:,.1f} MB are free on "
                          f"{folder}'s filesystem)")


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
        raise ExportError(f"{path}: the int8 conversion left {info['float_tensors']} float32 "
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
        ExportError: When ``out_dir`` cannot be replaced, or an int8 model is not
            full-integer.
        OutputError: When the disk cannot take the export (checked before converting;
            a write that still fails stops the export at once).
    """
    from supersub_tf.deltas.specialist import materialize

    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    h = system.hierarchy
    catch_all = any(d.catch_all for d in system.delta_sets.values())
    size, mode = system.backbone.image_size, system.backbone.normalization
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

    check_free_space(out_dir, estimated_export_bytes(system, quantization))
    with atomic_directory(out_dir, MANIFEST, _EXPORT_KIND) as work:
        # Stage 1: a generalist (superclass logits) or the vanilla network (fine logits,
        # summed per superclass by the runtime: routing.stage_one_probs).
        # A conversion takes seconds to a minute each: one progress step per model.
        shown = Progress(1 + h.num_superclasses, "litert", unit="models")
        generalist = {"role": "generalist", "stage_one": system.stage_one_head,
                      "num_outputs": (h.num_classes if system.stage_one_head == "fine"
                                      else h.num_superclasses),
                      **_write_model(work, GENERALIST_FILE, system.generalist, quantization,
                                     representative(list(range(h.num_superclasses))))}
        shown.update()
        specialists = []
        for k, name in enumerate(h.superclass_names):
            model = materialize(system.generalist, system.delta_sets[name])
            entry = _write_model(work, _specialist_file(k, name), model, quantization,
                                 representative([k]))
            specialists.append({"superclass": name, "num_subclasses": h.num_subclasses(k),
                                "num_outputs": h.num_subclasses(k) + int(catch_all), **entry})
            shown.update()
        shown.close()
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
                              "backbone": system.backbone.to_dict(),
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
    """:class:`~supersub_tf.export.litert_runtime.LiteRTSuperSub` over an export.

    Raises:
        ExportError: When the folder fails the runtime's checks (inside the package the
            runtime raises :class:`supersub_tf.errors.ExportError` itself).
    """
    return litert_runtime.LiteRTSuperSub(export_dir, num_threads=num_threads, verify=verify)


