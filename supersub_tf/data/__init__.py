"""Datasets: one entry point, many sources, the same element structure.

>>> from supersub_tf.config import DataConfig
>>> from supersub_tf.data import load_dataset
>>> data = load_dataset(DataConfig(dataset="tiny_imagenet", preset="tiny_imagenet_10"),
...                     "train", batch_size=128)
>>> images, labels = next(iter(data.dataset))   # labels: superclass, subclass, fine

Sources are registered by name in :data:`SOURCES` (``tfds:<builder>`` selects a
tensorflow-datasets builder). Each says which class ids it holds
(``ImageSource.class_ids_in_data``), and a superclassing spec is built over those
(:func:`build_spec`): :mod:`supersub_tf.presets` takes the list and reads no dataset.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Sequence

import numpy as np

from supersub_tf.config import DataConfig
from supersub_tf.data.class_lists import imagenet1k_classes
from supersub_tf.data.pipeline import prepare
from supersub_tf.data.source import SPLITS, ImageSource
from supersub_tf.errors import ConfigError, DataError
from supersub_tf.hierarchy import Hierarchy
from supersub_tf.presets import (SpecBuild, build_over_data, build_preset, is_spec_file,
                                 load_preset, load_spec)
from supersub_tf.superclassing import SuperclassingSpec

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

#: A superclassing spec's ``classes:`` -> the dataset whose class list it names, read by
#: that source's ``class_ids_in_data``. The other two values are no single source's:
#: ``imagenet1k`` is ImageNet's ``synset_words.txt`` or tfds' copy
#: (:func:`~supersub_tf.data.class_lists.imagenet1k_classes`), ``explicit`` the spec's own
#: subclass lists.
SPEC_CLASS_DATASETS = {"imagenette": "tfds:imagenette", "tiny_imagenet": "tiny_imagenet"}


@dataclasses.dataclass
class SplitData:
    """A prepared split: the dataset, its hierarchy and what went into it."""

    dataset: object  # tf.data.Dataset of (image, {"superclass", "subclass", "fine"})
    hierarchy: Hierarchy
    split: str
    num_examples: int
    skipped: list[str]


def source_class(dataset: str) -> type[ImageSource]:
    """The source class (or factory) ``data.dataset`` names, imported on first use.

    Raises:
        ConfigError: No source of that name.
    """
    name = dataset.split(":", 1)[0]
    if name not in SOURCES:
        raise ConfigError(f"unknown data.dataset {dataset!r}; choose one of "
                          f"{sorted(SOURCES)} (tfds as tfds:<builder>)")
    module_name, factory_name = SOURCES[name].split(":")
    return getattr(importlib.import_module(module_name), factory_name)


def create_source(config: DataConfig) -> ImageSource:
    """Instantiates the source ``config.dataset`` names, with its hierarchy.

    A user's spec file (``data.preset: my.yaml``) is built over the classes the data
    holds, when the source can list them: the classes of the spec's own list that the
    data lacks are then not required, and what the build leaves out becomes the
    source's notes.
    """
    factory = source_class(config.dataset)
    if config.dataset.split(":", 1)[0] in SELF_DESCRIBING:
        return factory(config)
    if not config.preset:
        raise ConfigError(f"data.preset is required for data.dataset={config.dataset!r}")
    if is_spec_file(config.preset):
        built = build_spec(config.preset, factory.class_ids_in_data(config), config=config)
    else:
        built = SpecBuild(load_preset(config.preset))
    source = factory(config, built.hierarchy)
    for note, names in built.notes():  # a spec over the dataset's classes: what it leaves out
        source.add_note(note, names)
    return source


def spec_class_ids(spec: str | os.PathLike | SuperclassingSpec, *,
                   config: DataConfig | None = None,
                   meta_dir: str | os.PathLike | None = None) -> list[str]:
    """The class ids a superclassing spec's ``classes:`` names, in the dataset's order.

    ``imagenet1k``: ILSVRC-2012's 1,000 wnids (``synset_words.txt`` in ``meta_dir``,
    default ``$SUPERSUB_DATA_DIR/imagenet-meta``, else tensorflow-datasets' list);
    ``tiny_imagenet`` and ``imagenette``: what that source's ``class_ids_in_data`` reads,
    at ``config.path`` when ``config`` names the same source (else its default place,
    never downloading); ``explicit``: the spec's own subclass lists.

    Raises:
        DataError: The dataset's class list cannot be read (the message says where).
    """
    spec = load_spec(spec)
    if spec.classes == "explicit":
        return spec.explicit_class_ids()
    if spec.classes == "imagenet1k":
        return imagenet1k_classes(meta_dir)
    dataset = SPEC_CLASS_DATASETS[spec.classes]
    same = config is not None and config.dataset.split(":")[0] == dataset.split(":")[0]
    where = DataConfig(dataset=dataset, preset="", path=config.path if same else "",
                       download=False)
    class_ids = source_class(dataset).class_ids_in_data(where)
    if class_ids is None:  # a source that cannot tell cannot serve as a spec's class list
        raise DataError(f"{dataset} does not list its classes; spec {spec.name!r} cannot use "
                        f"classes: {spec.classes}")
    return class_ids


def build_spec(spec: str | os.PathLike | SuperclassingSpec,
               data_classes: Sequence[str] | None = None, *, config: DataConfig | None = None,
               wordnet_source: str = "auto",
               wordnet_path: str | os.PathLike | None = None) -> SpecBuild:
    """Builds a superclassing spec (a built-in preset's name, a spec file or a spec).

    With ``data_classes`` (the classes a dataset holds: ``class_ids_in_data``, or
    :func:`~supersub_tf.data.class_lists.read_class_ids` of a list), the hierarchy has
    those the spec takes, and the classes of the spec's own list that the data lacks are
    reported, not required (:func:`~supersub_tf.presets.build_over_data`). Without, it
    is built over the spec's own list (:func:`spec_class_ids`), every class required.

    Args:
        spec: The spec.
        data_classes: The dataset's class ids, or None.
        config: The data settings whose ``path`` holds the spec's own list when they
            name its dataset (see :func:`spec_class_ids`).
        wordnet_source: As :func:`~supersub_tf.presets.build_preset`.
        wordnet_path: As :func:`~supersub_tf.presets.build_preset`; an ImageNet
            metadata folder also gives ``imagenet1k``'s ``synset_words.txt``.

    Raises:
        DataError: ``data_classes`` is None and the spec's own list cannot be read.
        HierarchyError: The spec does not build.
    """
    spec = load_spec(spec)
    meta_dir = wordnet_path if wordnet_source != "wordnet3" else None
    wordnet = {"wordnet_source": wordnet_source, "wordnet_path": wordnet_path}
    if data_classes is None:
        try:
            class_ids = spec_class_ids(spec, config=config, meta_dir=meta_dir)
        except DataError as err:
            raise DataError(f"preset {spec.name!r}: cannot read its class list: {err}") from None
        return SpecBuild(build_preset(spec, class_ids=class_ids, **wordnet)[0])
    try:
        listed = spec_class_ids(spec, config=config, meta_dir=meta_dir)
    except DataError:  # the spec's own list is only needed for the report
        listed = []
    return build_over_data(spec, data_classes, spec_classes=listed, **wordnet)


def load_hierarchy(preset: str | os.PathLike, config: DataConfig | None = None) -> Hierarchy:
    """The hierarchy ``preset`` names: a built-in preset or hierarchy JSON as stored, a
    spec file built over the class list its ``classes:`` names (:func:`build_spec`)."""
    if is_spec_file(preset):
        return build_spec(preset, config=config).hierarchy
    return load_preset(preset)


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
