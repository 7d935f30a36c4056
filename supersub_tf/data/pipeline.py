"""From raw decoded images to the stream every model consumes.

:func:`prepare` takes a source's ``(uint8 image, fine label)`` pairs and yields
``(float32 image [S, S, 3], {"superclass", "subclass", "fine"})``: resized to the
configured size, cached, shuffled and augmented (random crop with padding, horizontal
flip) for training, normalised, batched and prefetched.
"""

from __future__ import annotations

import numpy as np

from supersub_tf.choices import NORMALIZATIONS
from supersub_tf.config import DataConfig
from supersub_tf.errors import ConfigError
from supersub_tf.hierarchy import Hierarchy

# ImageNet channel statistics on the [0, 1] scale.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ImageNet's mean pixel on the 0-255 scale, RGB: Keras' ``caffe`` preprocessing
# (``imagenet_utils.preprocess_input``) subtracts it in BGR order from BGR images.
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)


def resize(image, size: int):
    """Resizes a ``uint8 [H, W, 3]`` image to ``uint8 [size, size, 3]``.

    Downscaling uses an antialiased bilinear filter (no aliasing on 224 -> 32); the
    result is rounded back to uint8 so a cached split takes a quarter of float32's memory.
    """
    import tensorflow as tf

    resized = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def normalize(image, mode: str):
    """Maps uint8 pixels to float32 with ``(pixel / divisor - mean) / std`` of
    :func:`normalization_constants`: the one arithmetic of every normalisation mode, which
    the exports and the LiteRT runtime repeat with the same float32 constants."""
    import tensorflow as tf

    divisor, mean, std = normalization_constants(mode)
    image = tf.cast(image, tf.float32) / tf.constant(divisor, tf.float32)
    return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def normalization_constants(mode: str) -> tuple[float, tuple, tuple]:
    """``(pixel divisor, mean, std)`` with ``normalised = (pixel / divisor - mean) / std``.

    The one definition of each mode (:data:`~supersub_tf.choices.NORMALIZATIONS`):
    :func:`normalize`, :func:`normalize_images`, the SavedModel and the LiteRT runtime
    all compute with these, so their float32 values are identical. ``tf`` is Keras'
    ``x / 127.5 - 1`` and ``caffe`` its mean-pixel subtraction, in RGB order (dividing
    by 1 and subtracting 0 are exact in float32).
    """
    ones, zeros = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
    if mode == "imagenet":
        return 255.0, tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)
    if mode == "unit":
        return 255.0, zeros, ones
    if mode == "none":
        return 1.0, zeros, ones
    if mode == "tf":
        return 127.5, ones, ones
    if mode == "caffe":
        return 1.0, tuple(CAFFE_MEAN_RGB), ones
    raise ConfigError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {mode!r}")


def normalize_images(images: np.ndarray, mode: str) -> np.ndarray:
    """uint8 pixels ``[N, H, W, 3]`` -> float32 model input, in numpy (as the LiteRT
    runtime computes it: :func:`normalization_constants`)."""
    divisor, mean, std = normalization_constants(mode)
    x = np.asarray(images).astype(np.float32) / np.float32(divisor)
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def denormalize(images: np.ndarray, mode: str) -> np.ndarray:
    """Inverse of :func:`normalize`, to uint8, for showing images."""
    divisor, mean, std = normalization_constants(mode)
    x = (np.asarray(images, np.float32) * np.array(std) + np.array(mean)) * divisor
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def augment(image, size: int, padding: int, seed: int | None = None):
    """Random crop after zero-padding by ``padding`` pixels, then a random horizontal flip."""
    import tensorflow as tf

    if padding > 0:
        image = tf.image.resize_with_crop_or_pad(image, size + 2 * padding, size + 2 * padding)
        image = tf.image.random_crop(image, [size, size, 3], seed=seed)
    return tf.image.random_flip_left_right(image, seed=seed)


def label_tables(hierarchy: Hierarchy):
    """Constant tensors mapping a fine label to its superclass and local subclass."""
    import tensorflow as tf

    return (tf.constant(hierarchy.fine_to_superclass, tf.int32),
            tf.constant(hierarchy.fine_to_subclass, tf.int32))


def prepare(raw, hierarchy: Hierarchy, config: DataConfig, *, training: bool,
            batch_size: int | None = None, seed: int = 0):
    """Builds the model-ready dataset from a raw ``(uint8 image, fine)`` dataset.

    Args:
        raw: The source's dataset.
        hierarchy: Gives the superclass and local subclass of each fine label.
        config: Image size, normalisation, augmentation, cache and shuffle settings.
        training: Shuffle and (if ``config.augment``) augment.
        batch_size: Batch the stream (the last batch may be smaller); None: unbatched.
        seed: Shuffle/augmentation seed.

    Returns:
        ``tf.data.Dataset`` of ``(image, {"superclass", "subclass", "fine"})``.
    """
    import tensorflow as tf

    size = config.image_size
    to_super, to_sub = label_tables(hierarchy)
    ds = raw.map(lambda image, fine: (resize(image, size), tf.cast(fine, tf.int32)),
                 num_parallel_calls=tf.data.AUTOTUNE)
    if config.cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if config.augment:
            ds = ds.map(lambda image, fine: (augment(image, size, config.crop_padding, seed), fine),
                        num_parallel_calls=tf.data.AUTOTUNE)

    def finish(image, fine):
        labels = {"superclass": tf.gather(to_super, fine), "subclass": tf.gather(to_sub, fine),
                  "fine": fine}
        return normalize(image, config.normalization), labels

    if batch_size:
        ds = ds.batch(batch_size)
    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
