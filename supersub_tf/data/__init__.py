"""Datasets: one entry point, many sources, the same element structure.

>>> from supersub_tf.config import DataConfig
>>> from supersub_tf.data import load_dataset
>>> data = load_dataset(DataConfig(dataset="tiny_imagenet", preset="tiny_imagenet_10"),
...                     "train", batch_size=128)
>>> images, labels = next(iter(data.dataset))   # labels: superclass, subclass, fine

Sources are registered by name in :data:`SOURCES` (``tfds:<builder>`` selects a
tensorflow-datasets builder).
"""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np

from supersub_tf.config import DataConfig
from supersub_tf.data.pipeline import prepare
from supersub_tf.data.source import SPLITS, ImageSource
from supersub_tf.errors import ConfigError
from supersub_tf.hierarchy import Hierarchy

#: Source name -> "module:factory". A factory takes the DataConfig and returns an
#: ImageSource; it is imported only when used (tfds and scipy load lazily).
SOURCES = {
    "tiny_imagenet": "supersub_tf.data.tiny_imagenet:TinyImageNetSource",
    "imagenet": "supersub_tf.data.imagenet_folder:ImageNetFolderSource",
    "folder": "supersub_tf.data.folder_tree:FolderTreeSource",
    "synthetic": "supersub_tf.data.synthetic:SyntheticSource",
    "tfds": "supersub_tf.data.tfds_source:TfdsSource",
}

#: Sources that derive their hierarchy from the data instead of a preset.
SELF_DESCRIBING = ("folder", "synthetic")


@dataclasses.dataclass
class SplitData:
    """A prepared split: the dataset, its hierarchy and what went into it."""

    dataset: object  # tf.data.Dataset of (image, {"superclass", "subclass", "fine"})
    hierarchy: Hierarchy
    split: str
    num_examples: int
    skipped: list[str]


def create_source(config: DataConfig) -> ImageSource:
    """Instantiates the source ``config.dataset`` names, with its hierarchy."""
    name = config.dataset.split(":", 1)[0]
    if name not in SOURCES:
        raise ConfigError(f"unknown data.dataset {config.dataset!r}; choose one of "
                          f"{sorted(SOURCES)} (tfds as tfds:<builder>)")
    module_name, factory_name = SOURCES[name].split(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    if name in SELF_DESCRIBING:
        return factory(config)
    from supersub_tf.presets import SpecBuild, build_over_data, is_spec_file, load_preset

    if not config.preset:
        raise ConfigError(f"data.preset is required for data.dataset={config.dataset!r}")
    tiny_path = config.path if name == "tiny_imagenet" else None  # for classes: tiny_imagenet
    # A user's spec is built over the classes the data holds, when the source can list
    # them: the classes of the spec's list that the data lacks are then not required.
    in_data = (getattr(factory, "class_ids_in_data", lambda _: None)(config)
               if is_spec_file(config.preset) else None)
    if in_data is not None:
        built = build_over_data(config.preset, in_data, tiny_imagenet_path=tiny_path or None)
    else:
        built = SpecBuild(load_preset(config.preset, tiny_imagenet_path=tiny_path or None))
    source = factory(config, built.hierarchy)
    for note, names in built.notes():  # a spec over the dataset's classes: what it leaves out
        source.add_note(note, names)
    return source


def _checked_source(config: DataConfig, split: str, source: ImageSource | None) -> ImageSource:
    """The source to read ``split`` from (``source`` or a new one), the split checked."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {SPLITS}")
    src = source or create_source(config)
    src.check_split(split)
    return src


def load_dataset(config: DataConfig, split: str, *, training: bool | None = None,
                 batch_size: int | None = None, superclass: int | str | None = None,
                 seed: int = 0, source: ImageSource | None = None) -> SplitData:
    """Returns one split as a ready ``tf.data.Dataset`` with its hierarchy.

    Args:
        config: Data settings.
        split: ``train``, ``val`` or ``test``.
        training: Shuffle and augment; defaults to ``split == "train"``.
        batch_size: Batch size, or None for single examples.
        superclass: Only this superclass's images (index or name): what a specialist
            trains on. Labels keep their global meaning.
        seed: Shuffle and augmentation seed.
        source: Reuse an already created source (saves re-listing the files).
    """
    src = _checked_source(config, split, source)
    hierarchy = src.hierarchy
    fine = None if superclass is None else hierarchy.fine_labels_of(superclass)
    training = split == "train" if training is None else training
    raw = src.raw(split, fine, order_seed=seed if training else None)
    count = src.count(split, fine)
    ds = prepare(raw, hierarchy, config, training=training, batch_size=batch_size, seed=seed)
    return SplitData(ds, hierarchy, split, count, list(src.skipped.get(split, [])))


def load_catch_all_dataset(config: DataConfig, split: str, superclass: int | str,
                           others_per_image: float, *, training: bool | None = None,
                           batch_size: int | None = None, seed: int = 0,
                           source: ImageSource | None = None) -> SplitData:
    """One superclass's images plus a sample of the others': a catch-all specialist's data.

    The sample is ``others_per_image`` times the superclass's image count (at most all
    other images), drawn uniformly from the other superclasses' images with ``seed`` and
    fixed across epochs. Labels keep their global meaning; the trainer maps the others to
    the "other" output.
    """
    src = _checked_source(config, split, source)
    hierarchy = src.hierarchy
    own = hierarchy.fine_labels_of(superclass)
    others = np.setdiff1d(np.arange(hierarchy.num_classes), own)
    training = split == "train" if training is None else training
    own_count, other_total = src.count(split, own), src.count(split, others)
    other_count = min(other_total, int(round(others_per_image * own_count)))
    # The others' order is always shuffled (the listing is sorted by class), so the
    # first ``other_count`` of them are a uniform sample.
    own_raw = src.raw(split, own, order_seed=seed if training else None)
    other_raw = src.raw(split, others, order_seed=seed + 7919).take(other_count)
    if training:  # interleave the two at random positions: a stream mixed from the start
        import tensorflow as tf

        choice = np.random.default_rng(seed).permutation(
            np.repeat(np.array([0, 1], np.int64), [own_count, other_count]))
        raw = tf.data.Dataset.choose_from_datasets(
            [own_raw, other_raw], tf.data.Dataset.from_tensor_slices(choice))
    else:
        raw = own_raw.concatenate(other_raw)
    ds = prepare(raw, hierarchy, config, training=training, batch_size=batch_size, seed=seed)
    return SplitData(ds, hierarchy, split, own_count + other_count,
                     list(src.skipped.get(split, [])))
