"""Tiny ImageNet: generated archives in the official layout, and the real shared subset."""

import numpy as np
import pytest
from conftest import TINY_CLASSES, write_tiny_imagenet

from supersub_tf.config import DataConfig
from supersub_tf.data import create_source, load_dataset
from supersub_tf.data.summary import split_counts
from supersub_tf.data.tiny_imagenet import find_archive, read_wnids
from supersub_tf.errors import DataError

IN_HIERARCHY = [w for w, sup in TINY_CLASSES.items() if sup]


def config(path, **kwargs) -> DataConfig:
    return DataConfig(dataset="tiny_imagenet", preset="tiny_imagenet_10", path=str(path),
                      image_size=kwargs.pop("image_size", 16), **kwargs)


def restricted_source(cfg):
    """The fixture only has a few of tiny_imagenet_10's classes: restrict the hierarchy."""
    from supersub_tf.data.tiny_imagenet import TinyImageNetSource
    from supersub_tf.hierarchy import Hierarchy, Superclass
    from supersub_tf.presets import load_preset

    full = load_preset("tiny_imagenet_10")
    supers = [Superclass(s.name, tuple(c for c in s.subclasses if c.id in IN_HIERARCHY))
              for s in full.superclasses]
    h = Hierarchy([s for s in supers if s.subclasses], name="tiny_fixture")
    return TinyImageNetSource(cfg, h)


@pytest.mark.parametrize("as_zip", [True, False])
def test_reads_official_layout(tmp_path, as_zip):
    path = write_tiny_imagenet(tmp_path / ("t.zip" if as_zip else "t"), as_zip=as_zip)
    cfg = config(path)
    source = restricted_source(cfg)
    assert read_wnids(path) == list(TINY_CLASSES)
    assert source.splits() == ("train", "val")
    assert len(source.labels("train")) == 6 * len(IN_HIERARCHY)   # others ignored
    assert len(source.labels("val")) == 2 * len(IN_HIERARCHY)
    data = load_dataset(cfg, "train", batch_size=5, source=source)
    images, labels = next(iter(data.dataset))
    assert images.shape == (5, 16, 16, 3) and images.dtype.name == "float32"
    h = data.hierarchy
    fine = labels["fine"].numpy()
    assert (labels["superclass"].numpy() == h.fine_to_superclass[fine]).all()
    assert (labels["subclass"].numpy() == h.fine_to_subclass[fine]).all()
    val = load_dataset(cfg, "val", batch_size=100, source=source)
    val_labels = np.concatenate([y["fine"].numpy() for _, y in val.dataset])
    assert sorted(val_labels) == sorted(source.labels("val"))


def test_greyscale_becomes_rgb(tmp_path):
    cfg = config(write_tiny_imagenet(tmp_path / "t.zip"), normalization="none")
    source = restricted_source(cfg)
    raw = next(iter(source.raw("train", np.array([0]))))  # first image is greyscale
    assert raw[0].shape[-1] == 3
    assert np.array_equal(raw[0][..., 0], raw[0][..., 2])


def test_corrupt_image_named_or_skipped(tmp_path):
    bad = "train/n02085620/images/n02085620_3.JPEG"
    path = write_tiny_imagenet(tmp_path / "t.zip", corrupt=bad)
    with pytest.raises(DataError, match="cannot decode image .*n02085620_3.JPEG"):
        load_dataset(config(path), "train", source=restricted_source(config(path)))
    cfg = config(path, skip_bad_images=True)
    data = load_dataset(cfg, "train", batch_size=64, source=restricted_source(cfg))
    assert len(data.skipped) == 1 and data.skipped[0].endswith(bad)
    assert data.num_examples == 6 * len(IN_HIERARCHY) - 1
    assert sum(x.shape[0] for x, _ in data.dataset) == data.num_examples


@pytest.mark.parametrize("as_zip", [True, False])
def test_val_annotation_naming_a_missing_file(tmp_path, as_zip):
    from supersub_tf.data.summary import format_gaps

    path = write_tiny_imagenet(tmp_path / ("t.zip" if as_zip else "t"), as_zip=as_zip,
                               drop="val/images/val_0.JPEG")
    with pytest.raises(DataError, match=r"1 file\(s\) listed in val/val_annotations.txt are "
                                        r"missing \(first: .*val_0.JPEG\); set data.partial_val"):
        restricted_source(config(path)).examples("val")
    cfg = config(path, partial_val=True)
    source = restricted_source(cfg)
    assert len(source.examples("val")) == 2 * len(IN_HIERARCHY) - 1
    summary = split_counts(source)
    assert summary["totals"]["val"] == 2 * len(IN_HIERARCHY) - 1
    assert "val_0.JPEG" in format_gaps(summary)


def test_summary_counts_the_images_used_and_names_the_skipped(tmp_path):
    from supersub_tf.data.summary import format_gaps

    bad = "train/n02085620/images/n02085620_3.JPEG"
    path = write_tiny_imagenet(tmp_path / "t.zip", corrupt=bad)
    summary = split_counts(restricted_source(config(path, skip_bad_images=True)))
    assert summary["totals"]["train"] == 6 * len(IN_HIERARCHY) - 1
    assert summary["skipped"]["train"][0].endswith(bad) and bad in format_gaps(summary)


def test_missing_archive_and_class(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="not found at .*nowhere.zip"):
        create_source(config(tmp_path / "nowhere.zip"))
    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="put tiny-imagenet-200.zip"):
        find_archive(None, download=False)
    # The full tiny_imagenet_10 hierarchy needs 67 classes; the fixture has 4 of them.
    path = write_tiny_imagenet(tmp_path / "t.zip")
    with pytest.raises(DataError, match="is not in the archive's wnids.txt"):
        create_source(config(path))


def test_empty_class_and_not_an_archive(tmp_path):
    folder = write_tiny_imagenet(tmp_path / "t", as_zip=False)
    for f in (folder / "tiny-imagenet-200/train/n02099601/images").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="class n02099601 .*has no training images"):
        restricted_source(config(folder)).labels("train")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable zip"):
        restricted_source(config(junk))


def test_held_out_test_split_is_deterministic(tmp_path):
    path = write_tiny_imagenet(tmp_path / "t.zip", per_class=10)
    first = restricted_source(config(path, test_fraction=0.2, split_seed=3))
    again = restricted_source(config(path, test_fraction=0.2, split_seed=3))
    other = restricted_source(config(path, test_fraction=0.2, split_seed=4))
    assert first.splits() == ("train", "val", "test")
    names = lambda s, split: set(s.examples(split).names)  # noqa: E731
    assert names(first, "test") == names(again, "test") != names(other, "test")
    assert not names(first, "test") & names(first, "train")
    assert len(first.labels("test")) == 2 * len(IN_HIERARCHY)


def test_real_subset_summary(shared_data):
    cfg = DataConfig(dataset="tiny_imagenet", preset="tiny_imagenet_10",
                     path=str(shared_data / "tiny-imagenet-67.zip"))
    summary = split_counts(create_source(cfg))
    assert len(summary["rows"]) == 10
    assert summary["totals"] == {"superclass": "total", "subclasses": 67,
                                 "train": 33_500, "val": 3_350}


def test_real_subset_specialist_batch(shared_data):
    cfg = DataConfig(dataset="tiny_imagenet", preset="tiny_imagenet_10", image_size=32,
                     path=str(shared_data / "tiny-imagenet-67.zip"), max_per_class=8)
    data = load_dataset(cfg, "train", batch_size=32, superclass="dog")
    assert data.num_examples == 6 * 8
    seen = set()
    for images, labels in data.dataset:
        assert images.shape[1:] == (32, 32, 3)
        assert set(labels["superclass"].numpy()) == {data.hierarchy.superclass_index("dog")}
        seen |= set(labels["subclass"].numpy())
    assert seen == set(range(6))


def test_training_stream_starts_mixed(tmp_path):
    """Listings are sorted by class; the training stream must not be (cache + buffer)."""
    path = write_tiny_imagenet(tmp_path / "t.zip", per_class=20)
    cfg = config(path, shuffle_buffer=4)
    source = restricted_source(cfg)
    first = next(iter(load_dataset(cfg, "train", batch_size=16, source=source).dataset))[1]
    assert len(set(first["fine"].numpy())) >= 3
    val = next(iter(load_dataset(cfg, "val", batch_size=16, source=source).dataset))[1]
    assert list(val["fine"].numpy()) == list(source.labels("val")[:16])  # evaluation keeps order


def test_spec_of_tiny_imagenet_classes_reads_the_archive_of_data_path(tmp_path, shared_data):
    """``classes: tiny_imagenet`` takes its class list from ``data.path``, not from the
    (67-class) archive under ``$SUPERSUB_DATA_DIR``."""
    archive = write_tiny_imagenet(tmp_path / "elsewhere.zip")
    spec = tmp_path / "dogs.yaml"
    spec.write_text("name: dogs\nclasses: tiny_imagenet\nsuperclasses:\n  dog: n02084071\n"
                    "  amphibian: n01627424\n")
    cfg = DataConfig(dataset="tiny_imagenet", preset=str(spec), path=str(archive), image_size=16)
    source = create_source(cfg)
    assert source.hierarchy.summary_rows() == [("dog", 2), ("amphibian", 2)]


def test_a_users_spec_reports_the_classes_it_leaves_out(tmp_path, shared_data, monkeypatch):
    """``--preset my.yaml`` over the archive's classes: the dog superclass takes the two
    dogs, the amphibian the two frogs, and the other two classes are named in the source's
    notes (data summary and the run's log print them), not dropped silently."""
    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(shared_data))  # ImageNet's WordNet metadata
    spec = tmp_path / "dogs.yaml"
    spec.write_text("name: dogs\nclasses: tiny_imagenet\nsuperclasses:\n  dog: n02084071\n"
                    "  amphibian: n01627424\n")
    archive = write_tiny_imagenet(tmp_path / "t.zip")
    source = create_source(DataConfig(dataset="tiny_imagenet", preset=str(spec),
                                      path=str(archive), image_size=16))
    assert source.hierarchy.class_ids == ["n02085620", "n02099601", "n01641577", "n01644900"]
    (note,) = [n for n in source.notes if "fall in no superclass" in n]
    assert note.startswith("2 class(es) of the dataset fall in no superclass of dogs")
    assert "n01443537 (goldfish" in note and "n04146614 (school bus" in note
    assert split_counts(source)["notes"] == source.notes


def test_lists_its_classes_for_a_spec(tmp_path):
    """The source says which classes it holds (wnids.txt, in its order); a spec of
    ``classes: tiny_imagenet`` is built over the archive of the run's data.path."""
    from supersub_tf.data import spec_class_ids
    from supersub_tf.data.tiny_imagenet import TinyImageNetSource

    archive = write_tiny_imagenet(tmp_path / "t.zip")
    assert TinyImageNetSource.class_ids_in_data(config(archive)) == list(TINY_CLASSES)
    spec = tmp_path / "dogs.yaml"
    spec.write_text("name: dogs\nclasses: tiny_imagenet\nsuperclasses:\n  dog: n02084071\n")
    assert spec_class_ids(spec, config=config(archive)) == list(TINY_CLASSES)
    with pytest.raises(DataError, match="Tiny ImageNet not found at"):
        TinyImageNetSource.class_ids_in_data(config(tmp_path / "absent.zip"))
