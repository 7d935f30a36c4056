"""Your own images in a two-level folder tree; the tree itself is the hierarchy.

Layout (``data.dataset: folder``, ``data.path: root``)::

    root/<superclass>/<subclass>/*.jpg | *.jpeg | *.png     (extensions in any case)

Superclasses and subclasses are ordered by folder name. A subclass's id is its folder
name and its readable name the folder name with underscores as spaces; a superclass is
named after its folder. Other files, hidden files and hidden folders (names starting
with ``.``, e.g. ``.ipynb_checkpoints`` or the temporary files of an interrupted atomic
write) and anything nested deeper are ignored. The tree has no official splits:
``train``/``val``/``test`` are held out per class by ``data.val_fraction``,
``data.test_fraction`` and ``data.split_seed``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from supersub_tf.config import DataConfig
from supersub_tf.data.class_lists import visible_folders
from supersub_tf.data.examples import Examples, fingerprint_of
from supersub_tf.data.source import ListSource
from supersub_tf.errors import ConfigError, DataError
from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LAYOUT = "root/<superclass>/<subclass>/*.jpg (or .jpeg, .png)"


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _image_files(folder: Path) -> list[os.DirEntry]:
    """The visible image files directly inside ``folder``, sorted by name."""
    with os.scandir(folder) as entries:
        files = [e for e in entries if _visible(e.name)
                 and e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file()]
    return sorted(files, key=lambda e: e.name)


def resolve_root(path: str) -> Path:
    """The tree's root folder from ``data.path``.

    Raises:
        ConfigError: ``data.path`` is empty (the folder source has no default location).
        DataError: The path does not exist or is not a folder.
    """
    if not path:
        raise ConfigError("data.path is required for data.dataset='folder': set it to the "
                          f"root of a {LAYOUT} tree")
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"image folder not found: {root} (data.path); expected a {LAYOUT} tree")
    if not root.is_dir():
        raise DataError(f"{root} (data.path) is not a folder; expected a {LAYOUT} tree")
    return root


def _scan_superclass(root: Path, superclass: str) -> list[tuple[str, list[os.DirEntry]]]:
    """``(subclass folder, image files)`` of one superclass folder, each non-empty."""
    folder = root / superclass
    subclasses = visible_folders(folder)
    if not subclasses:
        loose = len(_image_files(folder))
        hint = (f"; it holds {loose} image file(s) directly, but images must sit one level "
                "deeper, in subclass folders" if loose else "")
        raise DataError(f"{root}: superclass folder {superclass!r} has no subclass folders"
                        f"{hint} (expected {LAYOUT})")
    found = []
    for subclass in subclasses:
        files = _image_files(folder / subclass)
        if not files:
            raise DataError(f"{root}: subclass folder {superclass}/{subclass} has no images "
                            f"({', '.join(IMAGE_EXTENSIONS)}); add some or remove the folder")
        found.append((subclass, files))
    return found


def scan_tree(root: Path) -> tuple[Hierarchy, Examples]:
    """Lists a folder tree: its hierarchy and all its images with their fine labels.

    The fingerprint (which keys the cached decode check) covers the root and every
    image's relative path, size and modification time, so adding, removing, replacing
    or editing any image invalidates the cached check.

    Raises:
        DataError: The root has no superclass folders, a superclass folder has no
            subclass folders, a subclass folder has no images, or a folder is unreadable.
        HierarchyError: The same subclass folder name appears under two superclasses
            (the message names both).
    """
    try:
        superclass_names = visible_folders(root)
        if not superclass_names:
            raise DataError(f"{root}: no superclass folders found (expected {LAYOUT})")
        tree = [(name, _scan_superclass(root, name)) for name in superclass_names]
        superclasses = [
            Superclass(name=sup, subclasses=tuple(Subclass(id=sub, name=sub.replace("_", " "))
                                                  for sub, _ in subs))
            for sup, subs in tree
        ]
        hierarchy = Hierarchy(superclasses, name=root.resolve().name or str(root),
                              metadata={"source": "folder"})
        paths, fine, stamps = [], [], [str(root.resolve())]
        label = 0
        for sup, subs in tree:
            for sub, files in subs:
                for entry in files:
                    stat = entry.stat()
                    paths.append(entry.path)
                    stamps.append(f"{sup}/{sub}/{entry.name}:{stat.st_size}:{stat.st_mtime_ns}")
                fine += [label] * len(files)
                label += 1
    except OSError as err:
        raise DataError(f"{root}: cannot read the image folder ({err})") from None
    names = np.array(paths, dtype=object)
    examples = Examples(names.copy(), np.asarray(fine, np.int32), "path", names,
                        fingerprint_of(*stamps))
    return hierarchy, examples


class FolderTreeSource(ListSource):
    """Images in ``data.path/<superclass>/<subclass>/``; the hierarchy is the tree.

    The tree is listed once, when the source is created, so layout problems (a missing
    root, an empty folder, a subclass under two superclasses) fail at once.

    Args:
        config: Data settings; ``config.path`` is the root. ``config.preset`` is ignored.
    """

    def __init__(self, config: DataConfig) -> None:
        super().__init__(config)
        self.root = resolve_root(config.path)
        self._hierarchy, self._all = scan_tree(self.root)

    @property
    def description(self) -> str:
        return f"image folder {self.root}"

    def official_splits(self) -> dict[str, Examples]:
        return {"all": self._all}
