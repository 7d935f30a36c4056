"""ILSVRC-2012 ImageNet as extracted on disk: ``train/<wnid>/`` plus one of three val layouts.

Layout below the root (``data.path``, default ``$SUPERSUB_DATA_DIR/imagenet``)::

    train/<wnid>/*.JPEG                         one folder per class, as in the tarballs
    val/<wnid>/*.JPEG                           (a) val sorted into class folders, or
    val/ILSVRC2012_val_00000001.JPEG ...        flat val, labelled by one of:
        LOC_val_solution.csv                    (b) Kaggle's, in the root or above it
        ILSVRC2012_validation_ground_truth.txt  (c) the devkit's, with its meta.mat, in the
        + meta.mat                                  root, ILSVRC2012_devkit_t12/data/ or
                                                    devkit/data/

The val layout is detected in that order. Only the hierarchy's classes are listed: the
folders of the other ImageNet classes are never read, so a 10-class hierarchy starts in
seconds even on the full 1.28M-image training set. Images are yielded as file paths and
decoded by :class:`~supersub_tf.data.source.ListSource`, which also runs the (cached)
decode check that names or skips corrupt files.
"""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

import numpy as np

from supersub_tf.config import DataConfig
from supersub_tf.data.class_lists import class_folders
from supersub_tf.data.examples import Examples, fingerprint_of
from supersub_tf.data.source import ListSource
from supersub_tf.errors import DataError
from supersub_tf.hierarchy import Hierarchy
from supersub_tf.paths import data_dir
from supersub_tf.tables import name_list

#: File name endings (compared case-insensitively) that count as images.
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
#: Kaggle's val labels (ImageNet Object Localization Challenge).
KAGGLE_SOLUTION = "LOC_val_solution.csv"
#: The devkit's val labels: line k is the ILSVRC2012_ID of ILSVRC2012_val_<k>.JPEG.
DEVKIT_GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
#: The devkit's synset table, mapping ILSVRC2012_ID to WNID.
DEVKIT_META = "meta.mat"
#: Folders (relative to the root) searched for the devkit files, in order.
DEVKIT_DIRS = (".", "ILSVRC2012_devkit_t12/data", "devkit/data")
#: How many folders above the root are searched for Kaggle's CSV (Kaggle's archive puts
#: it three levels above ``ILSVRC/Data/CLS-LOC``).
KAGGLE_PARENTS = 3


def default_root() -> Path:
    """Where ImageNet is looked for when ``data.path`` is empty."""
    return data_dir() / "imagenet"


def find_root(path: str | os.PathLike | None) -> Path:
    """The ImageNet root: ``path`` if given, else :func:`default_root`.

    Raises:
        DataError: The root or its ``train/`` folder does not exist.
    """
    root = Path(path).expanduser() if path else default_root()
    where = "data.path" if path else "the default location; set data.path to change it"
    if not root.is_dir():
        raise DataError(f"ImageNet not found at {root} ({where}); expected the ILSVRC-2012 "
                        "layout with train/<wnid>/ and val/ folders")
    if not (root / "train").is_dir():
        raise DataError(f"{root}: no train/ folder; expected train/<wnid>/*.JPEG (extract "
                        "ILSVRC2012_img_train.tar and its per-class tars there)")
    return root


def list_images(folder: Path) -> list[str]:
    """Names of the image files directly inside ``folder``, sorted (no per-file stat)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries
                      if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file())


def folder_stamp(folder: Path, count: int) -> str:
    """A cheap identity of a folder's contents: its name, mtime and image count.

    A folder's mtime changes when files are added, removed or renamed in it, which is
    what makes a cached decode check stale; one stat per folder instead of per file.
    """
    return f"{folder.name}:{folder.stat().st_mtime_ns}:{count}"


def read_kaggle_solution(path: Path) -> list[tuple[str, str]]:
    """``(ImageId, wnid)`` pairs of Kaggle's ``LOC_val_solution.csv``.

    Each row is ``ImageId,PredictionString`` where the prediction string repeats
    ``wnid x1 y1 x2 y2`` per box; the first box's wnid is the image's label.

    Raises:
        DataError: The header or a row is malformed (the line is named).
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read ({err})") from None
    if not rows or [c.strip() for c in rows[0][:2]] != ["ImageId", "PredictionString"]:
        raise DataError(f"{path}: expected the header ImageId,PredictionString (Kaggle's "
                        f"{KAGGLE_SOLUTION}), got {rows[0] if rows else 'an empty file'}")
    pairs = []
    for line_no, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        tokens = row[1].split() if len(row) >= 2 else []
        if not row[0].strip() or not tokens:
            raise DataError(f"{path}: line {line_no} is malformed: {','.join(row)!r}")
        pairs.append((row[0].strip(), tokens[0]))
    return pairs


def read_meta_wnids(path: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> WNID from the devkit's ``meta.mat``.

    The IDs are the devkit's own numbering (not the sorted-wnid order many loaders
    assume), so the val ground truth can only be decoded through this table.

    Raises:
        DataError: The file cannot be read or has no ``synsets`` with those fields.
    """
    import scipy.io

    try:
        synsets = scipy.io.loadmat(str(path))["synsets"]
        ids = [int(np.asarray(x).ravel()[0]) for x in synsets["ILSVRC2012_ID"].ravel()]
        wnids = [str(np.asarray(x).ravel()[0]) for x in synsets["WNID"].ravel()]
    except Exception as err:  # loadmat raises ValueError, OSError, TypeError, ...
        raise DataError(f"{path}: not a readable devkit meta.mat with a synsets struct "
                        f"array of ILSVRC2012_ID and WNID ({type(err).__name__}: {err})") from None
    return dict(zip(ids, wnids))


def read_devkit_labels(ground_truth: Path, meta: Path) -> list[tuple[str, str]]:
    """``(ImageId, wnid)`` pairs from the devkit's val ground truth and ``meta.mat``.

    Raises:
        DataError: A line is not an integer, or names an ID ``meta.mat`` does not know.
    """
    id_to_wnid = read_meta_wnids(meta)
    try:
        lines = ground_truth.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{ground_truth}: cannot read ({err})") from None
    pairs = []
    for k, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            class_id = int(line)
        except ValueError:
            raise DataError(f"{ground_truth}: line {k} is not an ILSVRC2012_ID: "
                            f"{line!r}") from None
        if class_id not in id_to_wnid:
            raise DataError(f"{ground_truth}: line {k} names ILSVRC2012_ID {class_id}, which "
                            f"{meta} does not list")
        pairs.append((f"ILSVRC2012_val_{k:08d}", id_to_wnid[class_id]))
    return pairs


def find_file(name: str, folders: list[Path]) -> Path | None:
    """The first ``folder / name`` that is a file, or None."""
    return next((folder / name for folder in folders if (folder / name).is_file()), None)


class ImageNetFolderSource(ListSource):
    """ILSVRC-2012 ImageNet from an extracted folder; ``train`` and ``val`` are the
    official splits, ``test`` is held out of ``train`` when ``data.test_fraction > 0``.

    Args:
        config: Data settings; ``config.path`` is the root (empty: the default).
        hierarchy: The classes to read, by wnid.

    Raises:
        DataError: The root, ``train/`` or a class's ``train/<wnid>/`` folder is missing.

    The decode check is cached per file (size and modification time), so a file
    overwritten in place is checked again.
    """

    def __init__(self, config: DataConfig, hierarchy: Hierarchy) -> None:
        super().__init__(config)
        self.root = find_root(config.path)
        self._hierarchy = hierarchy
        for wnid in hierarchy.class_ids:
            if not (self.root / "train" / wnid).is_dir():
                raise DataError(f"{self.root}: class {wnid} ({self._class_name(wnid)}) of "
                                f"hierarchy {hierarchy.name!r} has no train/{wnid}/ folder")
        #: How val is labelled: ``folders``, ``kaggle`` or ``devkit`` (set when listed).
        self.val_layout = ""

    @classmethod
    def class_ids_in_data(cls, config: DataConfig) -> list[str]:
        """The class folders of ``train/`` (visible folders, sorted), e.g. the 20 of an
        Imagewoof + Imagenette tree, which has this layout."""
        return class_folders(find_root(config.path) / "train")

    @property
    def description(self) -> str:
        return f"ImageNet at {self.root}"

    def _class_name(self, wnid: str) -> str:
        return self._hierarchy.class_names[self._hierarchy.fine_label(wnid)]

    @functools.lru_cache(maxsize=None)
    def official_splits(self) -> dict[str, Examples]:
        return {"train": self._list_class_folders("train"), "val": self._list_val()}

    # ------------------------------------------------------------------ class folders
    def _list_class_folders(self, split: str) -> Examples:
        """The images of ``<split>/<wnid>/`` for every class of the hierarchy."""
        paths: list[str] = []
        fine: list[int] = []
        stamps: list[str] = []
        partial = split == "val" and self.config.partial_val
        for wnid in self._hierarchy.class_ids:
            folder = self.root / split / wnid
            if partial and not (folder.is_dir() and list_images(folder)):
                continue  # reported by _check_val_classes below
            if not folder.is_dir():
                raise DataError(f"{self.root}: {split}/ is sorted into class folders but has "
                                f"no {split}/{wnid}/ for class {wnid} ({self._class_name(wnid)})"
                                + ("; set data.partial_val=true to evaluate on the classes "
                                   "present" if split == "val" else ""))
            names = list_images(folder)
            if not names:
                raise DataError(f"{self.root}: class {wnid} ({self._class_name(wnid)}) has no "
                                f"images in {split}/{wnid}/ (looked for "
                                f"{', '.join(IMAGE_SUFFIXES)} files)")
            paths += [str(folder / n) for n in names]
            fine += [self._hierarchy.fine_label(wnid)] * len(names)
            stamps.append(folder_stamp(folder, len(names)))
        if partial:
            self._check_val_classes(set(fine), f"{self.root}/val/")
        return self._examples(paths, fine, split, stamps)

    def _examples(self, paths: list[str], fine: list[int], split: str,
                  stamps: list[str]) -> Examples:
        fingerprint = fingerprint_of("imagenet_folder", str(self.root.resolve()), split, *stamps)
        return Examples(np.array(paths, dtype=object), np.asarray(fine, np.int32), "path",
                        np.array(paths, dtype=object), fingerprint)

    # ------------------------------------------------------------------ val
    def _accept_gap(self, gap: str, hint: str = "", names: list[str] | None = None) -> None:
        """Notes a gap of the val split under ``data.partial_val``, else refuses it.

        ``names``: every class or file the one-line ``gap`` abbreviates (kept with the note).
        """
        if not self.config.partial_val:
            raise DataError(f"{gap}; {hint + ' ' if hint else ''}set data.partial_val=true "
                            "to evaluate on the images present")
        self.add_note(gap + " (left out: data.partial_val)", names or ())

    def _check_val_classes(self, labelled: set[int], where: str) -> None:
        h = self._hierarchy
        empty = [f"{w} ({self._class_name(w)})" for w in h.class_ids
                 if h.fine_label(w) not in labelled]
        if empty:
            self._accept_gap(f"{where}: {len(empty)} of {h.num_classes} classes have no val "
                             f"images: {name_list(empty)}", names=empty)

    def _list_val(self) -> Examples:
        """The val split, in whichever of the three layouts is on disk."""
        val = self.root / "val"
        if not val.is_dir():
            raise DataError(f"{self.root}: no val/ folder; extract ILSVRC2012_img_val.tar "
                            "into val/ (flat, with a label file, or sorted into val/<wnid>/)")
        with os.scandir(val) as scan:
            entries = list(scan)
        if any(e.is_dir() for e in entries):
            self.val_layout = "folders"
            return self._list_class_folders("val")
        labels, label_files = self._flat_val_labels()
        files = sorted(e.name for e in entries
                       if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file())
        return self._flat_val_examples(val, files, labels, label_files)

    def _flat_val_labels(self) -> tuple[list[tuple[str, str]], list[Path]]:
        """``(ImageId, wnid)`` pairs from Kaggle's CSV or the devkit, and the files read."""
        ancestors = [self.root, *list(self.root.resolve().parents)[:KAGGLE_PARENTS]]
        solution = find_file(KAGGLE_SOLUTION, ancestors)
        if solution is not None:
            self.val_layout = "kaggle"
            return read_kaggle_solution(solution), [solution]
        devkit_dirs = [self.root / d for d in DEVKIT_DIRS]
        ground_truth = find_file(DEVKIT_GROUND_TRUTH, devkit_dirs)
        meta = find_file(DEVKIT_META, devkit_dirs)
        if ground_truth is not None and meta is not None:
            self.val_layout = "devkit"
            return read_devkit_labels(ground_truth, meta), [ground_truth, meta]
        partial = ground_truth or meta
        found = f" (found {partial} but not its partner)" if partial else ""
        raise DataError(
            f"{self.root}/val/ holds flat images but no labels were found{found}: put "
            f"Kaggle's {KAGGLE_SOLUTION} in {self.root} or a folder above it, or the devkit's "
            f"{DEVKIT_GROUND_TRUTH} together with {DEVKIT_META} in one of "
            f"{', '.join(str(d) for d in devkit_dirs)}; or sort val/ into val/<wnid>/ folders")

    def _flat_val_examples(self, val: Path, files: list[str], labels: list[tuple[str, str]],
                           label_files: list[Path]) -> Examples:
        """Matches labelled ImageIds of the hierarchy's classes to the files in ``val/``."""
        by_stem: dict[str, str] = {}
        for name in files:  # sorted, so the first of two same-stem files wins
            by_stem.setdefault(os.path.splitext(name)[0], name)
        chosen: list[tuple[str, int]] = []
        absent: list[str] = []
        for image_id, wnid in labels:
            if wnid not in self._hierarchy:
                continue
            if image_id not in by_stem:
                absent.append(image_id)
                continue
            chosen.append((by_stem[image_id], self._hierarchy.fine_label(wnid)))
        chosen.sort()
        if absent:
            self._accept_gap(
                f"{label_files[0]} labels {len(absent)} val image(s) of the hierarchy's "
                f"classes that are not in {val}/ (first: {absent[0]}.JPEG)",
                "is val/ fully extracted?")
        self._check_val_classes({fine for _, fine in chosen}, str(label_files[0]))
        stamps = [folder_stamp(val, len(files))]
        for path in label_files:
            stat = path.stat()
            stamps.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
        return self._examples([str(val / n) for n, _ in chosen], [f for _, f in chosen],
                              "val", stamps)
