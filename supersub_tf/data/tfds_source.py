"""tensorflow-datasets builders as sources: ImageNet-1k and its kin, CIFAR-100.

``data.dataset: tfds:<builder>`` reads one of :data:`VAL_SPLITS`' builders from the
tfds data_dir (``data.path``, else ``$SUPERSUB_DATA_DIR/tensorflow_datasets``). Our
splits map onto the builder's:

* ``train``: tfds ``train`` (less the ``test`` block below);
* ``val``: tfds ``validation`` (ImageNet builders, Imagenette) or ``test`` (CIFAR-100,
  ImageNetV2);
* ``test``: only when ``data.test_fraction > 0``, one contiguous block of tfds
  ``train`` (tfds stores ``train`` in a shuffled order, so a block is a fair sample);
  ``data.split_seed`` picks the block, seed 0 being the last one.

``imagenette`` (any of its configs, e.g. ``tfds:imagenette/320px-v2``) is 10 ImageNet
classes at full resolution, a quick download (preset ``imagenette_3``). ``imagenet_v2``
(``tfds:imagenet_v2/matched-frequency`` and the other configs) is 10,000 new test images
of the 1,000 ILSVRC classes and has no training split: it serves as ``val`` only, for
evaluating a system trained on ImageNet (e.g. under ``superclassing_imagenet``).

tfds labels map to the hierarchy's fine labels by class *name* (a WordNet ID for the
ImageNet builders, whose label orders differ; a CIFAR-100 fine name), never by index;
images of classes outside the hierarchy are dropped. Images are decoded only after that
filter, so a hierarchy of a few ImageNet classes does not pay for decoding the rest.
The settings ``val_fraction``, ``verify_images`` and ``skip_bad_images`` do not apply:
tfds has its own validation split and checked every image when preparing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from supersub_tf.atomic import atomic_path
from supersub_tf.config import DataConfig
from supersub_tf.data.examples import decode_image, fingerprint_of
from supersub_tf.data.source import SPLITS, ImageSource
from supersub_tf.errors import ConfigError, DataError
from supersub_tf.hierarchy import Hierarchy
from supersub_tf.paths import cache_dir, data_dir

#: Supported builders -> the tfds split that serves as our ``val``.
VAL_SPLITS = {
    "imagenet2012": "validation",
    "imagenet_resized/32x32": "validation",
    "imagenet_resized/64x64": "validation",
    "cifar100": "test",
}
#: Builder families accepted with any of their configs -> the split serving as ``val``.
FAMILY_VAL_SPLITS = {"imagenette": "validation", "imagenet_v2": "test"}
#: Builders without a training split (their one split is for evaluation only).
EVALUATION_ONLY = ("imagenet_v2",)

#: The archives imagenet2012 is prepared from, in ``<data_dir>/downloads/manual``.
IMAGENET_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")

#: CIFAR-100's fine label names in label order (the official ``fine_label_names.txt``,
#: which is alphabetical). tfds names its classes only "0".."99" until it has prepared
#: the data (and under ``tfds.testing.mock_data``), so numeric names map through this.
CIFAR100_FINE_NAMES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


def parse_builder(dataset: str) -> str:
    """The tfds builder named by ``tfds:<builder>[:<version>]``; rejects unsupported ones.

    Raises:
        ConfigError: The builder is not one of :data:`VAL_SPLITS`.
    """
    builder = dataset.split(":", 1)[1] if ":" in dataset else ""
    if val_split_of(builder) is None:
        supported = [f"tfds:{b}" for b in VAL_SPLITS] + [f"tfds:{f}[/<config>]"
                                                          for f in FAMILY_VAL_SPLITS]
        raise ConfigError(f"unsupported tfds builder {builder!r} (data.dataset={dataset!r}); "
                          f"supported: {', '.join(supported)}")
    return builder


def val_split_of(builder: str) -> str | None:
    """The tfds split that serves as our ``val`` for a builder (None: unsupported)."""
    name = builder.split(":")[0]
    return VAL_SPLITS.get(name) or FAMILY_VAL_SPLITS.get(name.split("/")[0])


def tfds_data_dir(config: DataConfig) -> Path:
    """The tfds data_dir a config reads: ``data.path``, else
    ``$SUPERSUB_DATA_DIR/tensorflow_datasets``."""
    return Path(config.path).expanduser() if config.path else data_dir() / "tensorflow_datasets"


def names_of(builder, name: str) -> list[str]:
    """A tfds builder's class names in label order (``name`` is its builder name).

    CIFAR-100's numeric names (tfds has them until it has prepared the data) become the
    fine label names of :data:`CIFAR100_FINE_NAMES`.
    """
    names = list(builder.info.features["label"].names)
    if names == [str(i) for i in range(len(names))] and name.startswith("cifar100"):
        names = list(CIFAR100_FINE_NAMES)
    return names


def label_names(name: str, tfds_dir: str | os.PathLike | None = None) -> list[str]:
    """A tensorflow-datasets builder's class names in label order, from the builder's own
    metadata (no download): wnids for the ImageNet builders and ``imagenette``, fine
    class names for ``cifar100``. ``tfds_dir`` is the tfds data_dir (None: tfds' own
    default); a dataset prepared there is read with its recorded metadata.

    Raises:
        DataError: tfds cannot open the builder.
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, **({"data_dir": str(tfds_dir)} if tfds_dir else {}))
        return names_of(builder, name)
    except Exception as err:  # tfds raises several kinds for an unknown or broken builder
        raise DataError(f"tensorflow-datasets' {name} class list is not available "
                        f"({err})") from None


def carve_test(num_train: int, fraction: float, seed: int) -> tuple[str, str]:
    """tfds split specs ``(train, test)`` holding a block of ``fraction`` out of train.

    The block has ``round(fraction * num_train)`` examples (at least 1, and 1 fewer than
    all). Counting blocks of that size from the end of the split, ``seed`` picks block
    ``seed mod (number of whole blocks)``, so seed 0 takes the last examples. Absolute
    example counts make any fraction exact, not only whole percents.

    Raises:
        DataError: tfds train has fewer than two examples.
    """
    if num_train < 2:
        raise DataError(f"cannot hold a test split out of a tfds train split of {num_train} "
                        "example(s)")
    size = min(max(1, round(fraction * num_train)), num_train - 1)
    block = seed % (num_train // size)
    start, end = num_train - (block + 1) * size, num_train - block * size
    train = "+".join(f"train[{a}:{b}]" for a, b in ((0, start), (end, num_train)) if b > a)
    return train, f"train[{start}:{end}]"


def first_per_class(fine: np.ndarray, cap: int) -> np.ndarray:
    """Boolean mask of the first ``cap`` entries of each label (all when ``cap <= 0``)."""
    keep = np.ones(len(fine), bool)
    if cap > 0:
        for label in np.unique(fine):
            keep[np.flatnonzero(fine == label)[cap:]] = False
    return keep


def _cap_per_class(ds, num_classes: int, cap: int):
    """tf.data version of :func:`first_per_class` on ``(image, fine)`` elements.

    Stops reading once every class has ``cap`` images, so a capped quick run over
    ImageNet reads a fraction of the split.
    """
    import tensorflow as tf

    def step(counts, element):
        image, fine = element
        all_full = tf.reduce_all(counts >= cap)
        counts = tf.tensor_scatter_nd_add(counts, [[fine]], [1])
        return counts, (image, fine, counts[fine] <= cap, all_full)

    ds = ds.scan(tf.zeros([num_classes], tf.int32), step)
    ds = ds.take_while(lambda image, fine, keep, all_full: tf.logical_not(all_full))
    ds = ds.filter(lambda image, fine, keep, all_full: keep)
    return ds.map(lambda image, fine, keep, all_full: (image, fine))


class TfdsSource(ImageSource):
    """A tensorflow-datasets builder (see the module docstring) under a hierarchy.

    Args:
        config: Data settings; ``config.dataset`` is ``tfds:<builder>``.
        hierarchy: Its subclass ids must be label names of the builder (WordNet IDs for
            the ImageNet builders, fine class names for CIFAR-100).

    Raises:
        ConfigError: Unsupported builder.
        DataError: The dataset is not prepared and cannot be (the message says how to
            provide it), or a hierarchy class is not a class of the builder.
    """

    def __init__(self, config: DataConfig, hierarchy: Hierarchy) -> None:
        super().__init__(config)
        self.name = parse_builder(config.dataset)
        self.data_dir = tfds_data_dir(config)
        self._hierarchy = hierarchy
        self.builder = self._open_builder()
        self.label_table = self._label_table()
        self.split_specs = self._split_specs()
        self._labels: dict[str, np.ndarray] = {}

    @classmethod
    def class_ids_in_data(cls, config: DataConfig) -> list[str]:
        """The builder's class names (wnids, CIFAR-100 fine names), from its metadata."""
        return label_names(parse_builder(config.dataset), tfds_data_dir(config))

    @property
    def description(self) -> str:
        return f"tfds {self.name} in {self.data_dir}"

    def splits(self) -> tuple[str, ...]:
        return tuple(s for s in SPLITS if s in self.split_specs)

    # ------------------------------------------------------------------------ opening
    def _open_builder(self):
        """The tfds builder, prepared (downloaded or built from the manual archives)."""
        import tensorflow_datasets as tfds

        builder = tfds.builder(self.name, data_dir=str(self.data_dir))
        if builder.is_prepared() or _readable(builder):
            return builder
        base = self.name.split(":")[0]
        kwargs = {}
        if base == "imagenet2012":
            manual = self.data_dir / "downloads" / "manual"
            if not all((manual / tar).is_file() for tar in IMAGENET_TARS):
                raise DataError(f"tfds imagenet2012 is not prepared in {self.data_dir}; put "
                                f"{' and '.join(IMAGENET_TARS)} (from https://image-net.org/"
                                f"download-images) in {manual} and run again to prepare it "
                                "once (takes hours), or set data.path to a tfds data_dir "
                                "holding a prepared imagenet2012")
            kwargs["download_config"] = tfds.download.DownloadConfig(manual_dir=str(manual))
        elif not self.config.download:
            raise DataError(self._not_prepared_message("data.download is false"))
        try:
            builder.download_and_prepare(**kwargs)
        except Exception as err:  # tfds raises many kinds: network, disk, checksum errors
            raise DataError(self._not_prepared_message(f"preparing it failed: {err}")) from err
        return builder

    def _not_prepared_message(self, why: str) -> str:
        if self.name.startswith("imagenet2012"):
            return (f"tfds imagenet2012 could not be prepared in {self.data_dir} ({why}); check "
                    f"{' and '.join(IMAGENET_TARS)} in {self.data_dir / 'downloads' / 'manual'}")
        folder = self.name.split(":")[0].split("/")[0]
        return (f"tfds {self.name} is not prepared in {self.data_dir} ({why}); run once with "
                "data.download=true on a connected machine, then copy its "
                f"tensorflow_datasets/{folder}/ folder into {self.data_dir} (or set data.path "
                "to that tensorflow_datasets folder)")

    def _label_table(self) -> np.ndarray:
        """``int32 [tfds classes]``: tfds label -> our fine label, -1 outside the hierarchy."""
        names = names_of(self.builder, self.name)
        index = {name: i for i, name in enumerate(names)}
        missing = [c for c in self._hierarchy.class_ids if c not in index]
        if missing:
            raise DataError(f"class {missing[0]!r} of hierarchy {self._hierarchy.name!r} is not "
                            f"a label of tfds {self.name} ({len(missing)} missing; its labels "
                            f"are named like {names[:3]})")
        table = np.full(len(names), -1, np.int32)
        for class_id in self._hierarchy.class_ids:
            table[index[class_id]] = self._hierarchy.fine_label(class_id)
        return table

    def _split_specs(self) -> dict[str, str]:
        """Our split -> the tfds split spec (with absolute slices for held-out test)."""
        specs = {"train": "train", "val": val_split_of(self.name)}
        if self.name.split("/")[0].split(":")[0] in EVALUATION_ONLY:
            if self.config.test_fraction > 0:
                raise DataError(f"tfds {self.name} has no training split to hold a test split "
                                "out of; set data.test_fraction=0 (its images are the val split)")
            return {"val": specs["val"]}
        if self.config.test_fraction > 0:
            splits = self.builder.info.splits
            if "train" not in splits:
                raise DataError(f"tfds {self.name} in {self.data_dir} does not record the size "
                                "of its train split, so data.test_fraction cannot hold out a "
                                "test split")
            specs["train"], specs["test"] = carve_test(splits["train"].num_examples,
                                                       self.config.test_fraction,
                                                       self.config.split_seed)
        return specs

    # ------------------------------------------------------------------------ reading
    def labels(self, split: str) -> np.ndarray:
        """Fine labels of a split in reading order (hierarchy classes, after the cap)."""
        self.check_split(split)
        if split not in self._labels:
            fine = self.label_table[self._source_labels(self.split_specs[split])]
            fine = fine[fine >= 0]
            self._labels[split] = fine[first_per_class(fine, self.config.max_per_class)]
        return self._labels[split]

    def _source_labels(self, spec: str) -> np.ndarray:
        """The tfds labels of a split spec, read without decoding images.

        For prepared data they are cached under ``$SUPERSUB_CACHE_DIR/tfds_labels/``,
        keyed by the dataset's ``dataset_info.json``, since reading all of ImageNet's
        records takes minutes.
        """
        import tensorflow_datasets as tfds

        info_file = Path(str(self.builder.data_path)) / "dataset_info.json"
        cache_file = None
        if info_file.is_file():
            key = fingerprint_of(str(info_file.resolve()), str(info_file.stat().st_mtime_ns),
                                 spec)
            cache_file = cache_dir() / "tfds_labels" / f"{key}.npy"
            try:
                return np.load(cache_file)
            except (OSError, ValueError):
                pass
        ds = self.builder.as_dataset(split=spec, decoders={"image": tfds.decode.SkipDecoding()})
        batches = ds.map(lambda ex: ex["label"]).batch(16384).as_numpy_iterator()
        labels = np.concatenate([np.zeros(0, np.int64), *batches]).astype(np.int32)
        if cache_file is not None:
            try:
                with atomic_path(cache_file) as tmp:
                    np.save(tmp, labels)
            except OSError:
                pass  # a read-only cache only costs a re-read next time
        return labels

    def raw(self, split: str, fine_labels: np.ndarray | None = None,
            order_seed: int | None = None):
        """``(uint8 [H, W, 3], int32 fine)`` pairs of a split, in tfds reading order
        (tfds stores examples shuffled; ``order_seed`` also shuffles the file order).

        Raises:
            DataError: No image of the split has one of ``fine_labels``.
        """
        import tensorflow as tf
        import tensorflow_datasets as tfds

        self.check_split(split)
        if self.count(split, fine_labels) == 0:
            raise DataError(f"{self.description} ({split}): no images of the requested classes")
        table = tf.constant(self.label_table)
        ds = self.builder.as_dataset(split=self.split_specs[split],
                                     decoders={"image": tfds.decode.SkipDecoding()},
                                     shuffle_files=order_seed is not None,
                                     read_config=tfds.ReadConfig(shuffle_seed=order_seed))
        ds = ds.map(lambda ex: (ex["image"], tf.gather(table, ex["label"])))
        ds = ds.filter(lambda image, fine: fine >= 0)
        if self.config.max_per_class > 0:
            ds = _cap_per_class(ds, self._hierarchy.num_classes, self.config.max_per_class)
        if fine_labels is not None:
            wanted = tf.constant(np.isin(np.arange(self._hierarchy.num_classes), fine_labels))
            ds = ds.filter(lambda image, fine: tf.gather(wanted, fine))
        # decode_image always gives 3 channels: greyscale becomes RGB.
        return ds.map(lambda image, fine: (decode_image(image), fine),
                      num_parallel_calls=tf.data.AUTOTUNE)


def _readable(builder) -> bool:
    """Whether ``as_dataset`` works although ``is_prepared()`` said no.

    That is the case under ``tfds.testing.mock_data``; for a truly absent dataset tfds
    raises AssertionError at once, with no network access.
    """
    try:
        builder.as_dataset(split="train")
        return True
    except AssertionError:
        return False
