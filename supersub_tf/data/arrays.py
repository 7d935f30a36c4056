"""A split's images as numpy arrays: uint8 pixels at the configured size, fine labels.

For what works on arrays rather than a ``tf.data`` stream: the exports' calibration and
their comparison with the Keras pipeline. The pixels are resized exactly as the
training pipeline resizes them (:func:`~supersub_tf.data.pipeline.resize`), not
normalised and not augmented.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from supersub_tf.config import DataConfig
from supersub_tf.data.pipeline import resize
from supersub_tf.errors import ConfigError

if TYPE_CHECKING:
    from supersub_tf.data.source import ImageSource


def load_images(data_config: DataConfig, split: str, *, source: ImageSource | None = None,
                per_superclass: int | None = None, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """A split's images as uint8 pixels at the configured size, with their fine labels.

    Args:
        data_config: Data settings (image size; the source is created from them).
        split: ``train``, ``val`` or ``test``.
        source: Reuse an already created source.
        per_superclass: Take only this many images of every superclass, drawn at random
            (with ``seed``) before decoding, so only those are read; None: the whole
            split in the source's order.
        seed: Seed of that draw.

    Returns:
        ``uint8 [N, S, S, 3]`` images (resized as the training pipeline does, not
        normalised, not augmented) and ``int32 [N]`` fine labels.
    """
    import tensorflow as tf

    from supersub_tf.data import create_source

    src = source or create_source(data_config)
    src.check_split(split)
    hierarchy = src.hierarchy
    size = data_config.image_size
    if per_superclass is None:
        raws = [src.raw(split)]
    else:
        if per_superclass < 1:
            raise ConfigError(f"per_superclass must be >= 1, got {per_superclass}")
        raws = [src.raw(split, hierarchy.fine_labels_of(s), order_seed=seed + s)
                .take(per_superclass) for s in range(hierarchy.num_superclasses)]
    images, labels = [], []
    for raw in raws:
        ds = raw.map(lambda image, fine: (resize(image, size), tf.cast(fine, tf.int32)),
                     num_parallel_calls=tf.data.AUTOTUNE).batch(512)
        for batch_images, batch_fine in ds:
            images.append(batch_images.numpy())
            labels.append(batch_fine.numpy())
    if not images:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros(0, np.int32)
    return np.concatenate(images), np.concatenate(labels).astype(np.int32)


def calibration_images(data_config: DataConfig, *, source: ImageSource | None = None,
                       per_superclass: int = 256, seed: int = 0
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Representative images for the LiteRT export's calibration
    (:func:`~supersub_tf.export.tflite.export_tflite`): ``per_superclass`` random
    *training* images of every superclass, uint8, with their fine labels."""
    return load_images(data_config, "train", source=source, per_superclass=per_superclass,
                       seed=seed)


def evaluation_images(data_config: DataConfig, *, source: ImageSource | None = None,
                      count: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Validation images (uint8) and fine labels for comparing an export with Keras:
    the whole split, or a seeded random subset of ``count`` images in split order."""
    images, fine = load_images(data_config, "val", source=source)
    if count and count < len(images):
        keep = np.sort(np.random.default_rng(seed).choice(len(images), count, replace=False))
        images, fine = images[keep], fine[keep]
    return images, fine
