"""The ``folder`` source: a ``root/<superclass>/<subclass>/*.jpg`` tree, end to end.

Each test builds a small tree of solid-colour images (one colour per subclass) in a
temporary folder, so the labels the pipeline yields can be checked against the pixels.
(conftest.py gives every test its own SUPERSUB_CACHE_DIR, so cached decode checks never
leak between tests.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import supersub_tf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from supersub_tf.config import DataConfig
from supersub_tf.data import create_source, load_dataset
from supersub_tf.data.folder_tree import FolderTreeSource, scan_tree
from supersub_tf.errors import ConfigError, DataError, HierarchyError

PER_CLASS = 10
SIZE = 16
# subclass folder -> (superclass folder, colour, file extension)
CLASSES = {
    "cat": ("animals", (220, 40, 40), ".jpg"),
    "golden_retriever": ("animals", (40, 200, 40), ".PNG"),
    "bus": ("vehicles", (40, 40, 220), ".JPEG"),
    "car": ("vehicles", (230, 230, 30), ".png"),
    "truck": ("vehicles", (30, 220, 220), ".jpeg"),
}


def write_image(path: Path, colour=(128, 128, 128), size=(40, 30), mode: str = "RGB") -> Path:
    """Writes a solid-colour image (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    value = colour if mode == "RGB" else int(np.mean(colour))
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    Image.new(mode, size, value).save(path, format=fmt)
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    """A valid tree plus files and folders the source must ignore."""
    root = tmp_path / "pets"
    for sub, (sup, colour, ext) in CLASSES.items():
        for k in range(PER_CLASS):
            write_image(root / sup / sub / f"img{k}{ext}", colour, size=(40 + k, 30))
    (root / "README.txt").write_text("not an image")
    (root / "animals" / "cat" / "notes.txt").write_text("not an image")
    write_image(root / "animals" / "cat" / ".hidden.png")
    write_image(root / ".trash" / "old" / "1.png")
    write_image(root / "animals" / ".ipynb_checkpoints" / "1.png")
    write_image(root / "animals" / "cat" / "nested" / "deeper.png")
    return root


def config(root: Path | str, **overrides) -> DataConfig:
    settings = dict(dataset="folder", path=str(root), preset="", image_size=SIZE,
                    normalization="none", augment=False, val_fraction=0.2, test_fraction=0.2)
    settings.update(overrides)
    return DataConfig(**settings)


def split_names(source, split: str) -> set[str]:
    return set(source.examples(split).names.tolist())


# ------------------------------------------------------------------------------ layout
def test_hierarchy_comes_from_the_tree(tree):
    h = create_source(config(tree)).hierarchy
    assert h.name == "pets"
    assert h.metadata == {"source": "folder"}
    assert h.superclass_names == ["animals", "vehicles"]
    assert h.class_ids == ["cat", "golden_retriever", "bus", "car", "truck"]
    assert h.class_names == ["cat", "golden retriever", "bus", "car", "truck"]


def test_lists_images_of_any_extension_case_and_ignores_other_files(tree):
    source = FolderTreeSource(config(tree))
    everything = source.official_splits()["all"]
    assert len(everything) == PER_CLASS * len(CLASSES)
    assert everything.kind == "path"
    names = [Path(n) for n in everything.names]
    assert all(n.suffix.lower() in (".jpg", ".jpeg", ".png") for n in names)
    assert not any(part.startswith(".") for n in names for part in n.relative_to(tree).parts)
    assert not any("nested" in n.parts for n in names)
    assert np.bincount(everything.fine).tolist() == [PER_CLASS] * len(CLASSES)


def test_fingerprint_follows_the_files(tree):
    _, before = scan_tree(tree)
    assert scan_tree(tree)[1].fingerprint == before.fingerprint
    write_image(tree / "vehicles" / "car" / "extra.png")
    assert scan_tree(tree)[1].fingerprint != before.fingerprint


# ------------------------------------------------------------------------------ pipeline
def test_elements_have_the_documented_structure_and_labels(tree):
    data = load_dataset(config(tree), "train", batch_size=4)
    h = data.hierarchy
    colours = np.array([CLASSES[i][1] for i in h.class_ids], np.float32)
    seen = 0
    for images, labels in data.dataset.as_numpy_iterator():
        assert images.dtype == np.float32 and images.shape[1:] == (SIZE, SIZE, 3)
        assert 1 <= images.shape[0] <= 4
        assert set(labels) == {"superclass", "subclass", "fine"}
        for value in labels.values():
            assert value.dtype == np.int32 and value.shape == (images.shape[0],)
        fine = labels["fine"]
        np.testing.assert_array_equal(labels["superclass"], h.fine_to_superclass[fine])
        np.testing.assert_array_equal(labels["subclass"], h.fine_to_subclass[fine])
        # Each image shows its own class's colour (JPEG is lossy: a small tolerance).
        np.testing.assert_allclose(images.mean(axis=(1, 2)), colours[fine], atol=6)
        seen += images.shape[0]
    assert seen == data.num_examples == 6 * len(CLASSES)
    assert data.skipped == []


def test_splits_are_stratified_disjoint_complete_and_seeded(tree):
    source = create_source(config(tree))
    assert source.splits() == ("train", "val", "test")
    parts = {s: split_names(source, s) for s in source.splits()}
    for split, per_class in (("train", 6), ("val", 2), ("test", 2)):
        assert np.bincount(source.labels(split)).tolist() == [per_class] * len(CLASSES)
    assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"]
    assert not parts["val"] & parts["test"]
    everything = set(source.official_splits()["all"].names.tolist())
    assert parts["train"] | parts["val"] | parts["test"] == everything

    again = create_source(config(tree))
    assert all(split_names(again, s) == parts[s] for s in parts)
    other = create_source(config(tree, split_seed=1))
    assert split_names(other, "val") != parts["val"]


def test_without_test_fraction_there_is_no_test_split(tree):
    cfg = config(tree, test_fraction=0.0)
    assert load_dataset(cfg, "val").num_examples == 2 * len(CLASSES)
    with pytest.raises(DataError, match="no split 'test'"):
        load_dataset(cfg, "test")


@pytest.mark.parametrize("superclass", ["vehicles", 1])
def test_superclass_filter_keeps_only_its_images(tree, superclass):
    data = load_dataset(config(tree), "train", batch_size=8, superclass=superclass)
    assert data.num_examples == 6 * 3
    supers, fines = [], []
    for _, labels in data.dataset.as_numpy_iterator():
        supers.append(labels["superclass"])
        fines.append(labels["fine"])
    assert set(np.concatenate(supers).tolist()) == {1}
    assert set(np.concatenate(fines).tolist()) == {2, 3, 4}  # global labels kept


def test_greyscale_jpeg_becomes_three_channels(tmp_path):
    root = tmp_path / "grey"
    for sub in ("a", "b"):
        for k in range(5):
            write_image(root / "things" / sub / f"{k}.jpg", (90, 90, 90), mode="L")
    cfg = config(root, val_fraction=0.0, test_fraction=0.0)
    source = create_source(cfg)
    image, _ = next(iter(source.raw("train")))
    assert image.shape[-1] == 3 and image.dtype.name == "uint8"
    pixels = image.numpy().reshape(-1, 3).astype(int)
    assert np.all(pixels[:, 0] == pixels[:, 1]) and np.all(pixels[:, 1] == pixels[:, 2])
    images, _ = next(iter(load_dataset(cfg, "train", batch_size=10, source=source).dataset))
    assert images.shape == (10, SIZE, SIZE, 3)


# ------------------------------------------------------------------------------ bad input
def test_empty_path_is_a_config_error():
    with pytest.raises(ConfigError, match="data.path is required"):
        create_source(config(""))


def test_missing_root_names_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere"):
        load_dataset(config(missing), "train")


def test_root_that_is_a_file_is_rejected(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        create_source(config(path))


def test_root_without_superclass_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no superclass folders"):
        create_source(config(tmp_path / "empty"))


def test_empty_subclass_folder_is_named(tree):
    (tree / "vehicles" / "boat").mkdir()
    (tree / "vehicles" / "boat" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="vehicles/boat has no images"):
        create_source(config(tree))


def test_empty_superclass_folder_is_named(tree):
    (tree / "plants").mkdir()
    with pytest.raises(DataError, match="'plants' has no subclass folders"):
        create_source(config(tree))


def test_flat_layout_gets_a_hint(tmp_path):
    for k in range(3):
        write_image(tmp_path / "flat" / "cat" / f"{k}.jpg")
    with pytest.raises(DataError, match="3 image file.*subclass folders"):
        create_source(config(tmp_path / "flat"))


def test_subclass_under_two_superclasses_names_both(tree):
    write_image(tree / "animals" / "mixed" / "1.png")
    write_image(tree / "vehicles" / "mixed" / "1.png")
    with pytest.raises(HierarchyError, match="'mixed'.*'animals' and 'vehicles'"):
        create_source(config(tree))


def test_corrupt_image_is_named_or_skipped(tree):
    broken = tree / "animals" / "cat" / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    cfg = config(tree, val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(DataError, match="broken.jpg"):
        load_dataset(cfg, "train")

    data = load_dataset(config(tree, val_fraction=0.0, test_fraction=0.0, skip_bad_images=True),
                        "train", batch_size=64)
    assert data.skipped == [str(broken)]
    assert data.num_examples == PER_CLASS * len(CLASSES)
    assert sum(len(labels["fine"]) for _, labels in data.dataset) == data.num_examples

    # Repairing the file in place invalidates the cached decode check.
    write_image(broken, (220, 40, 40))
    data = load_dataset(cfg, "train")
    assert data.skipped == [] and data.num_examples == PER_CLASS * len(CLASSES) + 1


def test_exif_orientation_is_ignored_as_documented(tmp_path):
    """A photo whose EXIF says "rotate 90" is decoded as stored, the same way in every
    stage (they share decode_image)."""
    import io

    from supersub_tf.data.examples import decode_image

    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, :8] = 255  # left half white: a rotation would move it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", exif=exif)
    decoded = decode_image(buffer.getvalue()).numpy()
    assert decoded.shape == (8, 16, 3) and np.array_equal(decoded, pixels)


def test_the_run_names_the_tree_as_its_hierarchy(tree, tmp_path):
    """``data.preset`` keeps its default (tiny_imagenet_10) but a folder run ignores it:
    the run's first line names the tree's hierarchy, as the report does."""
    from supersub_tf.config import load_config
    from supersub_tf.run import run_pipeline

    config = load_config(None, ["data.dataset=folder", f"data.path={tree}", "networks=[]",
                                "data.image_size=16", f"output_dir={tmp_path / 'runs'}"])
    lines = []
    run_dir = run_pipeline(config, log=lines.append)
    assert lines[0] == f"[data] image folder {tree} with hierarchy pets (from the data)"
    assert "hierarchy `pets`" in (run_dir / "report.md").read_text()
