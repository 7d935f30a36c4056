"""Two-stage Super-Sub inference over a LiteRT export, with only numpy and ai_edge_litert.

This file is copied into every export folder written by
:func:`supersub_tf.export.tflite.export_tflite`, so the folder runs on its own::

    import numpy as np
    from litert_runtime import LiteRTSuperSub      # run from inside the export folder

    model = LiteRTSuperSub("path/to/export", num_threads=2)
    result = model.predict(images)                 # uint8 [N, H, W, 3] RGB pixels
    print(result["class_name"][0], result["fine_prob"][0])

In an export folder it imports neither TensorFlow nor ``supersub_tf`` (not even
indirectly), so it needs only ``pip install ai-edge-litert numpy``.

The export folder holds ``manifest.json``, ``generalist.tflite`` (image -> superclass
logits) and one ``specialists/*.tflite`` per superclass (image -> logits over that
superclass's subclasses). The runtime takes uint8 pixels already resized to the
manifest's size (or image files, through :func:`read_image_file` with Pillow, which
is optional: ``python litert_runtime.py EXPORT photo.jpg pictures/``), normalises them as in training (``(pixel / divisor - mean) / std``,
float32), quantizes them with each model's input quantization (for integer models) and
dequantizes the logits before the softmax. Stage 1 gives ``p(superclass)``; stage 2
runs each specialist once on the group of images routed to it (the interpreter's batch
is resized to the group), and the fine probability is ``p(superclass) *
p(subclass | superclass)``, exactly as ``supersub_tf.supersub.SuperSubPipeline``: the
routing and combination are ``supersub_routing.py``, a byte-for-byte copy of
``supersub_tf/supersub/routing.py`` in the export folder (every routing mode, catch-all
specialists included), and the file checks ``supersub_manifest_files.py``, a copy of
``supersub_tf/manifest_files.py``.

Opening an export checks everything before any image is run, and raises
:class:`ExportError` naming the file at fault: a missing or unreadable manifest, an
unknown format or version, a missing model file, a size or sha256 mismatch, a
hierarchy that disagrees with the models listed or with their output sizes, or a
model whose input does not match the manifest's image size.

Function-level imports: ``ai_edge_litert`` (a native interpreter, loaded when an export is
opened, so the package's ``predict`` and image readers import this module without it)
and Pillow (optional: only :func:`read_image_file` needs it).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

if __package__ == "supersub_tf.export":  # inside the package: its modules, its ExportError
    from supersub_tf import manifest_files
    from supersub_tf.errors import ExportError
    from supersub_tf.supersub import routing
else:  # in an export folder: byte-for-byte copies of the package's modules, beside this file
    _HERE = str(Path(__file__).resolve().parent)
    if _HERE not in sys.path:  # loaded by path (importlib), not run as a script
        sys.path.insert(0, _HERE)
    import supersub_manifest_files as manifest_files
    import supersub_routing as routing

    class ExportError(ValueError):
        """An export folder that cannot be used: the message names the file and the problem.

        Defined here only where the package is absent (an export folder); inside the
        package this is :class:`supersub_tf.errors.ExportError`, also a ValueError, so
        ``except ValueError`` catches either.
        """


FORMAT_NAME = "supersub-litert"
FORMAT_VERSION = 1
MANIFEST = manifest_files.MANIFEST
#: The copies of package modules an export folder holds next to this runtime.
MODULE_COPIES = {"supersub_routing.py": routing, "supersub_manifest_files.py": manifest_files}
#: The routing modes :meth:`LiteRTSuperSub.predict` takes: every mode of the registry.
ROUTINGS = routing.ALL_ROUTINGS
sha256_file = manifest_files.sha256_file
_routing_mode = routing.routing_mode  # predict's argument ``routing`` hides the module
_INTEGER_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def read_manifest(export_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads an export's manifest and checks its format, version and required keys.

    Raises:
        ExportError: On a missing or unreadable manifest, another format, an unknown
            version or a missing key.
    """
    path = Path(export_dir) / MANIFEST
    manifest = manifest_files.read_manifest_file(export_dir, FORMAT_NAME, ExportError,
                                                 "Super-Sub LiteRT export")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path}: unknown format version {manifest.get('format_version')!r} "
                          f"(this runtime reads {FORMAT_VERSION})")
    missing = [k for k in ("hierarchy", "input", "generalist", "specialists") if k not in manifest]
    if missing:
        raise ExportError(f"{path}: missing {missing}")
    return manifest


def verify_file(root: Path, entry: Any) -> Path:
    """Checks that a listed file exists with the manifest's size and sha256.

    Raises:
        ExportError: Naming the file when it is missing, lies outside the export, or
            its size or sha256 differs from the manifest's.
    """
    return manifest_files.verify_file(root, entry, ExportError, "export")


class _Hierarchy:
    """The parts of the manifest's hierarchy the runtime needs (names, ids, label maps)."""

    def __init__(self, data: Any, source: str) -> None:
        try:
            supers = [(str(s["name"]), [(str(c["id"]), str(c["name"])) for c in s["subclasses"]])
                      for s in data["superclasses"]]
        except (KeyError, TypeError):
            raise ExportError(f"{source}: malformed hierarchy; expected superclasses: "
                              "[{name, subclasses: [{id, name}]}]") from None
        if not supers:
            raise ExportError(f"{source}: the hierarchy has no superclasses")
        names = [name for name, _ in supers]
        if len(set(names)) != len(names):
            raise ExportError(f"{source}: the hierarchy repeats a superclass name ({names})")
        empty = [name for name, subs in supers if not subs]
        if empty:
            raise ExportError(f"{source}: superclass(es) {empty} have no subclasses")
        self.name = str(data.get("name", ""))
        self.superclass_names = names
        self.sizes = [len(subs) for _, subs in supers]
        self.class_ids = [i for _, subs in supers for i, _ in subs]
        self.class_names = [n for _, subs in supers for _, n in subs]
        self.offsets = np.cumsum([0] + self.sizes)
        self.fine_to_superclass = np.repeat(np.arange(len(supers)), self.sizes).astype(np.int32)
        self.fine_to_subclass = np.concatenate([np.arange(n) for n in self.sizes]).astype(np.int32)

    @property
    def num_superclasses(self) -> int:
        return len(self.sizes)

    @property
    def num_classes(self) -> int:
        return int(self.offsets[-1])

    def fine_labels_of(self, k: int) -> np.ndarray:
        """Global fine labels of superclass ``k``'s subclasses."""
        return np.arange(self.offsets[k], self.offsets[k + 1])


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """Rounds as TFLite's quantize kernels do (half away from zero)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


class _Model:
    """One ``.tflite`` model: quantizes inputs, resizes its batch, dequantizes outputs."""

    def __init__(self, path: Path, entry: dict[str, Any], num_outputs: int, what: str,
                 image_size: int, num_threads: int | None, interpreter_class) -> None:
        self.path = path
        try:
            self.interpreter = interpreter_class(model_path=str(path), num_threads=num_threads)
        except (ValueError, RuntimeError) as err:
            raise ExportError(f"{path}: not a loadable LiteRT model ({err})") from None
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ExportError(f"{path}: expected one input and one output, the model has "
                              f"{len(inputs)} and {len(outputs)}")
        self.input, self.output = inputs[0], outputs[0]
        shape = [int(d) for d in self.input["shape_signature"]]
        if len(shape) != 4 or shape[1:] != [image_size, image_size, 3]:
            raise ExportError(f"{path}: model input shape {shape}, the manifest's images are "
                              f"[N, {image_size}, {image_size}, 3]")
        out_shape = [int(d) for d in self.output["shape_signature"]]
        if len(out_shape) != 2 or out_shape[1] != num_outputs:
            raise ExportError(f"{path}: the model has {out_shape[-1] if out_shape else 0} "
                              f"outputs, but {what} needs {num_outputs} (the manifest's "
                              "hierarchy and the models disagree)")
        self.input_dtype = np.dtype(self.input["dtype"])
        spec = entry.get("input") if isinstance(entry.get("input"), dict) else {}
        expected = spec.get("dtype")
        if expected is not None and str(expected) != self.input_dtype.name:
            raise ExportError(f"{path}: model input dtype {self.input_dtype.name}, the manifest "
                              f"says {expected}")
        self.batch = int(self.input["shape"][0])
        self.in_scale, self.in_zero = self.input["quantization"]
        self.out_scale, self.out_zero = self.output["quantization"]
        for name, detail, scale in (("input", self.input, self.in_scale),
                                    ("output", self.output, self.out_scale)):
            if np.dtype(detail["dtype"]).name in _INTEGER_RANGES and not scale:
                raise ExportError(f"{path}: integer {name} without quantization parameters")
        self.allocated = False

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Normalised float32 images -> what the model's input takes."""
        if self.input_dtype.name not in _INTEGER_RANGES:
            return x.astype(self.input_dtype, copy=False)
        low, high = _INTEGER_RANGES[self.input_dtype.name]
        q = _round_half_away(x / np.float32(self.in_scale)) + self.in_zero
        return np.clip(q, low, high).astype(self.input_dtype)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Float32 logits ``[N, outputs]`` of normalised float32 images ``[N, H, W, 3]``."""
        n = x.shape[0]
        if n != self.batch or not self.allocated:
            self.interpreter.resize_tensor_input(self.input["index"], [n, *x.shape[1:]],
                                                 strict=True)
            self.interpreter.allocate_tensors()
            self.batch, self.allocated = n, True
        self.interpreter.set_tensor(self.input["index"], self.quantize(x))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        if self.out_scale:
            return (out.astype(np.float32) - np.float32(self.out_zero)) * np.float32(self.out_scale)
        return out.astype(np.float32)


class LiteRTSuperSub:
    """The Super-Sub two-stage pipeline over a LiteRT export folder.

    Args:
        export_dir: The folder with ``manifest.json`` and the ``.tflite`` models.
        num_threads: Threads per interpreter (None: LiteRT's default).
        verify: Check every model's size and sha256 against the manifest (cheap).

    Attributes:
        manifest: The parsed manifest.
        image_size: Side of the square images :meth:`predict` takes.
        superclass_names, class_ids, class_names: Labels in model order.

    Raises:
        ExportError: When the folder fails a check (see the module docstring).
    """

    def __init__(self, export_dir: str | os.PathLike, num_threads: int | None = 2,
                 verify: bool = True) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if num_threads is not None and (isinstance(num_threads, bool) or
                                        not isinstance(num_threads, int) or num_threads < 1):
            raise ExportError(f"num_threads must be a positive integer (or None for LiteRT's "
                              f"default), got {num_threads!r}")
        self.root = Path(export_dir)
        manifest = read_manifest(self.root)
        source = str(self.root / MANIFEST)
        self.manifest = manifest
        self.hierarchy = _Hierarchy(manifest["hierarchy"], source)
        spec = manifest["input"]
        try:
            self.image_size = int(spec["size"])
            self._divisor = np.float32(spec["pixel_divisor"])
            self._mean = np.asarray(spec["mean"], np.float32).reshape(3)
            self._std = np.asarray(spec["std"], np.float32).reshape(3)
        except (KeyError, TypeError, ValueError):
            raise ExportError(f"{source}: malformed input spec {spec!r}; expected size, "
                              "pixel_divisor, mean[3], std[3]") from None
        if spec.get("dtype", "uint8") != "uint8":
            raise ExportError(f"{source}: input dtype {spec.get('dtype')!r}; this runtime takes "
                              "uint8 images")
        h = self.hierarchy
        entries = manifest["specialists"]
        listed = ([(e.get("superclass"), e.get("num_subclasses")) for e in entries]
                  if isinstance(entries, list) and all(isinstance(e, dict) for e in entries)
                  else entries)
        expected = list(zip(h.superclass_names, h.sizes))
        if listed != [tuple(x) for x in expected]:
            raise ExportError(f"{source}: the hierarchy's superclasses {expected} do not match "
                              f"the specialists listed {listed}")
        paths = [self._check(manifest["generalist"], verify)]
        paths += [self._check(entry, verify) for entry in entries]

        def load(path: Path, entry: dict, outputs: int, what: str) -> _Model:
            return _Model(path, entry, outputs, what, self.image_size, num_threads, Interpreter)

        # Catch-all specialists have one output more: "not my superclass".
        self.catch_all = bool(manifest.get("catch_all", False))
        extra = int(self.catch_all)
        # Stage 1 is a generalist, or the vanilla network (its fine probabilities summed
        # per superclass); exports made before the vanilla base say nothing: generalist.
        entry = manifest["generalist"]
        self.stage_one = (entry.get("stage_one", "superclass") if isinstance(entry, dict)
                          else "superclass")
        if self.stage_one not in routing.STAGE_ONE_HEADS:
            raise ExportError(f"{source}: generalist stage_one {self.stage_one!r} is not one "
                              f"of {routing.STAGE_ONE_HEADS}")
        fine = self.stage_one == "fine"
        self.generalist = load(paths[0], manifest["generalist"],
                               h.num_classes if fine else h.num_superclasses,
                               f"the vanilla network of {h.num_classes} classes" if fine else
                               f"the generalist of {h.num_superclasses} superclasses")
        self.specialists = [
            load(path, entry, n + extra, f"superclass {name!r} with {n} subclasses"
                 + (" + other" if extra else ""))
            for path, entry, name, n in zip(paths[1:], entries, h.superclass_names, h.sizes)]

    def _check(self, entry: Any, verify: bool) -> Path:
        if verify:
            return verify_file(self.root, entry)
        try:
            path = self.root / str(entry["file"])
        except (KeyError, TypeError):
            raise ExportError(f"{self.root / MANIFEST}: malformed file entry {entry!r}") from None
        if not path.is_file():
            raise ExportError(f"{path}: missing (listed in {MANIFEST})")
        return path

    # ---------------------------------------------------------------- labels
    @property
    def superclass_names(self) -> list[str]:
        return list(self.hierarchy.superclass_names)

    @property
    def class_ids(self) -> list[str]:
        return list(self.hierarchy.class_ids)

    @property
    def class_names(self) -> list[str]:
        return list(self.hierarchy.class_names)

    # ---------------------------------------------------------------- inference
    def check_images(self, images: np.ndarray) -> np.ndarray:
        """``images`` as a numpy array if they are uint8 ``[N, H, W, 3]`` at the right size.

        Raises:
            ExportError: For another dtype or shape (the message says what is needed).
        """
        images = np.asarray(images)
        size = self.image_size
        if images.dtype != np.uint8:
            raise ExportError(f"images must be uint8 RGB pixels, got {images.dtype} (give the "
                              f"pixels as uint8 [N, {size}, {size}, 3]; the runtime normalises)")
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise ExportError(f"images must be uint8 [N, {size}, {size}, 3] (resized to the "
                              f"models' {size}x{size}), got shape {list(images.shape)}")
        return images

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """Checks uint8 ``[N, H, W, 3]`` pixels and normalises them to float32, with the
        training pipeline's arithmetic: ``(pixel / divisor - mean) / std``."""
        x = self.check_images(images).astype(np.float32) / self._divisor
        return (x - self._mean) / self._std

    def superclass_probs(self, images: np.ndarray) -> np.ndarray:
        """Stage 1: ``p(superclass)`` ``[N, S]`` of uint8 images."""
        return routing.stage_one_probs(self.generalist.logits(self.normalize(images)),
                                       self.hierarchy, self.stage_one)[0]

    def subclass_probs(self, images: np.ndarray, superclass: int | str) -> np.ndarray:
        """Stage 2 for one superclass (index or name): ``p(subclass | superclass)``
        (for catch-all specialists, given that the image is of that superclass)."""
        k = self._superclass_index(superclass)
        return self._specialist(k, self.normalize(images))[0]

    def _specialist(self, k: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        probs = routing.softmax(self.specialists[k].logits(x))
        return routing.specialist_outputs(probs, self.catch_all)

    def _superclass_index(self, superclass: int | str) -> int:
        names = self.hierarchy.superclass_names
        if isinstance(superclass, (int, np.integer)) and 0 <= superclass < len(names):
            return int(superclass)
        if isinstance(superclass, str) and superclass in names:
            return names.index(superclass)
        raise ExportError(f"unknown superclass {superclass!r}; this export has {names}")

    def predict(self, images: np.ndarray, routing: str = "hard", k: int = 2,
                true_superclass: np.ndarray | None = None,
                batch_size: int = 256, tau: float = 0.5) -> dict[str, Any]:
        """Runs both stages on uint8 images, ``batch_size`` images at a time.

        Args:
            images: ``uint8 [N, H, W, 3]`` RGB pixels at the manifest's size.
            routing: A mode of ``supersub_routing.MODES`` (:data:`ROUTINGS`, the same
                code as SuperSubPipeline's): ``hard`` (the most likely superclass),
                ``topk`` (the ``k`` most likely), ``soft`` (every superclass), ``gated``
                (stage 1's answer when it is confident, top-k below) or ``oracle``
                (``true_superclass``).
            k: Superclasses per image for ``topk`` and uncertain ``gated`` images.
            true_superclass: ``[N]`` superclass indices, for ``oracle``.
            batch_size: Images per stage-1 batch (bounds memory).
            tau: ``gated``'s confidence threshold.

        Returns:
            A dict of numpy arrays: ``superclass_probs`` ``[N, S]``, ``fine_probs``
            ``[N, C]`` (zero outside the routed blocks), and per image ``superclass``,
            ``subclass``, ``fine``, ``fine_prob``, ``subclass_prob``, plus the lists
            ``superclass_name``, ``class_id`` and ``class_name``.
        """
        mode = _routing_mode(routing)  # ``routing`` names the mode here, not the module
        images = self.check_images(images)
        n = images.shape[0]
        if mode.needs_truth:
            if true_superclass is None:
                raise ValueError(f"{mode.name} routing needs true_superclass")
            true_superclass = np.asarray(true_superclass).reshape(-1)
            if true_superclass.shape[0] != n:
                raise ValueError(f"true_superclass has {true_superclass.shape[0]} entries for "
                                 f"{n} images")
        parts = []
        for start in range(0, n, max(1, int(batch_size))):
            stop = min(n, start + max(1, int(batch_size)))
            truth = None if true_superclass is None else true_superclass[start:stop]
            parts.append(self._predict_batch(self.normalize(images[start:stop]), routing, k,
                                             truth, tau))
        if not parts:
            parts.append(self._empty())
        result = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        h = self.hierarchy
        result["superclass_name"] = [h.superclass_names[s] for s in result["superclass"]]
        result["class_id"] = [h.class_ids[f] for f in result["fine"]]
        result["class_name"] = [h.class_names[f] for f in result["fine"]]
        return result

    def _empty(self) -> dict[str, np.ndarray]:
        h = self.hierarchy
        ints, floats = np.zeros(0, np.int64), np.zeros(0, np.float32)
        return {"superclass_probs": np.zeros((0, h.num_superclasses), np.float32),
                "fine_probs": np.zeros((0, h.num_classes), np.float32),
                "superclass": ints, "subclass": ints, "fine": ints, "fine_prob": floats,
                "subclass_prob": floats}

    def _predict_batch(self, x: np.ndarray, mode: str, k: int,
                       true_superclass: np.ndarray | None, tau: float) -> dict[str, np.ndarray]:
        h = self.hierarchy
        sup_probs, stage_one_fine = routing.stage_one_probs(self.generalist.logits(x), h,
                                                            self.stage_one)
        n = x.shape[0]
        routes = routing.routes_for(sup_probs, mode, int(k), true_superclass, tau,
                                    stage_one_fine)
        sub_given = np.zeros((n, h.num_classes), np.float32)
        other = np.zeros((n, h.num_superclasses), np.float32) if self.catch_all else None
        for s in range(h.num_superclasses):  # each specialist once, on its routed images
            rows = np.flatnonzero((routes == s).any(1))
            if len(rows):
                sub, other_s = self._specialist(s, x[rows])
                sub_given[np.ix_(rows, h.fine_labels_of(s))] = sub
                if other is not None:
                    other[rows, s] = other_s
        fine_probs = routing.combine(sup_probs, sub_given, routes, h,
                                     weighted=routing.MODES[mode].weighted,
                                     other_probs=other, stage_one_fine=stage_one_fine)
        fine = fine_probs.argmax(1)
        index = np.arange(n)
        return {"superclass_probs": sup_probs, "fine_probs": fine_probs,
                "superclass": h.fine_to_superclass[fine].astype(np.int64),
                "subclass": h.fine_to_subclass[fine].astype(np.int64),
                "fine": fine.astype(np.int64), "fine_prob": fine_probs[index, fine],
                "subclass_prob": routing.answer_subclass_probs(
                    sub_given, fine_probs, sup_probs, routes, fine, h.fine_to_superclass)}


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


#: EXIF orientation (IFD0 tag 0x0112) -> the numpy operation that turns the stored
#: pixels upright: the transposes of ``PIL.ImageOps.exif_transpose`` (a test checks all
#: eight against it; the SavedModel's graph applies the same ones).
EXIF_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: a.transpose(1, 0, 2)[::-1],
}
EXIF_ORIENTATION = 0x0112


def exif_upright(image: Any, pixels: np.ndarray | None = None) -> np.ndarray:
    """The pixels of an image opened with Pillow, turned upright by its EXIF orientation.

    The one EXIF reader of the Python paths (this runtime's :func:`read_image_file` and
    ``python -m supersub_tf predict``): the orientation is Pillow's
    (``image.getexif()``, as ``ImageOps.exif_transpose`` reads it), applied to the
    pixels with :data:`EXIF_UPRIGHT`.

    Args:
        image: An image opened with ``PIL.Image.open``.
        pixels: Its pixels ``[H, W, C]`` decoded elsewhere (``predict`` uses training's
            TensorFlow decoder); default: Pillow's, converted to RGB.

    Returns:
        The upright pixels, C-contiguous.
    """
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    if pixels is None:
        pixels = np.asarray(image.convert("RGB"))
    upright = EXIF_UPRIGHT.get(orientation)
    return np.ascontiguousarray(pixels if upright is None else upright(pixels))


def read_image_file(path: str | os.PathLike, size: int) -> np.ndarray:
    """An image file as the models take it: RGB ``uint8 [size, size, 3]``, with Pillow.

    The EXIF orientation is applied (:func:`exif_upright`), then the picture is resized
    to a square with Pillow's antialiased bilinear filter, no crop. Training decodes with TensorFlow and
    resizes with ``tf.image.resize(..., antialias=True)``: the same kind of filter, but
    not the same rounding, so pixels can differ by a few levels (``python -m
    supersub_tf predict`` uses training's path exactly).

    Raises:
        ExportError: When Pillow is missing, or the file cannot be decoded.
    """
    try:
        from PIL import Image
    except ImportError:
        raise ExportError("reading image files needs Pillow (pip install pillow); without it, "
                          f"give a .npy of uint8 [N, {size}, {size}, 3] RGB pixels") from None
    try:
        # Pillow warns (two raw lines) for a picture over MAX_IMAGE_PIXELS and refuses one
        # over twice that; in between it is read, and the warning becomes one line.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                upright = Image.fromarray(exif_upright(image))
                resized = upright.resize((size, size), Image.Resampling.BILINEAR)
                pixels = np.asarray(resized, np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ExportError(f"{path}: cannot decode it as an image ({err})") from None
    for warning in caught:
        if issubclass(warning.category, Image.DecompressionBombWarning):
            print(f"{path}: over Pillow's decompression-bomb warning limit "
                  f"({Image.MAX_IMAGE_PIXELS:,} pixels); read anyway", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno)
    return pixels


def _image_files(inputs: list[str]) -> list[str]:
    """Image files from files and folders (searched recursively), in order."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(str(p) for p in path.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(item)
    return files


def _read_images(path: str) -> np.ndarray:
    """A ``.npy`` array of images; ExportError naming the file when it is not one."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:  # numpy blames pickles for any file that is not .npy
        with open(path, "rb") as f:
            is_npy = f.read(6) == b"\x93NUMPY"
        reason = err if is_npy else "not a NumPy .npy file (it lacks the .npy header)"
        raise ExportError(f"{path}: {reason}") from None


def main(argv: list[str] | None = None) -> int:
    """``python litert_runtime.py EXPORT_DIR INPUT...``: prints one line per image.

    INPUT is one ``.npy`` of uint8 ``[N, H, W, 3]`` pixels, or image files and folders
    (read with Pillow, :func:`read_image_file`). A file that cannot be read is named and
    the others are still classified; the exit status is then 1.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="a .npy of uint8 [N, H, W, 3] images, or image files / folders")
    parser.add_argument("--threads", type=int, default=2, help="threads per interpreter (>= 1)")
    args = parser.parse_args(argv)
    try:
        model = LiteRTSuperSub(args.export_dir, num_threads=args.threads)
        if len(args.inputs) == 1 and args.inputs[0].endswith(".npy"):
            names, images, failed = None, _read_images(args.inputs[0]), []
        else:
            names, pixels, failed = [], [], []
            for path in _image_files(args.inputs):
                try:
                    pixels.append(read_image_file(path, model.image_size))
                    names.append(path)
                except ExportError as err:
                    failed.append(str(err))
            size = model.image_size
            images = np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8)
        result = model.predict(images)
    except (ExportError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for i, (name, sup, p) in enumerate(zip(result["class_name"], result["superclass_name"],
                                           result["fine_prob"])):
        print(f"{i if names is None else names[i]}\t{name}\t{sup}\t{p:.4f}")
    for message in failed:
        print(f"error: {message}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
