"""Classify image files with a trained system, its SavedModel or its LiteRT export.

``python -m supersub_tf predict MODEL INPUT...`` is this module. MODEL is any of the
three things a run leaves behind, told apart by what the folder holds:

* a stored system (``runs/<name>/systems/<bits>``, ``manifest.json`` of format
  ``supersub-system``): the in-process :class:`~supersub_tf.supersub.SuperSubPipeline`,
  every routing mode that needs no true superclass
  (:data:`~supersub_tf.supersub.routing.INFERENCE_ROUTINGS`);
* an exported SavedModel (``saved_model.pb``): its ``serving_default`` signature, the
  routing it was exported with (``hard`` or ``soft``, in ``supersub_export.json``);
* a LiteRT export (``manifest.json`` of format ``supersub-litert``): its numpy runtime,
  the same routing modes.

INPUT is image files, folders (searched recursively for image files) or glob patterns.
Every picture goes through one preprocessing path, the training pipeline's evaluation
path: decoded to RGB by training's decoder, turned upright by its EXIF orientation,
resized to the model's square size with :func:`supersub_tf.data.pipeline.resize`
(antialiased bilinear, no crop, rounded to uint8), then normalised by the model itself. A file that cannot be
decoded is reported by name and the others still get their predictions.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import io
import json
import os
import re
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from supersub_tf.atomic import atomic_write_text, landing_folder
from supersub_tf.config import DeltaConfig
from supersub_tf.data.examples import decode_image
from supersub_tf.data.pipeline import normalize, resize
from supersub_tf.deltas.storage import load_system
from supersub_tf.errors import DataError, OutputError
from supersub_tf.export.litert_runtime import IMAGE_SUFFIXES, exif_upright
from supersub_tf.export.tflite import open_export
from supersub_tf.hierarchy import Hierarchy
from supersub_tf.manifest_files import MANIFEST, read_manifest_json
from supersub_tf.progress import Progress
from supersub_tf.supersub.routing import INFERENCE_ROUTINGS
from supersub_tf.tables import text_table

# Function-level imports here are of TensorFlow and of the modules that import it when
# they load (the SavedModel export, the in-process pipeline): listing files, reading a
# LiteRT export or a bad command line never waits for TensorFlow.

# IMAGE_SUFFIXES (what a folder is searched for; an explicit file of any suffix is tried
# anyway) is the LiteRT runtime's, so both ways of classifying a folder find the same files.
FORMATS = ("table", "json", "csv")
BATCH = 64
#: top-k's and gated routing's defaults: the main job's (``deltas.topk``, ``deltas.gate_tau``).
DEFAULT_K, DEFAULT_TAU = DeltaConfig.topk, DeltaConfig.gate_tau


@dataclasses.dataclass
class ImagePrediction:
    """What ``predict`` says about one file.

    Attributes:
        path: The file.
        error: Why it got no prediction (None when it got one).
        superclass, superclass_prob: The routed superclass and ``p(superclass)``.
        class_id, class_name, subclass_prob, fine_prob: The predicted class (wnid and
            name), ``p(subclass | superclass)`` and the combined probability.
        top_k: ``(class_id, class_name, combined probability)`` of the k most likely
            classes.
        routing: The routing used.
    """

    path: str
    error: str | None = None
    superclass: str | None = None
    superclass_prob: float | None = None
    class_id: str | None = None
    class_name: str | None = None
    subclass_prob: float | None = None
    fine_prob: float | None = None
    top_k: list[tuple[str, str, float]] = dataclasses.field(default_factory=list)
    routing: str | None = None


# --------------------------------------------------------------------------- inputs
def expand_inputs(inputs: Iterable[str]) -> tuple[list[Path], list[ImagePrediction]]:
    """Files to classify from files, folders (recursive) and glob patterns, in order.

    Returns:
        ``(files, problems)``: the files (each once), and one error record for every
        input that names nothing (a missing file, an empty folder, a glob matching no
        file).
    """
    files: list[Path] = []
    problems: list[ImagePrediction] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            why = f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder"
        elif path.is_file():
            found, why = [path], ""
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            why = "the pattern matches no file"
        else:
            found, why = [], "no such file or folder"
        if not found:
            problems.append(ImagePrediction(path=item, error=why))
        files += found
    return list(dict.fromkeys(files)), problems


def read_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """One picture as the models take it: RGB ``uint8 [size, size, 3]``.

    Decoded by training's own decoder (:func:`supersub_tf.data.examples.decode_image`,
    so a JPEG gives the very pixels training saw; Pillow for formats it lacks, such as
    WebP and TIFF), turned upright by its EXIF orientation
    (:func:`supersub_tf.export.litert_runtime.exif_upright`, the LiteRT runtime's reader;
    the SavedModel's ``image_bytes`` graph applies the same), then resized exactly as
    training resizes (:func:`supersub_tf.data.pipeline.resize`). Pictures over Pillow's
    decompression-bomb limit are refused, as ``image_bytes`` refuses them.

    Raises:
        DataError: Naming the file, when it cannot be read or decoded.
    """
    import tensorflow as tf

    try:
        with Image.open(path) as image:
            native = image.format in ("JPEG", "PNG", "GIF", "BMP")
            pixels = (decode_image(tf.io.read_file(str(path))).numpy() if native else None)
            pixels = exif_upright(image, pixels)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError,
            tf.errors.OpError) as err:
        message = getattr(err, "message", None) or str(err)
        raise DataError(f"{path}: cannot decode it as an image ({message})") from None
    return resize(pixels, size).numpy()


# --------------------------------------------------------------------------- models
class _Model(Protocol):
    """What the three model kinds share: their labels, image size, routings, and
    ``predict(uint8 images)`` -> ``superclass_probs``, ``fine_probs``, ``superclass``,
    ``fine``, ``fine_prob``, ``subclass_prob`` (numpy arrays)."""

    kind: str
    image_size: int
    hierarchy: Hierarchy
    routings: tuple[str, ...]

    def predict(self, images: np.ndarray, routing: str, k: int | None,
                tau: float | None) -> dict[str, np.ndarray]: ...


class _SystemModel:
    kind = "stored system"

    def __init__(self, path: Path) -> None:
        from supersub_tf.supersub.pipeline import SuperSubPipeline

        system = load_system(path)
        self.hierarchy = system.hierarchy
        self.image_size = system.backbone.image_size
        self.normalization = system.backbone.normalization
        self.pipeline = SuperSubPipeline.from_system(system)
        self.routings = INFERENCE_ROUTINGS

    def predict(self, images: np.ndarray, routing: str, k: int | None,
                tau: float | None) -> dict[str, np.ndarray]:
        result = self.pipeline.predict(normalize(images, self.normalization).numpy(),
                                       routing=routing, k=k or DEFAULT_K,
                                       tau=DEFAULT_TAU if tau is None else tau)
        return {"superclass_probs": result.superclass_probs, "fine_probs": result.fine_probs,
                "superclass": result.superclass, "fine": result.fine,
                "fine_prob": result.fine_prob, "subclass_prob": result.subclass_prob}


class _SavedModel:
    kind = "SavedModel"
    routings = ("hard",)

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        from supersub_tf.export.savedmodel import METADATA_FILE, SIGNATURE

        metadata_path = path / METADATA_FILE
        try:
            metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
            self.image_size = metadata["image_size"]  # written as an int by the export
            if isinstance(self.image_size, bool) or not isinstance(self.image_size, int):
                raise TypeError(f"image_size {self.image_size!r} is not an int")
            self.hierarchy = Hierarchy.from_dict(metadata["hierarchy"], source=str(metadata_path))
            self.routings = (str(metadata.get("routing", "hard")),)  # the graph's one routing
            # k and tau are fixed in the graph too (recorded since top-k and gated exports)
            self.k, self.tau = metadata.get("topk"), metadata.get("gate_tau")
            [self.input_name] = metadata["signature"]["inputs"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"{metadata_path}: unreadable export description ({err}); is "
                            f"{path} a supersub_tf SavedModel export?") from None
        self.serve = tf.saved_model.load(str(path)).signatures[SIGNATURE]
        takes = sorted(self.serve.structured_input_signature[1])
        if takes != [self.input_name]:
            raise DataError(f"{path}: its {SIGNATURE} signature takes {', '.join(takes)}, but "
                            f"{METADATA_FILE} records {self.input_name}")

    def predict(self, images: np.ndarray, routing: str, k: int | None,
                tau: float | None) -> dict[str, np.ndarray]:
        from supersub_tf.export.savedmodel import call_signature

        for flag, asked, own in (("--k", k, self.k), ("--tau", tau, self.tau)):
            if asked is not None and own is not None and routing in ("topk", "gated") \
                    and asked != own:
                raise DataError(f"{flag} {asked}: this SavedModel was exported with "
                                f"{flag.lstrip('-')} {own} (fixed in its graph); leave "
                                f"{flag} out or export again")

        out = {key: value.numpy()
               for key, value in call_signature(self.serve, **{self.input_name: images}).items()}
        return {key: out[key] for key in ("superclass_probs", "fine_probs", "superclass",
                                          "fine", "fine_prob", "subclass_prob")}


class _LiteRTModel:
    kind = "LiteRT export"

    def __init__(self, path: Path) -> None:
        self.runtime = open_export(path)
        self.image_size = self.runtime.image_size
        self.hierarchy = Hierarchy.from_dict(self.runtime.manifest["hierarchy"],
                                             source=str(path / MANIFEST))
        self.routings = INFERENCE_ROUTINGS  # its runtime reads the same registry

    def predict(self, images: np.ndarray, routing: str, k: int | None,
                tau: float | None) -> dict[str, np.ndarray]:
        return self.runtime.predict(images, routing=routing, k=k or DEFAULT_K,
                                    tau=DEFAULT_TAU if tau is None else tau)


def open_model(path: str | os.PathLike) -> _Model:
    """The model a folder holds: a stored system, a SavedModel or a LiteRT export.

    Raises:
        DataError: When ``path`` is none of the three (the message says what each
            holds), or it fails that kind's own checks.
    """
    root = Path(path)
    kind = model_kind(root)
    if kind == "savedmodel":
        return _SavedModel(root)
    return _SystemModel(root) if kind == "system" else _LiteRTModel(root)


_MODEL_FOLDERS = ("a stored system (manifest.json of format supersub-system, e.g. "
                  "runs/default/systems/4bit), a SavedModel (saved_model.pb, e.g. "
                  "saved_models/default) or a LiteRT export (manifest.json of format "
                  "supersub-litert, e.g. saved_models/default_tflite)")
_MANIFEST_FORMATS = {"supersub-system": "system", "supersub-litert": "litert"}


def model_kind(root: Path) -> str:
    """``savedmodel``, ``system`` or ``litert``: what a model folder holds, by its files.

    Raises:
        DataError: Saying what is wrong: the folder does not exist or is a file, it holds
            neither ``saved_model.pb`` nor ``manifest.json``, or its manifest is not valid
            JSON (line and column) or of no model format. (Each kind's own loader then
            names a missing or corrupt file the manifest lists.)
    """
    if not root.exists():
        raise DataError(f"{root}: no such folder; expected {_MODEL_FOLDERS}")
    if not root.is_dir():
        raise DataError(f"{root}: a file, not a model folder; expected {_MODEL_FOLDERS}")
    if (root / "saved_model.pb").is_file():
        return "savedmodel"
    if not (root / MANIFEST).is_file():
        raise DataError(f"{root}: not a model folder: it holds neither {MANIFEST} nor "
                        f"saved_model.pb; expected {_MODEL_FOLDERS}")
    found = read_manifest_json(root, DataError, "model folder").get("format")
    if found not in _MANIFEST_FORMATS:
        raise DataError(f"{root / MANIFEST}: format {found!r} is not a model's; expected "
                        f"{_MODEL_FOLDERS}")
    return _MANIFEST_FORMATS[found]


# --------------------------------------------------------------------------- predicting
def predict_files(model: _Model, files: Sequence[Path], routing: str = "hard",
                  k: int | None = None, top_k: int = 5, tau: float | None = None
                  ) -> list[ImagePrediction]:
    """Predictions for image files, in order; undecodable files get an error record.

    ``k`` and ``tau`` (top-k's and gated routing's) default to :data:`DEFAULT_K` and
    :data:`DEFAULT_TAU`, or for a SavedModel to the values its graph was exported with.

    Raises:
        DataError: When ``routing`` is not one the model has.
    """
    if routing not in model.routings:
        raise DataError(f"--routing {routing}: a {model.kind} offers "
                        f"{', '.join(model.routings)}")
    h = model.hierarchy
    records: list[ImagePrediction] = []
    shown = Progress(len(files), "predict", unit="images")
    for start in range(0, len(files), BATCH):
        batch, images = [], []
        for path in files[start:start + BATCH]:
            try:
                images.append(_read_image_noting_large(path, model.image_size))
                batch.append(ImagePrediction(path=str(path), routing=routing))
            except DataError as err:
                records.append(ImagePrediction(path=str(path), error=str(err)))
        if not images:
            shown.update(len(files[start:start + BATCH]))
            continue
        out = model.predict(np.stack(images), routing, k, tau)
        for i, record in enumerate(batch):
            sup, fine = int(out["superclass"][i]), int(out["fine"][i])
            order = np.argsort(-out["fine_probs"][i], kind="stable")[:top_k]
            record.superclass = h.superclass_names[sup]
            record.superclass_prob = float(out["superclass_probs"][i, sup])
            record.class_id, record.class_name = h.class_ids[fine], h.class_names[fine]
            record.subclass_prob = float(out["subclass_prob"][i])
            record.fine_prob = float(out["fine_prob"][i])
            record.top_k = [(h.class_ids[j], h.class_names[j], float(out["fine_probs"][i, j]))
                            for j in order]
        records += batch
        shown.update(len(files[start:start + BATCH]))
    shown.close()
    order = {str(path): i for i, path in enumerate(files)}
    return sorted(records, key=lambda r: order.get(r.path, -1))


def _read_image_noting_large(path: Path, size: int) -> np.ndarray:
    """:func:`read_image`, with Pillow's ``DecompressionBombWarning`` as one line of ours.

    Pillow warns (two raw lines of Python's warning format) for a picture over
    ``PIL.Image.MAX_IMAGE_PIXELS`` and refuses one over twice that, which
    :func:`read_image` reports as an undecodable file. In between, the picture is
    classified like any other, so the warning becomes a ``[predict]`` note naming the
    file, on the standard error like the summary. Other warnings pass through unchanged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Image.DecompressionBombWarning)
        pixels = read_image(path, size)
    for warning in caught:
        if not issubclass(warning.category, Image.DecompressionBombWarning):
            warnings.showwarning(warning.message, warning.category, warning.filename,
                                 warning.lineno, warning.file, warning.line)
            continue
        limit = Image.MAX_IMAGE_PIXELS
        found = re.search(r"\((\d+) pixels\)", str(warning.message))
        count = f"{int(found.group(1)):,} pixels" if found else "a picture"
        print(f"[predict] {path}: {count}, over Pillow's decompression-bomb warning limit "
              f"({limit:,}); classified anyway (pictures over {2 * limit:,} pixels are "
              "refused)", file=sys.stderr)
    return pixels


# --------------------------------------------------------------------------- output
def format_predictions(records: Sequence[ImagePrediction], fmt: str) -> str:
    """The records as a table, JSON (a list of objects) or CSV (one row per file).

    Every format calls the image's path ``file`` (the table's first column).
    """
    if fmt == "json":
        rows = [dataclasses.asdict(r) for r in records]
        return json.dumps([{"file": row.pop("path"), **row} for row in rows], indent=2,
                          ensure_ascii=False) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["file", "superclass", "superclass_prob", "class_id", "class_name",
                         "subclass_prob", "fine_prob", "top_k", "routing", "error"])
        for r in records:
            top = ";".join(f"{cid}:{p:.4f}" for cid, _, p in r.top_k)
            writer.writerow([r.path, r.superclass, _fmt(r.superclass_prob), r.class_id,
                             r.class_name, _fmt(r.subclass_prob), _fmt(r.fine_prob), top,
                             r.routing, r.error])
        return out.getvalue()
    if fmt != "table":
        raise DataError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rows = []
    for r in records:
        if r.error:  # the file is in the first column already
            rows.append([r.path, "error", r.error.removeprefix(f"{r.path}: "), None, None])
            continue
        top = ", ".join(f"{name} {p:.1%}" for _, name, p in r.top_k[1:])
        rows.append([r.path, f"{r.superclass} {r.superclass_prob:.1%}",
                     f"{r.class_name} ({r.class_id}) {r.fine_prob:.1%}",
                     f"{r.subclass_prob:.1%}", top or None])
    return text_table(["file", "superclass p(s)", "class p(s)p(c|s)", "p(c|s)",
                       "next most likely"], rows, align="lllrl") + "\n"


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def check_output(output: str | os.PathLike, fmt: str = "table") -> None:
    """Refuses an ``--output`` path that cannot take the predictions, before any image is
    classified (an hour of images should not end in a refused write).

    The write itself stays atomic (:func:`~supersub_tf.atomic.atomic_write_text`, which
    creates missing parent folders); a full disk can still only show at that write.

    Raises:
        OutputError: Naming the path, when it is a folder, lies under a file, or its
            nearest existing folder cannot be written (permission, read-only filesystem).
    """
    target = Path(output)
    if target.is_dir():
        suffix = {"table": "txt"}.get(fmt, fmt)
        raise OutputError(f"{target}: a folder; --output takes a file name, e.g. "
                          f"{target / f'predictions.{suffix}'}")
    folder = landing_folder(target)
    if not folder.is_dir():
        raise OutputError(f"{target}: cannot write it ({folder} is a file, not a folder)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: cannot write it (no permission to write in {folder}, "
                          "or its filesystem is read-only)")


def run_predict(model_path: str, inputs: Sequence[str], *, routing: str | None = None,
                k: int | None = None, top_k: int = 5, fmt: str = "table",
                output: str | None = None, tau: float | None = None) -> int:
    """What the ``predict`` command does; returns the exit status (1 when a file failed).

    Raises:
        DataError: When the model cannot be opened or a setting is invalid.
        OutputError: When ``output`` cannot be written (checked before classifying).
    """
    if fmt not in FORMATS:
        raise DataError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if top_k < 1 or (k is not None and k < 1):
        raise DataError(f"--top-k and --k must be at least 1, got {top_k} and {k}")
    if tau is not None and not 0.0 <= tau <= 1.01:
        raise DataError(f"--tau must be in [0, 1.01], got {tau}")
    if output:
        check_output(output, fmt)
    model = open_model(model_path)
    # No --routing: a SavedModel's own (the one its graph has), else hard routing.
    routing = routing or model.routings[0]
    files, problems = expand_inputs(inputs)
    records = problems + predict_files(model, files, routing=routing, k=k, top_k=top_k,
                                       tau=tau)
    text = format_predictions(records, fmt)
    if output:
        atomic_write_text(output, text)
    else:
        print(text, end="")
    failed = [r for r in records if r.error]
    done = len(records) - len(failed)
    summary = (f"[predict] {model.kind} {model_path}: {done} image(s) classified, routing "
               f"{routing}" + (f"; {len(failed)} failed: " + ", ".join(r.path for r in failed)
                               if failed else ""))
    print(summary, file=sys.stderr)
    return 1 if failed else 0

