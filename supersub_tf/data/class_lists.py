"""The class ids a dataset holds, read without listing its images.

A superclassing spec is built over such a list (:func:`supersub_tf.data.build_spec`):
the classes a run's data holds, or the list the spec's ``classes:`` names. The sources
read their own (``ImageSource.class_ids_in_data``); this module reads the lists that
come as files (``data build-preset --classes``) and ILSVRC-2012's 1,000 wnids.
"""

from __future__ import annotations

import os
from pathlib import Path

from supersub_tf.errors import DataError
from supersub_tf.paths import data_dir
from supersub_tf.wordnet import read_class_list


def visible_folders(folder: str | os.PathLike) -> list[str]:
    """The names of the visible (not dot-) folders directly inside ``folder``, sorted."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def class_folders(folder: str | os.PathLike) -> list[str]:
    """The names of the visible folders in ``folder``, sorted: a dataset's class ids
    where each class is a folder (``train/<wnid>/``).

    Raises:
        DataError: ``folder`` cannot be listed or holds no such folder.
    """
    try:
        names = visible_folders(folder)
    except OSError as err:
        raise DataError(f"{folder}: cannot list the class folders ({err})") from None
    if not names:
        raise DataError(f"{folder}: no class folders (expected one folder per class, named "
                        "by its wnid)")
    return names


def read_class_ids(path: str | os.PathLike) -> list[str]:
    """A dataset's class ids from ``path``: a text file of wnids (first token per line), a
    Tiny ImageNet zip or folder (its ``wnids.txt``), an ImageNet-layout folder (the class
    folders of its ``train/``, e.g. Imagenette's or Imagewoof's) or a folder of class
    folders."""
    p = Path(path)
    if p.suffix == ".zip" or (p / "wnids.txt").is_file():
        from supersub_tf.data.tiny_imagenet import read_wnids

        return read_wnids(p)
    if p.is_dir():
        return class_folders(p / "train" if (p / "train").is_dir() else p)
    return read_class_list(p)


def imagenet1k_classes(meta_dir: str | os.PathLike | None = None) -> list[str]:
    """The 1,000 ILSVRC-2012 wnids in class-index order.

    Read from ImageNet's ``synset_words.txt`` in ``meta_dir`` (default
    ``$SUPERSUB_DATA_DIR/imagenet-meta``) when present, else from the identical list
    tensorflow-datasets ships (its ``imagenet2012`` builder's labels), so presets over
    ImageNet build on machines without the metadata folder (e.g. Colab).
    """
    synset_words = Path(meta_dir or data_dir() / "imagenet-meta") / "synset_words.txt"
    if synset_words.is_file():
        return read_class_list(synset_words)
    from supersub_tf.data.tfds_source import label_names

    return label_names("imagenet2012")
