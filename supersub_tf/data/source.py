"""The source interface every dataset implements, and the shared list-based base.

A source knows its hierarchy and yields, per split, a *raw* ``tf.data.Dataset`` of
``(uint8 image [H, W, 3], fine label)`` pairs; :mod:`supersub_tf.data.pipeline` turns
that into the training/evaluation stream. Sources register by name in
:data:`supersub_tf.data.SOURCES`.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Sequence

import numpy as np

from supersub_tf.config import DataConfig
from supersub_tf.data.examples import (Examples, cap_per_class, decode_image, drop_undecodable,
                                       stratified_split)
from supersub_tf.errors import DataError
from supersub_tf.hierarchy import Hierarchy

SPLITS = ("train", "val", "test")


class ImageSource(abc.ABC):
    """A labelled image dataset under a two-level hierarchy.

    Args:
        config: The data settings (``config.dataset`` selected this source).
    """

    _hierarchy: Hierarchy  # set by each source's constructor

    def __init__(self, config: DataConfig) -> None:
        self.config = config
        self.skipped: dict[str, list[str]] = {}  # split -> files left out (undecodable)
        #: Gaps the source accepted under ``data.partial_val`` (absent files, classes
        #: without validation images), one line each, for summaries and reports.
        self.notes: list[str] = []
        #: Note -> every name it abbreviates ("a, b and 60 more"): ``data_gaps.txt`` and
        #: the data summary list them all (see :meth:`add_note`).
        self.note_names: dict[str, list[str]] = {}

    def add_note(self, note: str, names: Sequence[str] = ()) -> None:
        """Records a gap or a left-out part of the data: one short line (the console, the
        report) and, when the line names only some of them, every name (``data_gaps.txt``,
        ``data_summary.json``, ``data summary``)."""
        self.notes.append(note)
        if names:
            self.note_names[note] = list(names)

    @property
    def hierarchy(self) -> Hierarchy:
        """The hierarchy whose classes this source yields."""
        return self._hierarchy

    @classmethod
    def class_ids_in_data(cls, config: DataConfig) -> list[str] | None:
        """The class ids (wnids) the data at ``config.path`` holds, read without listing
        its images: a superclassing spec (``data.preset: my.yaml``) is built over them, so
        classes the data lacks are not required, and a spec's ``classes:`` that names
        this dataset reads its list here (:func:`supersub_tf.data.spec_class_ids`), so
        :mod:`supersub_tf.presets` reads no dataset itself. None (the default) when the
        source cannot tell: the spec's own class list is used."""
        return None

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """One line naming the data (path, builder) for summaries and errors."""

    @abc.abstractmethod
    def splits(self) -> tuple[str, ...]:
        """Split names available (a subset of ``train``, ``val``, ``test``)."""

    @abc.abstractmethod
    def labels(self, split: str) -> np.ndarray:
        """Fine labels of every image of a split (for counts; may read the whole split)."""

    @abc.abstractmethod
    def raw(self, split: str, fine_labels: np.ndarray | None = None,
            order_seed: int | None = None):
        """``tf.data.Dataset`` of ``(uint8 [H, W, 3], int32 fine)``.

        Args:
            split: The split.
            fine_labels: Only the images whose fine label is in it (None: all).
            order_seed: Shuffle the order of the images once, with this seed, before
                decoding (None keeps the source's order, as evaluation needs). Listings
                are sorted by class, and the pipeline caches decoded images in the order
                it first reads them, so a training stream must start mixed: a shuffle
                buffer alone cannot mix a class-sorted stream.
        """

    def count(self, split: str, fine_labels: np.ndarray | None = None) -> int:
        """Number of images of a split (of the given fine labels only, if set)."""
        labels = self.labels(split)
        return int(len(labels) if fine_labels is None else np.isin(labels, fine_labels).sum())

    def check_split(self, split: str) -> None:
        """Raises DataError for a split this source does not have."""
        if split not in self.splits():
            hint = (" (set data.test_fraction > 0 to hold out a test split)"
                    if split == "test" else "")
            raise DataError(f"{self.description} has no split {split!r}; available: "
                            f"{list(self.splits())}{hint}")


class ListSource(ImageSource):
    """Base of sources that can list their images: folders, archives, synthetic data.

    Subclasses implement :meth:`official_splits`; this class adds held-out splits,
    per-class caps, the decode check and the tf.data decoding.
    """

    @abc.abstractmethod
    def official_splits(self) -> dict[str, Examples]:
        """The source's own splits: ``{"train", "val"}``, or ``{"all"}`` if it has none."""

    @functools.cached_property
    def _split_examples(self) -> dict[str, Examples]:
        cfg = self.config
        official = self.official_splits()
        if "all" in official:
            everything = official["all"]
            val, test, train = stratified_split(everything.fine,
                                                [cfg.val_fraction, cfg.test_fraction],
                                                cfg.split_seed)
            splits = {"train": everything.take(train, f"train{cfg.split_seed}"),
                      "val": everything.take(val, f"val{cfg.split_seed}")}
            if len(test):
                splits["test"] = everything.take(test, f"test{cfg.split_seed}")
        else:
            splits = dict(official)
            if cfg.test_fraction > 0 and "test" not in splits:
                test, train = stratified_split(splits["train"].fine, [cfg.test_fraction],
                                               cfg.split_seed)
                splits["test"] = splits["train"].take(test, f"test{cfg.split_seed}")
                splits["train"] = splits["train"].take(train, f"train{cfg.split_seed}")
        return {name: cap_per_class(ex, cfg.max_per_class) for name, ex in splits.items()
                if len(ex)}

    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if s in self._split_examples)

    def examples(self, split: str) -> Examples:
        """The examples of a split, after the decode check when it is enabled."""
        self.check_split(split)
        return self._checked(split)

    @functools.lru_cache(maxsize=None)
    def _checked(self, split: str) -> Examples:
        examples = self._split_examples[split]
        if self.config.verify_images:
            examples, skipped = drop_undecodable(examples, self.config.skip_bad_images,
                                                 f"{self.description} ({split})")
            self.skipped[split] = skipped
        return examples

    def count(self, split: str, fine_labels: np.ndarray | None = None) -> int:
        examples = self.examples(split)
        return int(len(examples) if fine_labels is None
                   else np.isin(examples.fine, fine_labels).sum())

    def labels(self, split: str) -> np.ndarray:
        return self.examples(split).fine  # the images used: after the decode check

    def raw(self, split: str, fine_labels: np.ndarray | None = None,
            order_seed: int | None = None):
        import tensorflow as tf

        examples = self.examples(split)
        if fine_labels is not None:
            examples = examples.with_labels(fine_labels)
        if len(examples) == 0:
            raise DataError(f"{self.description} ({split}): no images of the requested classes")
        if order_seed is not None:
            order = np.random.default_rng(order_seed).permutation(len(examples))
            examples = examples.take(order, f"order{order_seed}")
        if examples.kind == "array":
            return tf.data.Dataset.from_tensor_slices((examples.images, examples.fine))
        images = examples.images.astype(str) if examples.kind == "path" else list(examples.images)
        ds = tf.data.Dataset.from_tensor_slices((images, examples.fine))
        read = tf.io.read_file if examples.kind == "path" else (lambda x: x)
        return ds.map(lambda ref, fine: (decode_image(read(ref)), fine),
                      num_parallel_calls=tf.data.AUTOTUNE)
