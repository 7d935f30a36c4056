"""The ``synthetic`` source: deterministic shapes-in-colours images a small CNN can learn.

(conftest.py gives every test its own SUPERSUB_CACHE_DIR.)
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from PIL import Image

import supersub_tf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from supersub_tf.config import DataConfig, SyntheticConfig
from supersub_tf.data import create_source, load_dataset
from supersub_tf.data.synthetic import (MAX_SUPERCLASSES, SHAPE_NAMES, generate_images, hue_names,
                                        render_class, synthetic_hierarchy, write_synthetic_tree)
from supersub_tf.errors import ConfigError


def config(**synthetic) -> DataConfig:
    settings = dict(images_per_class=20, image_size=32)
    settings.update(synthetic)
    return DataConfig(dataset="synthetic", preset="", image_size=32, augment=False,
                      val_fraction=0.2, test_fraction=0.1, synthetic=SyntheticConfig(**settings))


# ------------------------------------------------------------------------------ drawing
def test_hierarchy_names_shapes_and_hues():
    settings = SyntheticConfig(num_superclasses=4, subclasses_per_superclass=3)
    h = synthetic_hierarchy(settings)
    assert h.name == "synthetic_4x3"
    assert h.superclass_names == ["disc", "square", "triangle", "cross"]
    assert h.class_ids[:3] == ["disc/hue0", "disc/hue1", "disc/hue2"]
    assert h.class_names[:4] == ["disc, red", "disc, green", "disc, blue", "square, red"]
    assert h.metadata == {"source": "synthetic", **dataclasses.asdict(settings)}
    every_shape = synthetic_hierarchy(SyntheticConfig(num_superclasses=MAX_SUPERCLASSES))
    assert every_shape.superclass_names == list(SHAPE_NAMES)


def test_hue_names_are_distinct():
    for count in (1, 2, 5, 10, 12, 13, 40):
        assert len(set(hue_names(count))) == count
    assert hue_names(13)[1] == "hue 28"


def test_images_are_uint8_balanced_and_deterministic():
    settings = SyntheticConfig(num_superclasses=3, subclasses_per_superclass=2,
                               images_per_class=7, image_size=24, seed=5)
    images, fine = generate_images(settings)
    assert images.dtype == np.uint8 and images.shape == (42, 24, 24, 3)
    assert fine.dtype == np.int32 and np.bincount(fine).tolist() == [7] * 6
    again, _ = generate_images(settings)
    np.testing.assert_array_equal(images, again)
    other, _ = generate_images(dataclasses.replace(settings, seed=6))
    assert np.abs(images.astype(int) - other).mean() > 10
    # A class's images do not depend on how many superclasses are drawn.
    fewer, _ = generate_images(dataclasses.replace(settings, num_superclasses=1))
    np.testing.assert_array_equal(fewer, images[:14])


def test_classes_differ_in_foreground_hue():
    settings = SyntheticConfig(num_superclasses=1, subclasses_per_superclass=3,
                               images_per_class=30)
    for j, channel in enumerate((0, 1, 2)):  # hues 0, 120, 240 degrees: red, green, blue
        images = render_class(settings, 0, j).astype(np.float32)
        # The most saturated pixels belong to the shape; their dominant channel is the hue's.
        spread = images.max(-1) - images.min(-1)
        mask = spread > np.percentile(spread, 90, axis=(1, 2), keepdims=True)
        assert np.bincount(images[mask].argmax(-1), minlength=3).argmax() == channel


def test_generation_is_fast():
    start = time.perf_counter()
    images, _ = generate_images(SyntheticConfig(num_superclasses=4, subclasses_per_superclass=3,
                                                images_per_class=60, image_size=32))
    assert len(images) == 720
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("field, value, message", [
    ("num_superclasses", MAX_SUPERCLASSES + 1, "num_superclasses must be in 1.."),
    ("num_superclasses", 0, "num_superclasses"),
    ("subclasses_per_superclass", 0, "subclasses_per_superclass must be >= 1"),
    ("images_per_class", 0, "images_per_class must be >= 1"),
    ("image_size", 4, "image_size must be >= 8"),
    ("seed", -1, "seed must be >= 0"),
])
def test_bad_settings_are_config_errors(field, value, message):
    with pytest.raises(ConfigError, match=message):
        create_source(config(**{field: value}))


# ------------------------------------------------------------------------------ pipeline
def test_load_dataset_structure_and_labels():
    data = load_dataset(config(), "train", batch_size=16)
    h = data.hierarchy
    assert h.num_classes == 12
    seen = 0
    for images, labels in data.dataset.as_numpy_iterator():
        assert images.dtype == np.float32 and images.shape[1:] == (32, 32, 3)
        assert all(v.dtype == np.int32 for v in labels.values())
        np.testing.assert_array_equal(labels["superclass"], h.fine_to_superclass[labels["fine"]])
        np.testing.assert_array_equal(labels["subclass"], h.fine_to_subclass[labels["fine"]])
        seen += len(images)
    assert seen == data.num_examples == 12 * 14  # 20 per class: 4 val, 2 test, 14 train


def test_splits_are_disjoint_complete_and_seeded():
    source = create_source(config())
    names = {s: set(source.examples(s).names.tolist()) for s in ("train", "val", "test")}
    assert [len(names[s]) for s in ("train", "val", "test")] == [12 * 14, 12 * 4, 12 * 2]
    assert not (names["train"] & names["val"] or names["train"] & names["test"]
                or names["val"] & names["test"])
    h = source.hierarchy
    assert names["train"] | names["val"] | names["test"] == {
        f"synthetic/{cid}/{k}" for cid in h.class_ids for k in range(20)}
    again = create_source(config())
    assert set(again.examples("val").names.tolist()) == names["val"]
    np.testing.assert_array_equal(again.examples("val").images, source.examples("val").images)
    reseeded = create_source(dataclasses.replace(config(), split_seed=3))
    assert set(reseeded.examples("val").names.tolist()) != names["val"]


def test_superclass_filter():
    data = load_dataset(config(), "val", batch_size=100, superclass="triangle")
    _, labels = next(iter(data.dataset.as_numpy_iterator()))
    assert data.num_examples == 3 * 4
    assert set(labels["superclass"].tolist()) == {2}
    assert set(labels["fine"].tolist()) == {6, 7, 8}


# ------------------------------------------------------------------------------ folder tree
def test_tree_holds_the_same_images_and_loads_as_a_folder(tmp_path):
    settings = SyntheticConfig(num_superclasses=2, subclasses_per_superclass=3,
                               images_per_class=5, image_size=16)
    root = write_synthetic_tree(tmp_path / "tree", settings)
    assert root == tmp_path / "tree"
    saved = np.asarray(Image.open(root / "square" / "green_square" / "3.png"))
    np.testing.assert_array_equal(saved, render_class(settings, 1, 1)[3])

    folder = create_source(DataConfig(dataset="folder", path=str(root), preset="",
                                      val_fraction=0.2))
    h = folder.hierarchy
    assert h.superclass_names == ["disc", "square"]
    assert sorted(h.class_names[:3]) == ["blue disc", "green disc", "red disc"]
    assert len(folder.official_splits()["all"]) == 2 * 3 * 5
    assert folder.count("train") + folder.count("val") == 30


def test_tree_as_jpeg_and_bad_format(tmp_path):
    settings = SyntheticConfig(num_superclasses=1, subclasses_per_superclass=2,
                               images_per_class=2, image_size=16)
    root = write_synthetic_tree(tmp_path / "jpg", settings, fmt="jpg")
    assert sorted(p.name for p in (root / "disc" / "red_disc").iterdir()) == ["0.jpg", "1.jpg"]
    with pytest.raises(ConfigError, match="fmt"):
        write_synthetic_tree(tmp_path / "gif", settings, fmt="gif")


# ------------------------------------------------------------------------------ learnable
def test_a_tiny_cnn_learns_shapes_and_hues():
    """Shapes and hues are both learnable: colour alone would give only 1/4 (3x chance)."""
    import tf_keras as keras

    cfg = dataclasses.replace(config(images_per_class=80), normalization="unit")
    source = create_source(cfg)
    train = load_dataset(cfg, "train", batch_size=32, source=source, seed=0)
    val = load_dataset(cfg, "val", batch_size=256, source=source)
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([
        layers.Input((32, 32, 3)),
        layers.Conv2D(32, 5, strides=2, padding="same", activation="relu"),
        layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.GlobalMaxPooling2D(),
        layers.Dense(12),
    ])
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train.dataset.map(lambda x, y: (x, y["fine"])), epochs=8, verbose=0)

    images, labels = next(iter(val.dataset.as_numpy_iterator()))
    predicted = model.predict(images, verbose=0).argmax(-1)
    h, fine = val.hierarchy, labels["fine"]
    chance = 1 / h.num_classes
    fine_accuracy = (predicted == fine).mean()
    shape_accuracy = (h.fine_to_superclass[predicted] == labels["superclass"]).mean()
    hue_accuracy = (h.fine_to_subclass[predicted] == labels["subclass"]).mean()
    assert fine_accuracy > 6 * chance, (fine_accuracy, shape_accuracy, hue_accuracy)
    assert shape_accuracy > 0.6 and hue_accuracy > 0.8, (shape_accuracy, hue_accuracy)
