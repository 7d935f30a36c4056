"""The shared tf.data pipeline: resize, normalise, augment, labels, determinism."""

import numpy as np
import pytest

from supersub_tf.config import DataConfig
from supersub_tf.data.pipeline import augment, denormalize, normalize, prepare, resize
from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass


@pytest.fixture(scope="module")
def hierarchy():
    return Hierarchy([Superclass("a", (Subclass("a0", "a0"), Subclass("a1", "a1"))),
                      Superclass("b", (Subclass("b0", "b0"),))], name="toy")


def raw_dataset(n=12, size=20):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return tf.data.Dataset.from_tensor_slices((images, np.arange(n) % 3)), images


def test_resize_and_normalize_ranges():
    import tensorflow as tf

    image = tf.constant(np.full((40, 30, 3), 200, np.uint8))
    small = resize(image, 8)
    assert small.shape == (8, 8, 3) and small.dtype == tf.uint8
    assert int(tf.reduce_min(small)) == int(tf.reduce_max(small)) == 200
    x = np.array([[[0, 128, 255]]], np.uint8)
    assert np.allclose(normalize(x, "unit").numpy(), x / 255.0)
    assert np.allclose(normalize(x, "none").numpy(), x)
    for mode in ("imagenet", "unit", "none"):
        assert np.array_equal(denormalize(normalize(x, mode).numpy(), mode), x)


def test_augment_keeps_shape_and_content():
    import tensorflow as tf

    image = tf.constant(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3))
    out = augment(image, 8, padding=2, seed=1)
    assert out.shape == (8, 8, 3)
    assert augment(image, 8, padding=0).numpy().tolist() in (
        image.numpy().tolist(), image.numpy()[:, ::-1].tolist())


def test_eval_stream_is_ordered_and_labelled(hierarchy):
    raw, images = raw_dataset()
    cfg = DataConfig(image_size=20, normalization="none", cache=False)
    ds = prepare(raw, hierarchy, cfg, training=False, batch_size=5)
    batches = list(ds.as_numpy_iterator())
    assert [b[0].shape[0] for b in batches] == [5, 5, 2]
    got = np.concatenate([b[0] for b in batches])
    assert np.array_equal(got, images.astype(np.float32))      # same size: no resampling
    fine = np.concatenate([b[1]["fine"] for b in batches])
    assert fine.tolist() == (np.arange(12) % 3).tolist()
    sup = np.concatenate([b[1]["superclass"] for b in batches])
    sub = np.concatenate([b[1]["subclass"] for b in batches])
    assert sup.tolist() == hierarchy.fine_to_superclass[fine].tolist()
    assert sub.tolist() == hierarchy.fine_to_subclass[fine].tolist()


def test_training_stream_shuffles_and_augments(hierarchy):
    raw, _ = raw_dataset()
    cfg = DataConfig(image_size=16, normalization="imagenet", crop_padding=2)
    ds = prepare(raw, hierarchy, cfg, training=True, batch_size=12, seed=7)
    epochs = [[(x, y["fine"].tolist()) for x, y in ds.as_numpy_iterator()][0] for _ in range(2)]
    (images, first), (_, second) = epochs
    assert images.shape == (12, 16, 16, 3)
    assert sorted(first) == sorted((np.arange(12) % 3).tolist())
    assert first != (np.arange(12) % 3).tolist() or second != first   # shuffled, reshuffled
    assert abs(float(np.mean(images))) < 1.5      # normalised around 0
