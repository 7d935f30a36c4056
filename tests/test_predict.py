"""``predict``: inputs, EXIF orientation, formats, and the CLI over all three model kinds."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from supersub_tf.errors import DataError
from supersub_tf.predict import ImagePrediction, expand_inputs, format_predictions, read_image

# PIL.Image.Transpose of the stored pixels that the EXIF orientation then makes upright.
STORED_AS = {1: None, 2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM",
             5: "TRANSPOSE", 6: "ROTATE_90", 7: "TRANSVERSE", 8: "ROTATE_270"}


def upright_picture() -> np.ndarray:
    """An asymmetric 12x20 picture: any flip or rotation changes it."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)


def photo_with_orientation(orientation: int, fmt: str = "PNG", endian: str = "<",
                           picture: np.ndarray | None = None) -> bytes:
    """``picture`` (default :func:`upright_picture`) stored as a camera stores it: its
    pixels transposed so that the EXIF ``orientation`` (written in byte order ``endian``)
    turns them upright again."""
    from PIL import Image

    image = Image.fromarray(upright_picture() if picture is None else picture)
    if STORED_AS[orientation]:
        image = image.transpose(getattr(Image.Transpose, STORED_AS[orientation]))
    exif = Image.Exif()
    exif.endian = endian
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, fmt, exif=exif, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


@pytest.mark.parametrize("endian", ["<", ">"])
def test_one_exif_reader_is_pillows(tmp_path, endian):
    """predict and the LiteRT runtime read EXIF with one function, exif_upright, which
    turns every orientation (either byte order) as PIL.ImageOps.exif_transpose does."""
    from PIL import Image, ImageOps

    from supersub_tf.export import litert_runtime

    upright = upright_picture()
    for orientation in sorted(STORED_AS):
        data = photo_with_orientation(orientation, "PNG", endian)
        with Image.open(io.BytesIO(data)) as image:
            assert image.getexif()[0x0112] == orientation
            expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
            np.testing.assert_array_equal(litert_runtime.exif_upright(image), expected)
        np.testing.assert_array_equal(expected, upright)
        path = tmp_path / f"{orientation}.png"
        path.write_bytes(data)
        # The LiteRT runtime's file reader: the upright picture, resized.
        np.testing.assert_array_equal(
            litert_runtime.read_image_file(path, 10),
            np.asarray(Image.fromarray(upright).resize((10, 10), Image.Resampling.BILINEAR)))
    import supersub_tf.predict as predict

    assert not hasattr(predict, "_UPRIGHT")  # no second table


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_exif_orientation_is_applied(tmp_path, orientation):
    from PIL import Image

    import tensorflow as tf

    from supersub_tf.data.pipeline import resize

    upright = upright_picture()
    image = Image.fromarray(upright)
    if STORED_AS[orientation]:
        image = image.transpose(getattr(Image.Transpose, STORED_AS[orientation]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.png"  # lossless, and PNG carries EXIF too
    image.save(path, exif=exif)
    expected = resize(tf.constant(upright), 16).numpy()
    np.testing.assert_array_equal(read_image(path, 16), expected)


def test_jpeg_pixels_are_trainings(shared_data, tmp_path):
    """A real Tiny ImageNet JPEG gives the pixels the training pipeline decodes."""
    import tensorflow as tf

    from supersub_tf.data.examples import decode_image

    with zipfile.ZipFile(shared_data / "tiny-imagenet-67.zip") as archive:
        name = next(n for n in archive.namelist() if n.endswith(".JPEG"))
        data = archive.read(name)
    path = tmp_path / "real.JPEG"
    path.write_bytes(data)
    np.testing.assert_array_equal(read_image(path, 64), decode_image(tf.constant(data)).numpy())


def test_undecodable_file_is_named(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a JPEG")
    with pytest.raises(DataError, match="broken.jpg: cannot decode it as an image"):
        read_image(bad, 16)


def test_expand_inputs(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1.jpg", "a/b/2.PNG", "a/notes.txt", "3.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    files, problems = expand_inputs([str(tmp_path / "a"), str(tmp_path / "*.jpeg"),
                                     str(tmp_path / "a" / "1.jpg"), str(tmp_path / "nope.jpg"),
                                     str(tmp_path / "*.gif"), str(tmp_path / "empty")])
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a/1.jpg", "a/b/2.PNG",
                                                                   "3.jpeg"]
    assert [(Path(p.path).name, p.error.split(" ")[0]) for p in problems] == [
        ("nope.jpg", "no"), ("*.gif", "the"), ("empty", "no")]


def test_formats():
    records = [ImagePrediction("x.jpg", superclass="dog", superclass_prob=0.9, class_id="n1",
                               class_name="beagle", subclass_prob=0.5, fine_prob=0.45,
                               top_k=[("n1", "beagle", 0.45), ("n2", "pug", 0.3)],
                               routing="hard"),
               ImagePrediction("y.jpg", error="y.jpg: cannot decode it")]
    rows = list(csv.DictReader(io.StringIO(format_predictions(records, "csv"))))
    assert rows[0]["class_name"] == "beagle" and rows[0]["top_k"] == "n1:0.4500;n2:0.3000"
    assert rows[1]["error"] == "y.jpg: cannot decode it" and rows[1]["class_id"] == ""
    assert json.loads(format_predictions(records, "json"))[0]["top_k"][1] == ["n2", "pug", 0.3]
    table = format_predictions(records, "table")
    assert "beagle (n1) 45.0%" in table and "pug 30.0%" in table and "error" in table


def test_not_a_model_folder(tmp_path):
    from supersub_tf.predict import open_model

    with pytest.raises(DataError, match="not a model folder: it holds neither manifest.json nor "
                                        r"saved_model.pb; expected a stored system"):
        open_model(tmp_path)


def test_savedmodel_signature_inputs_are_named(tmp_path):
    """A SavedModel whose serving_default takes other inputs than supersub_export.json
    records: one line naming what the signature takes, not TensorFlow's binding error."""
    import tensorflow as tf

    from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass
    from supersub_tf.predict import open_model

    module = tf.Module()
    module.serve = tf.function(lambda image: {"fine": tf.zeros(tf.shape(image)[:1], tf.int32)},
                               input_signature=[tf.TensorSpec([None, 4, 4, 3], tf.uint8,
                                                              name="image")])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.serve})
    hierarchy = Hierarchy([Superclass("dog", (Subclass("n1", "pug"), Subclass("n2", "boxer")))])
    (tmp_path / "supersub_export.json").write_text(json.dumps({
        "image_size": 4, "hierarchy": hierarchy.to_dict(), "routing": "hard",
        "signature": {"inputs": {"images": {"dtype": "uint8", "shape": ["N", 4, 4, 3]}}}}))
    with pytest.raises(DataError, match=r"its serving_default signature takes image, but "
                                        r"supersub_export.json records images$"):
        open_model(tmp_path)


# --------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    """Eight real Tiny ImageNet JPEGs in a folder tree, a PNG copy of one, a broken file."""
    root = tmp_path_factory.mktemp("pictures")
    data_dir = os.environ.get("SUPERSUB_DATA_DIR")
    archive_path = Path(data_dir or "") / "tiny-imagenet-67.zip"
    if not archive_path.is_file():
        pytest.skip("needs SUPERSUB_DATA_DIR with tiny-imagenet-67.zip")
    with zipfile.ZipFile(archive_path) as archive:
        names = [n for n in archive.namelist() if "/val/images/" in n and n.endswith(".JPEG")]
        for i, name in enumerate(names[:8]):
            target = root / ("inner" if i % 2 else ".") / Path(name).name
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(archive.read(name))
    from PIL import Image

    Image.open(next(root.glob("*.JPEG"))).save(root / "copy.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "supersub_tf", "predict", *args],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_predict_cli_with_all_three_model_kinds(tiny_supersub_run, pictures, tmp_path, capsys):
    root, run_dir = tiny_supersub_run
    models = {"system": run_dir / "systems" / "float",
              "savedmodel": root / "saved_models" / "tiny",
              "litert": root / "saved_models" / "tiny_tflite"}
    results = {}
    for kind, model in models.items():
        out = tmp_path / f"{kind}.json"
        done = run_cli(str(model), str(pictures), "--format", "json", "--output", str(out),
                       "--top-k", "3")
        assert done.returncode == 1, done.stderr  # the broken file
        assert "9 image(s) classified" in done.stderr and "broken.jpg" in done.stderr
        records = json.loads(out.read_text())
        assert len(records) == 10
        bad = [r for r in records if r["error"]]
        assert [Path(r["file"]).name for r in bad] == ["broken.jpg"]
        assert "cannot decode it as an image" in bad[0]["error"]
        for r in records:
            if not r["error"]:
                assert len(r["top_k"]) == 3 and r["top_k"][0][0] == r["class_id"]
                assert r["fine_prob"] == pytest.approx(r["superclass_prob"] * r["subclass_prob"],
                                                       rel=1e-4)
                assert r["routing"] == "hard"
        results[kind] = {r["file"]: r for r in records if not r["error"]}
    # The SavedModel runs the system's computation: the same answers and probabilities.
    for path, r in results["system"].items():
        other = results["savedmodel"][path]
        assert other["class_id"] == r["class_id"] and other["superclass"] == r["superclass"]
        assert other["fine_prob"] == pytest.approx(r["fine_prob"], abs=1e-5)
    # A PNG copy of a JPEG is the same picture.
    copy = next(r for p, r in results["system"].items() if p.endswith("copy.png"))
    assert copy["class_id"] in {r["class_id"] for r in results["system"].values()
                                if not r["file"].endswith(".png")}
    # Other routings where the model has them; a clear refusal where it does not (in
    # process: the subprocesses above already showed the command line itself).
    from supersub_tf.cli import main

    assert main(["predict", str(models["system"]), str(pictures / "inner"), "--routing",
                 "topk", "--format", "csv"]) == 0
    assert len(list(csv.DictReader(io.StringIO(capsys.readouterr().out)))) == 4
    assert main(["predict", str(models["savedmodel"]), str(pictures), "--routing",
                 "topk"]) == 2
    assert "a SavedModel offers hard" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), str(pictures)]) == 2
    assert "not a model folder" in capsys.readouterr().err


@pytest.mark.slow
def test_litert_runtime_reads_image_files(tiny_supersub_run, pictures, capsys, monkeypatch):
    from supersub_tf.export import litert_runtime

    root, _ = tiny_supersub_run
    export = str(root / "saved_models" / "tiny_tflite")
    assert litert_runtime.main([export, str(pictures)]) == 1  # the broken file
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 9 and all(line.count("\t") == 3 for line in lines)
    assert "broken.jpg: cannot decode it as an image" in err
    monkeypatch.setitem(sys.modules, "PIL", None)  # Pillow is optional: say what is missing
    assert litert_runtime.main([export, str(next(pictures.glob("*.JPEG")))]) == 1
    assert "reading image files needs Pillow" in capsys.readouterr().err


# --------------------------------------------------------------------------- issue 22
@pytest.mark.parametrize("make, match", [
    (lambda root: root / "absent", r"absent: no such folder; expected a stored system"),
    (lambda root: (root / "model.txt").write_text("x") and root / "model.txt",
     r"model.txt: a file, not a model folder"),
    (lambda root: (root / "manifest.json").write_text('{"format": "supersub-system",\n  oops}')
     and root, r"manifest.json: not valid JSON \(line 2, column 3: Expecting property name"),
    (lambda root: (root / "manifest.json").write_text("[1, 2]") and root,
     r"manifest.json: not a JSON object"),
    (lambda root: (root / "manifest.json").write_text('{"format": "other"}') and root,
     r"manifest.json: format 'other' is not a model's; expected a stored system"),
])
def test_a_bad_model_folder_says_what_is_wrong(tmp_path, make, match):
    from supersub_tf.predict import open_model

    with pytest.raises(DataError, match=match):
        open_model(make(tmp_path))


@pytest.mark.parametrize("make, match", [
    (lambda root: root, r": a folder; --output takes a file name, e.g. .*predictions.json$"),
    (lambda root: (root / "taken").write_text("x") and root / "taken" / "out.json",
     r"out.json: cannot write it \(.*taken is a file, not a folder\)$"),
])
def test_output_is_checked_before_classifying(tmp_path, monkeypatch, make, match):
    """The output location is refused before the model is opened or an image read."""
    from supersub_tf import predict
    from supersub_tf.errors import OutputError

    def never(*args, **kwargs):
        raise AssertionError("classified before the output was checked")

    monkeypatch.setattr(predict, "open_model", never)
    monkeypatch.setattr(predict, "predict_files", never)
    with pytest.raises(OutputError, match=match):
        predict.run_predict("model", ["x.png"], fmt="json", output=str(make(tmp_path)))
    predict.check_output(tmp_path / "new" / "deeper" / "out.csv", "csv")  # created on write


class TinyModel:
    """Two classes in one superclass; always answers the second class."""

    kind, image_size, routings = "test model", 8, ("hard",)

    def __init__(self):
        from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass

        self.hierarchy = Hierarchy([Superclass("pets", (Subclass("n1", "cat"),
                                                        Subclass("n2", "dog")))], name="t")

    def predict(self, images, routing, k, tau):
        n = len(images)
        return {"superclass_probs": np.ones((n, 1)), "fine_probs": np.tile([0.25, 0.75], (n, 1)),
                "superclass": np.zeros(n, int), "fine": np.ones(n, int),
                "fine_prob": np.full(n, 0.75), "subclass_prob": np.full(n, 0.75)}


def test_json_and_csv_call_the_image_file(tmp_path):
    """One name for the image field in every format: ``file``, the table's column."""
    from PIL import Image

    from supersub_tf.predict import predict_files

    Image.fromarray(upright_picture()).save(tmp_path / "a.png")
    records = predict_files(TinyModel(), [tmp_path / "a.png"])
    row = json.loads(format_predictions(records, "json"))[0]
    assert list(row)[:2] == ["file", "error"] and "path" not in row
    assert row["file"] == str(tmp_path / "a.png") and row["class_name"] == "dog"
    csv_row = next(csv.DictReader(io.StringIO(format_predictions(records, "csv"))))
    assert csv_row["file"] == row["file"]
    assert format_predictions(records, "table").startswith("file ")


def test_a_very_large_picture_is_one_line_of_ours(tmp_path, monkeypatch, capsys):
    """Over Pillow's warning limit (scaled down here) but under twice it: classified, with
    one ``[predict]`` line naming the file instead of Pillow's two-line warning."""
    import warnings

    from PIL import Image

    from supersub_tf.predict import predict_files

    Image.fromarray(np.zeros((10, 15, 3), np.uint8)).save(tmp_path / "big.png")  # 150 px
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning that escapes fails the test
        [record] = predict_files(TinyModel(), [tmp_path / "big.png"])
    assert record.error is None and record.class_id == "n2"
    assert capsys.readouterr().err == (
        f"[predict] {tmp_path / 'big.png'}: 150 pixels, over Pillow's decompression-bomb "
        "warning limit (100); classified anyway (pictures over 200 pixels are refused)\n"
        "[predict] 1/1 images\n")  # then the progress line


def test_the_litert_reader_makes_a_large_picture_one_line(tmp_path, monkeypatch, capsys):
    """The exported LiteRT runtime reads a picture between Pillow's warning limit and twice
    it (limit scaled down here) with one line of its own, and refuses one beyond."""
    import warnings

    from PIL import Image

    from supersub_tf.export.litert_runtime import ExportError, read_image_file  # standalone

    Image.fromarray(np.zeros((10, 15, 3), np.uint8)).save(tmp_path / "big.png")  # 150 px
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning that escapes fails the test
        pixels = read_image_file(tmp_path / "big.png", 8)
    assert pixels.shape == (8, 8, 3)
    assert capsys.readouterr().err == (f"{tmp_path / 'big.png'}: over Pillow's decompression-"
                                       "bomb warning limit (100 pixels); read anyway\n")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 70)
    with pytest.raises(ExportError, match="big.png: cannot decode it as an image"):
        read_image_file(tmp_path / "big.png", 8)
