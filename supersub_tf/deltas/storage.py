"""The compact on-disk format of a whole Super-Sub system: writing and verified reading.

The paper's storage argument: N specialists stored as k-bit deltas on one shared
generalist cost ``a * N + 1`` networks instead of ``N + 1``, where ``a`` is the size of
one specialist relative to a float32 generalist. This module writes such a system to a
folder and reads it back bit for bit; :mod:`supersub_tf.deltas.storage_report` measures
``a`` from the files themselves, and :mod:`supersub_tf.deltas.packing` packs the codes.

A system directory holds:

* ``manifest.json``: the format version, the hierarchy, the backbone (model, width,
  image size, number of superclasses, parameter count), the delta settings, the delta
  layers with their kernel shapes, the trunk's fingerprint
  (:func:`~supersub_tf.deltas.system_checks.trunk_fingerprint`), and for the generalist
  and every specialist its file, byte size and sha256;
* ``generalist.weights.h5``: the generalist's weights (Keras ``save_weights``, float32);
* ``specialists/<superclass>.delta``: one file per specialist
  (:mod:`supersub_tf.deltas.specialist_file`: versioned, checksummed, a ~300-byte
  header). For each delta layer ``L`` it holds ``delta/L/codes``, the k-bit codes
  shifted to unsigned (``code + 2^(k-1) - 1``) and packed densely little-endian into
  ``ceil(n * k / 8)`` bytes (8 bits: one per byte; 6 bits: four in three bytes; 4 bits:
  two per byte; 2 bits: four per byte), and ``delta/L/scales``, the per-output-channel
  scales as float32; with float deltas (``bits`` None) it holds ``delta/L/values`` as
  float32 instead. The weights the specialist owns outright (its head, its batch-norm
  layers) are ``owned/L/<i>`` float32 arrays, ``i`` in ``get_weights()`` order. The
  header records the superclass index and subclasses the head was trained on, and the
  fingerprint of the trunk the deltas were trained on.

Format 2 kept each specialist as an uncompressed ``.npz`` of the same arrays (its
per-array headers cost a third of a 4-bit specialist); such systems still load, and
``python -m supersub_tf storage DIR --convert`` rewrites one in format 3.

Two choices, and why:

* scales stay float32: they are one number per output channel (a 3x3x64x64 kernel has
  36,864 codes and 64 scales, so even at 2 bits they are under 3% of its bytes), and
  float32 keeps them exactly the scales the quantization-aware training used, so a
  loaded specialist reproduces the trained one bit for bit (float16 would not);
* the payload is LZMA-compressed when that makes it smaller: trained k-bit codes
  cluster around zero (at 2 bits nine in ten are zero), so the densely packed codes
  still carry spare bits, and :mod:`~supersub_tf.deltas.storage_report` shows what
  compression saved next to the raw codes, scales and owned weights.

Writing is atomic for the whole folder: everything goes into a hidden sibling
directory that is renamed into place only when complete, so a failure never leaves a
half-written system where a good one was. Reading verifies every file against the
manifest (presence, size, sha256, layers and shapes) and raises
:class:`~supersub_tf.errors.StorageError` naming the file and the problem. A specialist
file copied in from another system (its size and sha256 written into the manifest)
still fails: its header's trunk fingerprint is not that of this system's
``generalist.weights.h5``. Systems written before the fingerprint existed load unchecked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from supersub_tf import manifest_files
from supersub_tf.atomic import atomic_directory
from supersub_tf.deltas.backbone import Backbone
from supersub_tf.deltas.delta_set import DeltaSet, QuantizedTensor
from supersub_tf.deltas.packing import pack_codes, packed_size, unpack_codes
from supersub_tf.deltas.specialist_file import (
    SUFFIX, ArraySpec, read_specialist_file, write_specialist_file)
from supersub_tf.deltas.system_checks import (
    check_head, check_inputs, delta_layout, kernel_shapes, stage_one_head, stage_one_outputs,
    trunk_fingerprint)
from supersub_tf.errors import StorageError, SuperSubError
from supersub_tf.hierarchy import Hierarchy
from supersub_tf.manifest_files import MANIFEST, file_entry, read_manifest_file

if TYPE_CHECKING:
    import tf_keras as keras

FORMAT_NAME = "supersub-system"
FORMAT_VERSION = 3  # 3: one checksummed .delta file per specialist (2: .npz archives)
LEGACY_NPZ_VERSION = 2
GENERALIST_FILE = "generalist.weights.h5"
SPECIALIST_DIR = "specialists"
SCALES_DTYPE = "float32"
#: The key of the trunk's fingerprint, in the manifest and in every specialist's header.
TRUNK_KEY = "trunk_fingerprint"


@dataclasses.dataclass
class SuperSubSystem:
    """A loaded Super-Sub system: the generalist and every specialist's deltas.

    Attributes:
        path: The system directory it was read from.
        hierarchy: The class hierarchy (superclass order = generalist label order).
        backbone: Model name, width, image size, normalization, ``num_classes``
            (stage-1 outputs) and ``parameters`` of the generalist, plus whatever else
            was saved with it (a mapping given here is read with
            :meth:`Backbone.from_dict`).
        delta_settings: How the deltas were made (``bits``, ``from_stage``,
            ``train_batchnorm``, ...).
        generalist: The generalist, rebuilt with ``create_model`` and its weights loaded.
        delta_sets: Superclass name -> that specialist's deltas, in hierarchy order.
    """

    path: Path
    hierarchy: Hierarchy
    backbone: Backbone
    delta_settings: dict[str, Any]
    generalist: keras.Model
    delta_sets: dict[str, DeltaSet]

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, Backbone):
            self.backbone = Backbone.from_dict(self.backbone, f"{self.path}")

    @property
    def stage_one_head(self) -> str:
        """What stage 1 (the trunk's own head) predicts: ``fine`` (the vanilla network,
        ``base: vanilla``) or ``superclass`` (a generalist)."""
        return stage_one_head(self.delta_settings)

    def for_hard_routing(self) -> SuperSubSystem:
        """The system as hard routing runs it: catch-all specialists' "other" output
        dropped (:meth:`DeltaSet.without_other`; the answers are the same). The exports,
        which route hard, use this view."""
        if not any(d.catch_all for d in self.delta_sets.values()):
            return self
        return dataclasses.replace(
            self, delta_sets={k: d.without_other() for k, d in self.delta_sets.items()},
            delta_settings={**self.delta_settings, "catch_all": False,
                            "catch_all_dropped": True})


# --------------------------------------------------------------------------- file helpers
def _specialist_filename(name: str, taken: set[str]) -> str:
    """A safe, unique (case-insensitively) ``specialists/<name>.delta`` for a superclass."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "superclass"
    candidate, k = stem, 1
    while candidate.casefold() in taken:
        k += 1
        candidate = f"{stem}-{k}"
    taken.add(candidate.casefold())
    return f"{SPECIALIST_DIR}/{candidate}{SUFFIX}"


# --------------------------------------------------------------------------- save: writing
def array_specs(layout: list[tuple[str, tuple[int, ...]]], bits: int | None,
                owned: Mapping[str, list]) -> list[ArraySpec]:
    """The arrays of one specialist file, in file order: every delta layer's (generalist
    order), then the owned layers' (manifest order)."""
    specs: list[ArraySpec] = []
    for layer, shape in layout:
        if bits is None:
            specs.append((f"delta/{layer}/values", "float32", tuple(shape)))
        else:
            count = int(np.prod(shape, dtype=np.int64))
            specs += [(f"delta/{layer}/codes", "uint8", (packed_size(count, bits),)),
                      (f"delta/{layer}/scales", SCALES_DTYPE, tuple(shape[-1:]))]
    for layer, shapes in owned.items():
        specs += [(f"owned/{layer}/{i}", "float32", tuple(int(d) for d in shape))
                  for i, shape in enumerate(shapes)]
    return specs


def _specialist_arrays(delta_set: DeltaSet) -> dict[str, np.ndarray]:
    """The arrays of one specialist's file, keyed as the module docstring describes.

    Raises:
        StorageError: When a delta's codes do not fit its bit width (they would not
            survive packing).
    """
    arrays: dict[str, np.ndarray] = {}
    for layer, q in delta_set.deltas.items():
        if q.bits is None:
            arrays[f"delta/{layer}/values"] = np.asarray(q.codes, np.float32)
        else:
            try:
                arrays[f"delta/{layer}/codes"] = pack_codes(q.codes, q.bits)
            except ValueError as err:
                raise StorageError(f"specialist {delta_set.superclass!r}, delta of layer "
                                f"{layer!r}: {err}") from None
            arrays[f"delta/{layer}/scales"] = np.asarray(q.scales, np.float32)
    for layer, weights in delta_set.owned.items():
        for i, weight in enumerate(weights):
            arrays[f"owned/{layer}/{i}"] = np.asarray(weight, np.float32)
    return arrays


def write_specialist(path: Path, delta_set: DeltaSet, superclass_index: int,
                     subclass_ids: list[str], layout: list[tuple[str, tuple[int, ...]]],
                     trunk: str | None = None) -> None:
    """Writes one specialist's ``.delta`` file (codes packed, floats float32).

    ``superclass_index`` and ``subclasses`` (the wnids in head order) in its header tie
    the file, which the manifest checksums, to the hierarchy the manifest states: an
    edited or reordered hierarchy then fails to load instead of naming classes wrongly.
    ``trunk`` (:func:`trunk_fingerprint`) ties it the same way to the trunk it was
    trained on.
    """
    owned = {layer: [np.shape(w) for w in weights] for layer, weights in delta_set.owned.items()}
    meta = {"superclass": delta_set.superclass, "superclass_index": int(superclass_index),
            "subclasses": list(subclass_ids), "bits": delta_set.bits,
            "catch_all": bool(delta_set.catch_all),
            **({TRUNK_KEY: trunk} if trunk is not None else {})}
    write_specialist_file(path, meta, _specialist_arrays(delta_set),
                          array_specs(layout, delta_set.bits, owned))


def write_generalist(path: Path, generalist: keras.Model) -> None:
    """Writes the generalist's weights in Keras's HDF5 weights format."""
    generalist.save_weights(str(path))


def _write_contents(root: Path, generalist: keras.Model, delta_sets: Mapping[str, DeltaSet],
                    hierarchy: Hierarchy, backbone: Backbone,
                    delta_settings: Mapping[str, Any]) -> None:
    """Writes every file of a system into the (fresh) folder ``root``; manifest last."""
    layout = delta_layout(generalist, delta_sets)
    trunk = trunk_fingerprint(generalist)  # once: every specialist records the same
    write_generalist(root / GENERALIST_FILE, generalist)
    (root / SPECIALIST_DIR).mkdir()
    taken: set[str] = set()
    specialists = []
    for index, sup in enumerate(hierarchy.superclasses):
        delta_set = delta_sets[sup.name]
        relative = _specialist_filename(sup.name, taken)
        write_specialist(root / relative, delta_set, index, [c.id for c in sup.subclasses],
                         layout, trunk)
        specialists.append({
            "superclass": sup.name, "num_subclasses": len(sup.subclasses),
            "owned": {layer: [list(np.shape(w)) for w in weights]
                      for layer, weights in delta_set.owned.items()},
            **file_entry(root, relative)})
    manifest = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "hierarchy": hierarchy.to_dict(),
        "backbone": dataclasses.replace(
            backbone, num_classes=stage_one_outputs(hierarchy, delta_settings),
            parameters=int(generalist.count_params())).to_dict(),
        "delta_settings": dict(delta_settings),
        "packing": {"codes": "unsigned little-endian dense k-bit, code + 2^(k-1) - 1",
                    "scales": SCALES_DTYPE, "specialist_file": "supersub_tf.deltas."
                    "specialist_file version 1"},
        "delta_layers": [{"name": name, "shape": list(shape)} for name, shape in layout],
        TRUNK_KEY: trunk,
        "generalist": file_entry(root, GENERALIST_FILE),
        "specialists": specialists,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                 encoding="utf-8")


def save_system(path: str | os.PathLike, generalist: keras.Model,
                delta_sets: Mapping[str, DeltaSet], hierarchy: Hierarchy,
                backbone: Backbone | Mapping[str, Any],
                delta_settings: Mapping[str, Any]) -> Path:
    """Writes a Super-Sub system directory atomically (see the module docstring).

    Args:
        path: The system directory to create or replace.
        generalist: The trained generalist (its output size = number of superclasses).
        delta_sets: Superclass name -> that specialist's deltas; exactly the
            hierarchy's superclasses, all with the same delta layers and shapes.
        hierarchy: The class hierarchy.
        backbone: The :class:`Backbone` (a run's: :meth:`Backbone.from_config`), or a
            mapping :meth:`Backbone.from_dict` reads; ``num_classes`` and
            ``parameters`` are filled in.
        delta_settings: ``bits`` (None for float deltas), and ``from_stage``,
            ``train_batchnorm`` or any other JSON-ready keys describing the deltas.

    Returns:
        The system directory.

    Raises:
        StorageError: When the inputs are inconsistent (see :func:`check_inputs`) or
            ``path`` is something other than an empty folder or a previous system.
    """
    if not isinstance(backbone, Backbone):
        backbone = Backbone.from_dict(backbone)
    check_inputs(generalist, delta_sets, hierarchy, backbone.to_dict(), delta_settings)
    with atomic_directory(path, MANIFEST, "Super-Sub system") as work:
        _write_contents(work, generalist, delta_sets, hierarchy, backbone, delta_settings)
    return Path(path)


# --------------------------------------------------------------------------- load: checks
def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Reads and checks a system's manifest (format, version, required keys).

    Raises:
        StorageError: On a missing or unreadable manifest, an unknown format or version,
            or a missing key.
    """
    manifest_path = Path(path) / MANIFEST
    manifest = read_manifest_file(path, FORMAT_NAME, StorageError, "Super-Sub system directory")
    if manifest.get("format_version") == 1:
        raise StorageError(f"{manifest_path}: written by an older supersub_tf (format 1, whose "
                        "specialists do not record their classes); rebuild it by rerunning the "
                        "run that made it (python -m supersub_tf run ... with the same settings "
                        "reuses its trained delta specialists and rewrites systems/)")
    if manifest.get("format_version") not in (LEGACY_NPZ_VERSION, FORMAT_VERSION):
        raise StorageError(f"{manifest_path}: unknown format version "
                        f"{manifest.get('format_version')!r} (this code reads "
                        f"{LEGACY_NPZ_VERSION} and {FORMAT_VERSION})")
    required = ("hierarchy", "backbone", "delta_settings", "delta_layers", "generalist",
                "specialists")
    missing = [key for key in required if key not in manifest]
    if missing:
        raise StorageError(f"{manifest_path}: missing {missing}")
    entries = manifest["specialists"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "superclass" in e
                                                for e in entries):
        raise StorageError(f"{manifest_path}: specialists must be a list of "
                        "{superclass, num_subclasses, file, bytes, sha256} records")
    return manifest


def verify_file(root: Path, entry: Mapping[str, Any]) -> Path:
    """Checks that a listed file exists with the manifest's size and sha256.

    Raises:
        StorageError: Naming the file, when it is missing, its size differs or its sha256
            differs (a truncated, replaced or corrupted file).
    """
    return manifest_files.verify_file(root, entry, StorageError, "system")


def manifest_hierarchy(root: Path, manifest: Mapping[str, Any]) -> Hierarchy:
    """The manifest's hierarchy, checked against its specialist list.

    Raises:
        StorageError: On a malformed hierarchy, or superclasses (names, order or subclass
            counts) that disagree with the specialists listed.
    """
    source = str(root / MANIFEST)
    try:
        hierarchy = Hierarchy.from_dict(manifest["hierarchy"], source=source)
    except SuperSubError as err:
        raise StorageError(f"{source}: invalid hierarchy ({err})") from None
    listed = [(s.get("superclass"), s.get("num_subclasses")) for s in manifest["specialists"]]
    expected = list(hierarchy.summary_rows())
    if listed != expected:
        raise StorageError(f"{source}: the hierarchy's superclasses {expected} do not match the "
                        f"specialists listed {listed}")
    return hierarchy


def _delta_layout_of(root: Path, manifest: Mapping[str, Any]) -> list[tuple[str, tuple]]:
    """``(layer, kernel shape)`` pairs from the manifest; StorageError when malformed."""
    try:
        return [(str(d["name"]), tuple(int(x) for x in d["shape"]))
                for d in manifest["delta_layers"]]
    except (KeyError, TypeError, ValueError):
        raise StorageError(f"{root / MANIFEST}: malformed delta_layers") from None


def read_archive(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a format-2 ``.npz`` (no pickles); StorageError when unreadable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise StorageError(f"{path}: unreadable specialist archive ({err})") from None


def _read_legacy_npz(path: Path, specs: list[ArraySpec]
                     ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a format-2 specialist archive, as a ``.delta`` file gives."""
    arrays = read_archive(path)
    expected = {name for name, _, _ in specs} | {"meta/superclass_index", "meta/subclasses"}
    if set(arrays) != expected:
        extra, missing = sorted(set(arrays) - expected), sorted(expected - set(arrays))
        raise StorageError(f"{path}: arrays disagree with the manifest (missing {missing}, "
                        f"unexpected {extra})")
    meta = {"superclass_index": int(arrays.pop("meta/superclass_index")),
            "subclasses": [str(c) for c in arrays.pop("meta/subclasses").reshape(-1)]}
    return meta, arrays


def read_specialist(root: Path, manifest: Mapping[str, Any], entry: Mapping[str, Any]
                    ) -> tuple[Path, dict[str, Any], dict[str, np.ndarray]]:
    """One verified specialist file of a system: ``(path, meta, arrays by name)``.

    Reads format 3's ``.delta`` files and format 2's ``.npz`` archives alike.

    Raises:
        StorageError: Naming the file, when it fails :func:`verify_file`, is unreadable,
            holds other arrays than the manifest implies, or was trained on another trunk
            (:func:`check_trunk`).
    """
    path = verify_file(root, entry)
    specs = array_specs(_delta_layout_of(root, manifest), manifest["delta_settings"].get("bits"),
                        entry.get("owned", {}))
    if manifest.get("format_version") == LEGACY_NPZ_VERSION:
        return (path, *_read_legacy_npz(path, specs))
    meta, arrays = read_specialist_file(path, specs)
    check_trunk(path, meta, root, manifest)
    return path, meta, arrays


def _trunk_file(root: Path, manifest: Mapping[str, Any]) -> Path:
    """The system's trunk weights file (``generalist.weights.h5``), for the messages."""
    entry = manifest.get("generalist")
    return root / str(entry.get("file", GENERALIST_FILE) if isinstance(entry, dict)
                      else GENERALIST_FILE)


def check_trunk(path: Path, meta: Mapping[str, Any], root: Path,
                manifest: Mapping[str, Any]) -> None:
    """A specialist file's recorded trunk against the system's (the manifest's record).

    Systems written before the fingerprint existed record none and are not checked.

    Raises:
        StorageError: Naming the specialist file and the trunk weights file, when the
            file records another trunk or none (a specialist from another system).
    """
    wanted = manifest.get(TRUNK_KEY)
    if wanted is None or meta.get(TRUNK_KEY) == wanted:
        return
    found = meta.get(TRUNK_KEY) or "none recorded"
    raise StorageError(f"{path}: trained on another trunk (fingerprint {found}) than "
                       f"{_trunk_file(root, manifest)} ({wanted}); a delta specialist works "
                       "only on the trunk it was trained on: keep it with the system it "
                       "came from")


def _load_delta(path: Path, arrays: Mapping[str, np.ndarray], layer: str,
                shape: tuple[int, ...], bits: int | None) -> QuantizedTensor:
    """One layer's delta from a specialist's arrays, checked against its manifest shape."""
    if bits is None:
        values = arrays[f"delta/{layer}/values"]
        if values.shape != shape or values.dtype != np.float32:
            raise StorageError(f"{path}: float delta of layer {layer!r} is {values.dtype} "
                            f"{values.shape}, the manifest says float32 {shape}")
        return QuantizedTensor(np.array(values), None, None)
    scales = arrays[f"delta/{layer}/scales"]
    if scales.shape != shape[-1:] or scales.dtype != np.float32:
        raise StorageError(f"{path}: scales of layer {layer!r} are {scales.dtype} {scales.shape}, "
                        f"the manifest's shape {shape} needs float32 {shape[-1:]}")
    try:
        codes = unpack_codes(arrays[f"delta/{layer}/codes"], bits, shape)
    except ValueError as err:
        raise StorageError(f"{path}: codes of layer {layer!r} do not fit the manifest's shape "
                        f"{shape} ({err})") from None
    return QuantizedTensor(codes, np.array(scales), bits)


def check_classes(path: Path, meta: Mapping[str, Any], hierarchy: Hierarchy,
                  superclass: str) -> None:
    """The file's recorded superclass index and subclasses against the manifest's
    hierarchy (what the specialist's head was trained on)."""
    index = hierarchy.superclass_index(superclass)
    stored = [str(c) for c in meta.get("subclasses", [])]
    wanted = [c.id for c in hierarchy.superclasses[index].subclasses]
    if meta.get("superclass_index") != index or stored != wanted:
        raise StorageError(f"{path}: this specialist was trained as superclass "
                        f"#{meta.get('superclass_index')} over {stored}, but the "
                        f"manifest's hierarchy makes {superclass!r} #{index} over {wanted}; "
                        f"{MANIFEST} was edited or mixed up with another system's")


def _load_specialist(root: Path, manifest: Mapping[str, Any], entry: Mapping[str, Any],
                     hierarchy: Hierarchy) -> DeltaSet:
    """One verified specialist file, unpacked into a :class:`DeltaSet`.

    Raises:
        StorageError: Naming the file, when it fails :func:`read_specialist`, was trained
            on other classes than the hierarchy states, or shapes disagree with it.
    """
    path, meta, arrays = read_specialist(root, manifest, entry)
    check_classes(path, meta, hierarchy, str(entry["superclass"]))
    bits = manifest["delta_settings"].get("bits")
    deltas = {layer: _load_delta(path, arrays, layer, shape, bits)
              for layer, shape in _delta_layout_of(root, manifest)}
    owned = {}
    for layer, shapes in entry.get("owned", {}).items():
        weights = [np.array(arrays[f"owned/{layer}/{i}"]) for i in range(len(shapes))]
        if [list(w.shape) for w in weights] != [list(s) for s in shapes]:
            raise StorageError(f"{path}: owned layer {layer!r} has shapes "
                            f"{[w.shape for w in weights]}, the manifest says {shapes}")
        owned[layer] = weights
    delta_set = DeltaSet(superclass=str(entry["superclass"]), bits=bits, deltas=deltas,
                         owned=owned,
                         catch_all=bool(manifest["delta_settings"].get("catch_all", False)))
    check_head(str(path), delta_set, hierarchy.num_subclasses(delta_set.superclass))
    return delta_set


def manifest_backbone(root: Path, manifest: Mapping[str, Any]) -> Backbone:
    """The manifest's backbone, read by :meth:`Backbone.from_dict` (StorageError naming
    the manifest)."""
    return Backbone.from_dict(manifest["backbone"], str(root / MANIFEST))


def _load_generalist(root: Path, manifest: Mapping[str, Any],
                     layout: list[tuple[str, tuple]]) -> keras.Model:
    """Rebuilds the generalist with ``create_model`` and loads its verified weights.

    Raises:
        StorageError: When the weights file fails :func:`verify_file` or does not load into
            the backbone, or the backbone's kernels disagree with the delta layers.
    """
    from supersub_tf.models import create_model

    path = verify_file(root, manifest["generalist"])
    backbone = manifest_backbone(root, manifest)
    size = backbone.image_size
    try:
        if backbone.num_classes is None:
            raise KeyError("num_classes")
        model = create_model(backbone.model, backbone.num_classes, (size, size, 3),
                             width=backbone.width)
    except (KeyError, TypeError, ValueError, SuperSubError) as err:
        raise StorageError(f"{root / MANIFEST}: cannot rebuild the backbone "
                           f"{backbone.to_dict()} ({err})") from None
    try:
        model.load_weights(str(path))
    except Exception as err:  # h5py and Keras raise many types for a mismatched file
        raise StorageError(f"{path}: does not load into {backbone.model} ({err})") from None
    kernels = kernel_shapes(model)
    for layer, shape in layout:
        if kernels.get(layer) != shape:
            raise StorageError(f"{root / MANIFEST}: delta layer {layer!r} has shape {shape}, the "
                            f"generalist's kernel {kernels.get(layer)}")
    return model


def load_system(path: str | os.PathLike) -> SuperSubSystem:
    """Reads a system written by :func:`save_system`, verifying every file.

    Args:
        path: The system directory.

    Returns:
        The hierarchy, backbone, delta settings, the rebuilt generalist and every
        specialist's deltas, unpacked exactly as they were saved.

    Raises:
        StorageError: Naming the file and the problem: a missing or unreadable manifest,
            an unknown format version, a missing file, a size or sha256 mismatch, a
            specialist whose arrays or shapes disagree with the manifest, a hierarchy
            whose superclasses do not match the specialists listed, or a specialist or
            weights file of another trunk than the manifest records.
    """
    root = Path(path)
    manifest = read_manifest(root)
    hierarchy = manifest_hierarchy(root, manifest)
    delta_sets = {entry["superclass"]: _load_specialist(root, manifest, entry, hierarchy)
                  for entry in manifest["specialists"]}
    generalist = _load_generalist(root, manifest, _delta_layout_of(root, manifest))
    recorded = manifest.get(TRUNK_KEY)
    actual = None if recorded is None else trunk_fingerprint(generalist)
    if actual != recorded:
        raise StorageError(f"{_trunk_file(root, manifest)}: its weights are another trunk "
                           f"(fingerprint {actual}) than the one "
                           f"{root / MANIFEST} records ({recorded}) and the specialists were "
                           "trained on; the weights file was replaced or the manifest edited")
    return SuperSubSystem(root, hierarchy, manifest_backbone(root, manifest),
                          dict(manifest["delta_settings"]), generalist, delta_sets)


def convert_system(path: str | os.PathLike) -> int:
    """Rewrites a system of an older format in the current one, in place (atomically).

    Returns:
        The format version the system had (a current system is left untouched).

    Raises:
        StorageError: When the system does not load (see :func:`load_system`).
    """
    version = int(read_manifest(path)["format_version"])
    if version != FORMAT_VERSION:
        system = load_system(path)
        save_system(path, system.generalist, system.delta_sets, system.hierarchy,
                    system.backbone, system.delta_settings)
    return version
