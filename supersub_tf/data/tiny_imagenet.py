"""Tiny ImageNet in its official archive layout, read from the zip or an extracted folder.

Layout (``tiny-imagenet-200.zip``; the 67-class subset has the same one)::

    tiny-imagenet-200/wnids.txt
    tiny-imagenet-200/train/<wnid>/images/<wnid>_<k>.JPEG
    tiny-imagenet-200/val/images/val_<k>.JPEG
    tiny-imagenet-200/val/val_annotations.txt     file <TAB> wnid <TAB> box

Only the hierarchy's classes are read. From a zip, the JPEG bytes are read straight
from the archive into memory (a few hundred MB for all 200 classes), so nothing is
extracted to disk.
"""

from __future__ import annotations

import functools
import os
import zipfile
from pathlib import Path

import numpy as np

from supersub_tf.config import DataConfig
from supersub_tf.data.examples import Examples, fingerprint_of
from supersub_tf.data.source import ListSource
from supersub_tf.errors import DataError
from supersub_tf.hierarchy import Hierarchy
from supersub_tf.paths import data_dir

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
ARCHIVE_NAMES = ("tiny-imagenet-200.zip", "tiny-imagenet-200", "tiny-imagenet-67.zip")


def find_archive(path: str | os.PathLike | None, download: bool = True) -> Path:
    """Locates Tiny ImageNet: ``path`` if given, else under the data dir, else downloads.

    Looks for ``tiny-imagenet-200.zip``, an extracted ``tiny-imagenet-200/`` folder and
    ``tiny-imagenet-67.zip`` in ``$SUPERSUB_DATA_DIR``; when none is there and
    ``download`` is set, fetches the official archive with ``tf_keras.utils.get_file``.

    Raises:
        DataError: The given path does not exist, or nothing is found and the download
            is off or fails; the message says where to put the archive.
    """
    if path:
        p = Path(path).expanduser()
        if not p.exists():
            raise DataError(f"Tiny ImageNet not found at {p} (data.path); expected "
                            "tiny-imagenet-200.zip or its extracted folder")
        return p
    root = data_dir()
    for name in ARCHIVE_NAMES:
        if (root / name).exists():
            return root / name
    where = root / ARCHIVE_NAMES[0]
    if not download:
        raise DataError(f"Tiny ImageNet not found in {root}; put tiny-imagenet-200.zip "
                        f"(from {URL}) at {where}, or set data.path")
    try:
        import tf_keras

        return Path(tf_keras.utils.get_file(ARCHIVE_NAMES[0], URL, cache_dir=str(root),
                                            cache_subdir=""))
    except Exception as err:  # get_file wraps network errors in several exception types
        raise DataError(f"could not download Tiny ImageNet from {URL} ({err}); download it "
                        f"on a connected machine and put tiny-imagenet-200.zip at {where}, "
                        "or set data.path") from None


class _Archive:
    """Uniform read access to the layout inside a zip or a folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_dir():
            self.zip = None
            candidates = [path, path / "tiny-imagenet-200"]
            roots = [c for c in candidates if (c / "wnids.txt").is_file()]
            if not roots:
                raise DataError(f"{path}: no wnids.txt found; not a Tiny ImageNet folder")
            self.root = str(roots[0])
            self.members: set[str] | None = None
        else:
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as err:
                raise DataError(f"{path}: not a readable zip archive ({err})") from None
            names = self.zip.namelist()
            tops = sorted(n[: -len("wnids.txt")] for n in names
                          if n.endswith("wnids.txt") and n.count("/") <= 1)
            if not tops:
                raise DataError(f"{path}: no wnids.txt in the archive; not Tiny ImageNet")
            self.root = tops[0].rstrip("/")
            self.members = set(names)

    def join(self, *parts: str) -> str:
        return "/".join([self.root, *parts]) if self.root else "/".join(parts)

    def read_text(self, *parts: str) -> str:
        name = self.join(*parts)
        try:
            if self.zip is not None:
                return self.zip.read(name).decode("utf-8")
            return Path(name).read_text(encoding="utf-8")
        except (KeyError, FileNotFoundError):
            raise DataError(f"{self.path}: missing {'/'.join(parts)}") from None

    def list_dir(self, *parts: str) -> list[str]:
        """File names directly inside a folder of the layout, sorted."""
        prefix = self.join(*parts) + "/"
        if self.zip is not None:
            return sorted(n[len(prefix):] for n in self.members
                          if n.startswith(prefix) and "/" not in n[len(prefix):]
                          and len(n) > len(prefix))
        folder = Path(prefix)
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def examples(self, members: list[str], fine: list[int], tag: str) -> Examples:
        if self.zip is not None:
            images = np.empty(len(members), dtype=object)
            for i, name in enumerate(members):
                images[i] = self.zip.read(name)
            kind = "bytes"
            stat = self.path.stat()
            fp = fingerprint_of(str(self.path.resolve()), str(stat.st_size),
                                str(stat.st_mtime_ns), tag)
            names = [f"{self.path}:{m}" for m in members]
        else:
            images, kind, fp, names = np.array(members, dtype=object), "path", "", members
        return Examples(images, np.asarray(fine, np.int32), kind, np.array(names, dtype=object), fp)


def read_wnids(path: str | os.PathLike) -> list[str]:
    """The class wnids listed in a Tiny ImageNet archive's ``wnids.txt``."""
    archive = _Archive(Path(path))
    return [line.split()[0] for line in archive.read_text("wnids.txt").splitlines()
            if line.strip()]


class TinyImageNetSource(ListSource):
    """Tiny ImageNet (official zip or folder); ``train`` and ``val`` are the official
    splits, ``test`` is held out of ``train`` when ``data.test_fraction > 0``."""

    def __init__(self, config: DataConfig, hierarchy: Hierarchy) -> None:
        super().__init__(config)
        self.path = find_archive(config.path, download=config.download)
        self._archive = _Archive(self.path)
        self._hierarchy = hierarchy
        wnids = set(read_wnids(self.path))
        missing = [c for c in hierarchy.class_ids if c not in wnids]
        if missing:
            raise DataError(f"{self.path}: class {missing[0]} of hierarchy {hierarchy.name!r} "
                            f"is not in the archive's wnids.txt ({len(missing)} missing)")

    @classmethod
    def class_ids_in_data(cls, config: DataConfig) -> list[str]:
        """The wnids of the archive's ``wnids.txt`` (200, or 67 in the subset), in order."""
        return read_wnids(find_archive(config.path, download=config.download))

    @property
    def description(self) -> str:
        return f"Tiny ImageNet at {self.path}"

    @functools.lru_cache(maxsize=None)
    def official_splits(self) -> dict[str, Examples]:
        h = self._hierarchy
        train_members, train_fine = [], []
        for wnid in h.class_ids:
            files = [f for f in self._archive.list_dir("train", wnid, "images")
                     if f.lower().endswith((".jpeg", ".jpg", ".png"))]
            if not files:
                raise DataError(f"{self.path}: class {wnid} ({h.class_names[h.fine_label(wnid)]})"
                                " has no training images in train/" + wnid + "/images/")
            train_members += [self._archive.join("train", wnid, "images", f) for f in files]
            train_fine += [h.fine_label(wnid)] * len(files)
        val_members, val_fine = [], []
        for line_no, line in enumerate(self._archive.read_text("val", "val_annotations.txt")
                                       .splitlines(), 1):
            fields = line.split("\t")
            if len(fields) < 2:
                if line.strip():
                    raise DataError(f"{self.path}: val/val_annotations.txt line {line_no} is "
                                    f"malformed: {line!r}")
                continue
            if fields[1] in h:
                val_members.append(self._archive.join("val", "images", fields[0]))
                val_fine.append(h.fine_label(fields[1]))
        present = (set(self._archive.members) if self._archive.members is not None
                   else {m for m in val_members if os.path.isfile(m)})
        absent = [m for m in val_members if m not in present]
        if absent:
            gap = (f"{self.path}: {len(absent)} file(s) listed in val/val_annotations.txt are "
                   f"missing (first: {absent[0]})")
            if not self.config.partial_val:
                raise DataError(f"{gap}; set data.partial_val=true to evaluate on the images "
                                "present")
            self.notes.append(gap + " (left out: data.partial_val)")
            kept = [(m, f) for m, f in zip(val_members, val_fine) if m in present]
            val_members, val_fine = [m for m, _ in kept], [f for _, f in kept]
        return {"train": self._archive.examples(train_members, train_fine, "train"),
                "val": self._archive.examples(val_members, val_fine, "val")}
