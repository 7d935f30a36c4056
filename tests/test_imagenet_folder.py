"""Tests of the ILSVRC-2012 folder source on tiny fixture trees built with Pillow.

Every image of class ``fine`` is a flat grey of level :func:`grey_of` (``OUTSIDE`` for
the class that is not in the hierarchy), so a yielded image's mean tells which class's
file it came from and a label mix-up in any val layout shows up as a wrong mean.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from supersub_tf.config import DataConfig
from supersub_tf.data import load_dataset
from supersub_tf.data.imagenet_folder import (DEVKIT_GROUND_TRUTH, DEVKIT_META,
                                              KAGGLE_SOLUTION, ImageNetFolderSource)
from supersub_tf.errors import DataError
from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass

BIRDS = (("n01530575", "brambling"), ("n01531178", "goldfinch"))
DOGS = (("n02085620", "Chihuahua"), ("n02085782", "Japanese spaniel"))
WNIDS = [w for w, _ in BIRDS + DOGS]
OUTSIDE_WNID = "n01440764"  # tench: on disk, not in the hierarchy
OUTSIDE = 250
#: Devkit IDs, deliberately not in sorted-wnid order.
DEVKIT_IDS = {"n02085782": 1, OUTSIDE_WNID: 2, "n01531178": 3, "n02085620": 4, "n01530575": 5}
TRAIN_PER_CLASS = 4
VAL_PER_CLASS = 2


def grey_of(fine: int) -> int:
    """The grey level of class ``fine``'s images."""
    return 30 + 50 * fine


def hierarchy() -> Hierarchy:
    """2 superclasses x 2 real ImageNet wnids."""
    return Hierarchy([Superclass("bird", tuple(Subclass(*s) for s in BIRDS)),
                      Superclass("dog", tuple(Subclass(*s) for s in DOGS))], name="tiny_test")


def level_of(wnid: str) -> int:
    return grey_of(WNIDS.index(wnid)) if wnid in WNIDS else OUTSIDE


def write_image(path: Path, level: int, fmt: str = "JPEG", mode: str = "RGB") -> None:
    """A 20x20 flat image of grey ``level``, in format ``fmt`` whatever the file's name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = level if mode == "L" else (level, level, level)
    buffer = io.BytesIO()
    Image.new(mode, (20, 20), colour).save(buffer, format=fmt)
    path.write_bytes(buffer.getvalue())


def write_train(root: Path) -> None:
    """train/<wnid>/: an RGB JPEG, a greyscale JPEG, a PNG named .JPEG, a lower-case .jpg."""
    for wnid in WNIDS + [OUTSIDE_WNID]:
        folder = root / "train" / wnid
        level = level_of(wnid)
        write_image(folder / f"{wnid}_1.JPEG", level)
        write_image(folder / f"{wnid}_2.JPEG", level, mode="L")
        write_image(folder / f"{wnid}_3.JPEG", level, fmt="PNG")
        write_image(folder / f"{wnid}_4.jpg", level)
        (folder / "notes.txt").write_text("not an image")


def val_labels() -> list[tuple[str, str]]:
    """``(ImageId, wnid)`` of the flat val images, classes interleaved as in ILSVRC."""
    wnids = (WNIDS + [OUTSIDE_WNID]) * VAL_PER_CLASS
    return [(f"ILSVRC2012_val_{k:08d}", wnid) for k, wnid in enumerate(wnids, 1)]


def write_flat_val(root: Path) -> None:
    for image_id, wnid in val_labels():
        write_image(root / "val" / f"{image_id}.JPEG", level_of(wnid))


def write_sorted_val(root: Path) -> None:
    for image_id, wnid in val_labels():
        write_image(root / "val" / wnid / f"{image_id}.JPEG", level_of(wnid))


def write_kaggle_csv(folder: Path, encoding: str = "utf-8") -> None:
    lines = ["ImageId,PredictionString"]
    lines += [f"{i},{w} 1 2 18 19 {w} 3 3 10 10 " for i, w in val_labels()]
    (folder / KAGGLE_SOLUTION).write_text("\n".join(lines) + "\n", encoding=encoding)


def write_devkit(folder: Path) -> None:
    """The ground truth plus a meta.mat struct array with non-leaf synsets after the leaves."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DEVKIT_GROUND_TRUTH).write_text(
        "".join(f"{DEVKIT_IDS[w]}\n" for _, w in val_labels()))
    entries = sorted(DEVKIT_IDS.items(), key=lambda kv: kv[1]) + [("n00001740", 6)]
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    synsets = np.zeros((len(entries), 1), dtype=dtype)
    for i, (wnid, class_id) in enumerate(entries):
        synsets[i, 0] = (np.array([[class_id]], np.uint16), np.array([wnid]),
                         np.array(["words"]), np.array([[0]], np.uint8))
    scipy.io.savemat(str(folder / DEVKIT_META), {"synsets": synsets})


def config_for(root: Path | str, **kwargs) -> DataConfig:
    settings = dict(dataset="imagenet", preset="", path=str(root), image_size=16,
                    normalization="unit", augment=False, cache=False)
    settings.update(kwargs)
    return DataConfig(**settings)


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERSUB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SUPERSUB_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def root(tmp_path) -> Path:
    """A tree with train/ and a val/ sorted into class folders."""
    root = tmp_path / "imagenet"
    write_train(root)
    write_sorted_val(root)
    return root


def check_split(config: DataConfig, split: str, expected_count: int, **kwargs) -> np.ndarray:
    """Loads a split, checks the element structure and each image's class; returns fines."""
    h = hierarchy()
    data = load_dataset(config, split, batch_size=4,
                        source=ImageNetFolderSource(config, h), **kwargs)
    assert data.num_examples == expected_count
    fines = []
    for images, labels in data.dataset.as_numpy_iterator():
        assert images.dtype == np.float32
        assert images.shape[1:] == (16, 16, 3) and 1 <= images.shape[0] <= 4
        assert set(labels) == {"superclass", "subclass", "fine"}
        for key in labels:
            assert labels[key].dtype == np.int32
        fine = labels["fine"]
        np.testing.assert_array_equal(labels["superclass"], h.fine_to_superclass[fine])
        np.testing.assert_array_equal(labels["subclass"], h.fine_to_subclass[fine])
        expected_level = np.array([grey_of(f) for f in fine]) / 255.0
        np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), expected_level, atol=0.02)
        fines.extend(fine.tolist())
    assert len(fines) == expected_count
    return np.array(fines)


# ----------------------------------------------------------------------------- layouts
def test_train_and_sorted_val(root):
    config = config_for(root)
    fines = check_split(config, "train", 4 * TRAIN_PER_CLASS)
    assert np.bincount(fines).tolist() == [TRAIN_PER_CLASS] * 4
    fines = check_split(config, "val", 4 * VAL_PER_CLASS)
    assert np.bincount(fines).tolist() == [VAL_PER_CLASS] * 4


def test_official_splits_are_sorted_paths(root):
    source = ImageNetFolderSource(config_for(root), hierarchy())
    splits = source.official_splits()
    assert set(splits) == {"train", "val"} and source.val_layout == "folders"
    train = splits["train"]
    assert train.kind == "path" and len(train) == 4 * TRAIN_PER_CLASS
    assert list(train.images[:TRAIN_PER_CLASS]) == [
        str(root / "train" / WNIDS[0] / n) for n in
        (f"{WNIDS[0]}_1.JPEG", f"{WNIDS[0]}_2.JPEG", f"{WNIDS[0]}_3.JPEG", f"{WNIDS[0]}_4.jpg")]
    assert train.fine.tolist() == np.repeat(np.arange(4), TRAIN_PER_CLASS).tolist()
    assert not any(OUTSIDE_WNID in p for s in splits.values() for p in s.images)
    assert source.splits() == ("train", "val")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig"])  # as spreadsheets save it
def test_flat_val_with_kaggle_csv(root, tmp_path, encoding):
    (root / "val").rename(tmp_path / "sorted_val")
    write_flat_val(root)
    write_kaggle_csv(root.parent, encoding)  # Kaggle's CSV sits above the CLS-LOC root
    source = ImageNetFolderSource(config_for(root), hierarchy())
    val = source.official_splits()["val"]
    assert source.val_layout == "kaggle"
    assert list(val.images) == sorted(val.images)
    fines = check_split(config_for(root), "val", 4 * VAL_PER_CLASS)
    assert np.bincount(fines).tolist() == [VAL_PER_CLASS] * 4


@pytest.mark.parametrize("devkit_dir", ["", "ILSVRC2012_devkit_t12/data", "devkit/data"])
def test_flat_val_with_devkit(root, tmp_path, devkit_dir):
    (root / "val").rename(tmp_path / "sorted_val")
    write_flat_val(root)
    write_devkit(root / devkit_dir)
    source = ImageNetFolderSource(config_for(root), hierarchy())
    val = source.official_splits()["val"]
    assert source.val_layout == "devkit"
    expected = sorted((f"ILSVRC2012_val_{k:08d}.JPEG", WNIDS.index(w))
                      for k, (_, w) in enumerate(val_labels(), 1) if w in WNIDS)
    assert [Path(p).name for p in val.images] == [n for n, _ in expected]
    assert val.fine.tolist() == [f for _, f in expected]


def test_devkit_labels_decode_through_meta(root, tmp_path):
    """The pixels prove each val image got its own class, not a sorted-wnid guess."""
    (root / "val").rename(tmp_path / "sorted_val")
    write_flat_val(root)
    write_devkit(root / "ILSVRC2012_devkit_t12" / "data")
    fines = check_split(config_for(root), "val", 4 * VAL_PER_CLASS)
    assert np.bincount(fines).tolist() == [VAL_PER_CLASS] * 4


def test_superclass_filter(root):
    fines = check_split(config_for(root), "train", 2 * TRAIN_PER_CLASS, superclass="dog")
    assert sorted(set(fines.tolist())) == [2, 3]
    fines = check_split(config_for(root), "val", 2 * VAL_PER_CLASS, superclass=0)
    assert sorted(set(fines.tolist())) == [0, 1]


def test_default_root_and_held_out_test(tmp_path):
    write_train(tmp_path / "data" / "imagenet")
    write_sorted_val(tmp_path / "data" / "imagenet")
    config = config_for("", test_fraction=0.25, verify_images=False)
    source = ImageNetFolderSource(config, hierarchy())
    assert source.root == tmp_path / "data" / "imagenet"
    assert source.splits() == ("train", "val", "test")
    assert source.count("test") == 4 and source.count("train") == 12


# ----------------------------------------------------------------------------- fingerprint
def test_fingerprint_tracks_class_folders(root):
    def fingerprints(h: Hierarchy) -> dict[str, str]:
        splits = ImageNetFolderSource(config_for(root), h).official_splits()
        return {k: v.fingerprint for k, v in splits.items()}

    first = fingerprints(hierarchy())
    assert first == fingerprints(hierarchy()) and first["train"] != first["val"]
    birds = Hierarchy([hierarchy().superclasses[0]], name="birds")
    assert fingerprints(birds)["train"] != first["train"]
    write_image(root / "train" / WNIDS[3] / "extra.JPEG", grey_of(3))
    changed = fingerprints(hierarchy())
    assert changed["train"] != first["train"] and changed["val"] == first["val"]


# ----------------------------------------------------------------------------- corrupt files
@pytest.fixture
def corrupt_root(root) -> tuple[Path, Path]:
    bad = root / "train" / WNIDS[1] / f"{WNIDS[1]}_0.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated, not a JPEG")
    # A corrupt file of a class outside the hierarchy is never listed, so never checked.
    (root / "train" / OUTSIDE_WNID / "broken.JPEG").write_bytes(b"garbage")
    return root, bad


def test_corrupt_image_raises_naming_it(corrupt_root):
    root, bad = corrupt_root
    with pytest.raises(DataError, match=bad.name) as err:
        load_dataset(config_for(root), "train", batch_size=4,
                     source=ImageNetFolderSource(config_for(root), hierarchy()))
    assert "skip_bad_images" in str(err.value)


def test_corrupt_image_skipped(corrupt_root, tmp_path):
    root, bad = corrupt_root
    config = config_for(root, skip_bad_images=True)
    data = load_dataset(config, "train", batch_size=4,
                        source=ImageNetFolderSource(config, hierarchy()))
    assert data.skipped == [str(bad)]
    assert data.num_examples == 4 * TRAIN_PER_CLASS
    assert sum(len(images) for images, _ in data.dataset.as_numpy_iterator()) == 16
    assert list((tmp_path / "cache" / "verified").glob("*.json"))  # decode check cached


def test_decode_check_is_cached_per_file(corrupt_root, monkeypatch):
    """A file repaired or corrupted in place is checked again, the others are not."""
    import os

    from supersub_tf.data import examples as examples_module
    from supersub_tf.data.examples import drop_undecodable

    root, bad = corrupt_root
    listed = ImageNetFolderSource(config_for(root), hierarchy()).official_splits()["train"]
    with pytest.raises(DataError, match=rf"{bad.name}.*delete that folder"):
        drop_undecodable(listed, False, "train")
    good = root / "train" / WNIDS[0] / f"{WNIDS[0]}_1.JPEG"
    bad.write_bytes(good.read_bytes())  # repaired in place
    os.utime(bad, ns=(1, 1))  # a different mtime even on a coarse clock
    checked = []
    real = examples_module._decodes
    monkeypatch.setattr(examples_module, "_decodes",
                        lambda ex, index: checked.append(len(index)) or real(ex, index))
    kept, skipped = drop_undecodable(listed, False, "train")
    assert skipped == [] and len(kept) == len(listed) and checked == [1]
    good.write_bytes(b"\xff\xd8 corrupted after the check")  # corrupted in place
    with pytest.raises(DataError, match=good.name):
        drop_undecodable(listed, False, "train")
    assert checked == [1, 1]
    good.unlink()
    with pytest.raises(DataError, match=rf"{good.name} does not exist"):
        drop_undecodable(listed, False, "train")


# ----------------------------------------------------------------------------- bad input
def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="nowhere.*data.path"):
        ImageNetFolderSource(config_for(tmp_path / "nowhere"), hierarchy())
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "data" / "imagenet"))):
        ImageNetFolderSource(config_for(""), hierarchy())


def test_missing_train(tmp_path):
    (tmp_path / "imagenet" / "val").mkdir(parents=True)
    with pytest.raises(DataError, match="no train/ folder"):
        ImageNetFolderSource(config_for(tmp_path / "imagenet"), hierarchy())


def test_missing_class_folder(root):
    (root / "train" / WNIDS[2]).rename(root / "train" / "moved")
    with pytest.raises(DataError, match=f"{WNIDS[2]} \\(Chihuahua\\).*train/{WNIDS[2]}/"):
        ImageNetFolderSource(config_for(root), hierarchy())


def test_empty_class_folder(root):
    for path in (root / "train" / WNIDS[1]).glob("*.*[Gg]"):
        path.unlink()
    source = ImageNetFolderSource(config_for(root), hierarchy())
    with pytest.raises(DataError, match=f"{WNIDS[1]} \\(goldfinch\\) has no images"):
        source.official_splits()


def test_sorted_val_missing_class(root):
    for path in (root / "val" / WNIDS[0]).iterdir():
        path.unlink()
    (root / "val" / WNIDS[0]).rmdir()
    with pytest.raises(DataError, match=f"no val/{WNIDS[0]}/ for class {WNIDS[0]} \\(brambling"):
        ImageNetFolderSource(config_for(root), hierarchy()).official_splits()


def test_flat_val_without_labels(root, tmp_path):
    (root / "val").rename(tmp_path / "sorted_val")
    write_flat_val(root)
    with pytest.raises(DataError) as err:
        ImageNetFolderSource(config_for(root), hierarchy()).official_splits()
    message = str(err.value)
    for needed in (KAGGLE_SOLUTION, DEVKIT_GROUND_TRUTH, DEVKIT_META, "ILSVRC2012_devkit_t12/data",
                   "devkit/data", str(root)):
        assert needed in message


def test_devkit_without_meta_says_so(root, tmp_path):
    (root / "val").rename(tmp_path / "sorted_val")
    write_flat_val(root)
    write_devkit(root / "devkit" / "data")
    (root / "devkit" / "data" / DEVKIT_META).unlink()
    with pytest.raises(DataError, match=f"found .*{DEVKIT_GROUND_TRUTH} but not its partner"):
        ImageNetFolderSource(config_for(root), hierarchy()).official_splits()


@pytest.mark.parametrize("labels", ["kaggle", "devkit"])
def test_val_label_naming_missing_file(root, tmp_path, labels):
    (root / "val").rename(tmp_path / "sorted_val")
    write_flat_val(root)
    if labels == "kaggle":
        write_kaggle_csv(root)
    else:
        write_devkit(root)
    (root / "val" / "ILSVRC2012_val_00000003.JPEG").unlink()  # a Chihuahua
    with pytest.raises(DataError, match=r"labels 1 val image.* not in .*val/ \(first: "
                                        r"ILSVRC2012_val_00000003.JPEG\); is val/ fully "
                                        r"extracted\? set data.partial_val=true"):
        ImageNetFolderSource(config_for(root), hierarchy()).official_splits()


def test_partial_val_is_reported_and_evaluated_on_what_is_there(root, tmp_path):
    """A subset of the val images beside the full label file (as users extract it)."""
    (root / "val").rename(tmp_path / "sorted_val")
    write_flat_val(root)
    write_kaggle_csv(root)
    chihuahuas = [i for i, w in val_labels() if w == WNIDS[2]]
    for image_id in chihuahuas:  # one class loses every val image
        (root / "val" / f"{image_id}.JPEG").unlink()
    with pytest.raises(DataError, match=rf"{len(chihuahuas)} val image"):
        ImageNetFolderSource(config_for(root), hierarchy()).official_splits()
    source = ImageNetFolderSource(config_for(root, partial_val=True), hierarchy())
    val = source.official_splits()["val"]
    assert len(val) == 3 * VAL_PER_CLASS and 2 not in set(val.fine)
    assert len(source.notes) == 2
    assert f"labels {len(chihuahuas)} val image(s)" in source.notes[0]
    assert f"1 of 4 classes have no val images: {WNIDS[2]}" in source.notes[1]


def test_sorted_val_missing_class_under_partial_val(root):
    import shutil

    shutil.rmtree(root / "val" / WNIDS[0])
    source = ImageNetFolderSource(config_for(root, partial_val=True), hierarchy())
    assert 0 not in set(source.official_splits()["val"].fine)
    assert WNIDS[0] in source.notes[0]


def test_missing_outside_class_val_file_is_ignored(root, tmp_path):
    (root / "val").rename(tmp_path / "sorted_val")
    write_flat_val(root)
    write_kaggle_csv(root)
    (root / "val" / "ILSVRC2012_val_00000005.JPEG").unlink()  # the tench, not in hierarchy
    val = ImageNetFolderSource(config_for(root), hierarchy()).official_splits()["val"]
    assert len(val) == 4 * VAL_PER_CLASS


def test_malformed_label_files(root, tmp_path):
    (root / "val").rename(tmp_path / "sorted_val")
    write_flat_val(root)
    (root / KAGGLE_SOLUTION).write_text("id,label\nx,y\n")
    with pytest.raises(DataError, match="ImageId,PredictionString"):
        ImageNetFolderSource(config_for(root), hierarchy()).official_splits()
    (root / KAGGLE_SOLUTION).unlink()
    write_devkit(root)
    (root / DEVKIT_GROUND_TRUTH).write_text("1\n999\n")
    with pytest.raises(DataError, match="line 2 names ILSVRC2012_ID 999"):
        ImageNetFolderSource(config_for(root), hierarchy()).official_splits()
    (root / DEVKIT_META).write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="meta.mat"):
        ImageNetFolderSource(config_for(root), hierarchy()).official_splits()


def test_missing_val_folder(root, tmp_path):
    (root / "val").rename(tmp_path / "sorted_val")
    with pytest.raises(DataError, match="no val/ folder"):
        ImageNetFolderSource(config_for(root), hierarchy()).official_splits()


def test_registered_as_imagenet(root, tmp_path):
    """``dataset: imagenet`` with a hierarchy JSON as preset goes through the registry."""
    from supersub_tf.data import create_source

    hierarchy().save(tmp_path / "tiny_test.json")
    config = config_for(root, preset=str(tmp_path / "tiny_test.json"), verify_images=False)
    source = create_source(config)
    assert isinstance(source, ImageNetFolderSource) and source.hierarchy == hierarchy()
    assert load_dataset(config, "val").num_examples == 4 * VAL_PER_CLASS


# ---------------------------------------------------------------- a partial val (issue 22)
#: Seven real wnids in two superclasses; only the first class gets val images.
MORE_BIRDS = BIRDS + (("n01532829", "house finch"), ("n01534433", "junco"))
MORE_DOGS = DOGS + (("n02085936", "Maltese dog"),)


def wide_hierarchy() -> Hierarchy:
    return Hierarchy([Superclass("bird", tuple(Subclass(*s) for s in MORE_BIRDS)),
                      Superclass("dog", tuple(Subclass(*s) for s in MORE_DOGS))], name="wide")


@pytest.fixture
def partial_root(tmp_path) -> tuple[Path, Path]:
    """``(root, hierarchy JSON)``: train/ for seven classes, val/ for the first only."""
    root = tmp_path / "partial"
    h = wide_hierarchy()
    for fine, wnid in enumerate(h.class_ids):
        for k in range(2):
            write_image(root / "train" / wnid / f"{wnid}_{k}.JPEG", grey_of(fine))
    write_image(root / "val" / h.class_ids[0] / "v.JPEG", grey_of(0))
    h.save(tmp_path / "wide.json")
    return root, tmp_path / "wide.json"


def test_partial_val_names_every_class_without_val_images(partial_root, tmp_path):
    """The console line and the report may abbreviate ("and 1 more"); data_gaps.txt and
    data_summary.json name all six classes. A val preview draws the classes with val
    images, keeps an empty row for the superclass without any, and says so."""
    from supersub_tf.config import RunConfig
    from supersub_tf.run import data_stage

    root, preset = partial_root
    config = RunConfig(data=config_for(root, preset=str(preset), partial_val=True))
    config.preview.split, config.preview.images_per_superclass = "val", 2
    run_dir = tmp_path / "run"
    lines = []
    _, summary, preview = data_stage(config, run_dir, lines.append)
    note = (f"{root}/val/: 6 of 7 classes have no val images: n01531178 (goldfinch), "
            "n01532829 (house finch), n01534433 (junco), n02085620 (Chihuahua), n02085782 "
            "(Japanese spaniel) and 1 more (left out: data.partial_val)")
    every = ["n01531178 (goldfinch)", "n01532829 (house finch)", "n01534433 (junco)",
             "n02085620 (Chihuahua)", "n02085782 (Japanese spaniel)", "n02085936 (Maltese dog)"]
    assert (run_dir / "data_gaps.txt").read_text() == "\n".join(
        [note] + [f"  {name}" for name in every]) + "\n"
    stored = json.loads((run_dir / "data_summary.json").read_text())
    assert stored["notes"] == [note] and stored["note_names"] == {note: every}
    assert f"[data] {note} (every name in {run_dir / 'data_gaps.txt'})" in lines
    assert preview == "preview_val.png" and (run_dir / "plots" / preview).is_file()
    assert lines[-1] == (f"[data] preview grid: {run_dir / 'plots' / preview} (no val images "
                         "for 6 of 7 classes (n01531178 (goldfinch), n01532829 (house finch), "
                         "n01534433 (junco), n02085620 (Chihuahua), n02085782 (Japanese "
                         "spaniel) and 1 more), so none for superclass(es) dog; the preview "
                         "shows the others)")


def test_preview_draws_only_classes_with_images_in_the_split(partial_root):
    from supersub_tf.data import create_source
    from supersub_tf.data.preview import sample_images

    root, preset = partial_root
    source = create_source(config_for(root, preset=str(preset), partial_val=True))
    birds, dogs = sample_images(source, "val", per_superclass=3)
    assert [name for _, name in birds] == ["brambling"] and dogs == []  # its one val image


def test_a_preview_that_cannot_be_drawn_never_stops_the_run(partial_root, tmp_path):
    from supersub_tf.config import RunConfig
    from supersub_tf.run import data_stage

    root, preset = partial_root
    config = RunConfig(data=config_for(root, preset=str(preset), partial_val=True))
    config.preview.split = "test"  # no test split: data.test_fraction is 0
    lines = []
    assert data_stage(config, tmp_path / "run", lines.append)[2] == ""
    assert lines[-1].startswith(f"[data] no preview grid of the test split: ImageNet at {root} "
                                "has no split 'test'")


def test_data_preview_takes_the_split_from_the_flag_or_the_config(partial_root, tmp_path,
                                                                  capsys):
    """``--set preview.split=val`` is not ignored, and disagreeing with ``--split`` is
    refused."""
    from supersub_tf.cli import main

    root, preset = partial_root
    common = ["data", "preview", "--dataset", "imagenet", "--path", str(root), "--preset",
              str(preset), "--image-size", "16", "--set", "data.partial_val=true",
              "--output", str(tmp_path / "p.png")]
    assert main(common + ["--set", "preview.split=val"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {tmp_path / 'p.png'}\nno val images for 6 of 7 classes")
    assert main(common + ["--split", "val", "--set", "preview.split=val"]) == 0
    assert "no val images" in capsys.readouterr().out
    assert main(common + ["--split", "train", "--set", "preview.split=val"]) == 2
    assert capsys.readouterr().err == ("error: --split train and --set preview.split=val "
                                       "disagree; give one of them\n")
    assert main(common + ["--split", "train"]) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path / 'p.png'}\n"
