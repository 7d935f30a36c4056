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

    with pytest.raises(DataError, match="not a model folder: expected a stored system"):
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
        assert [Path(r["path"]).name for r in bad] == ["broken.jpg"]
        assert "cannot decode it as an image" in bad[0]["error"]
        for r in records:
            if not r["error"]:
                assert len(r["top_k"]) == 3 and r["top_k"][0][0] == r["class_id"]
                assert r["fine_prob"] == pytest.approx(r["superclass_prob"] * r["subclass_prob"],
                                                       rel=1e-4)
                assert r["routing"] == "hard"
        results[kind] = {r["path"]: r for r in records if not r["error"]}
    # The SavedModel runs the system's computation: the same answers and probabilities.
    for path, r in results["system"].items():
        other = results["savedmodel"][path]
        assert other["class_id"] == r["class_id"] and other["superclass"] == r["superclass"]
        assert other["fine_prob"] == pytest.approx(r["fine_prob"], abs=1e-5)
    # A PNG copy of a JPEG is the same picture.
    copy = next(r for p, r in results["system"].items() if p.endswith("copy.png"))
    assert copy["class_id"] in {r["class_id"] for r in results["system"].values()
                                if not r["path"].endswith(".png")}
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
