"""LiteRT export: full-integer models, the manifest, the standalone runtime, validation,
atomicity, and agreement with the Keras two-stage pipeline on a small trained system."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from supersub_tf.config import SyntheticConfig
from supersub_tf.data.arrays import calibration_images, load_images
from supersub_tf.data.pipeline import normalize_images
from supersub_tf.errors import ConfigError, DataError
from supersub_tf.export import litert_runtime, measure, tflite
from supersub_tf.export.litert_runtime import ExportError, LiteRTSuperSub

# Every test here converts or runs LiteRT models of a trained system: the slow tier.
pytestmark = pytest.mark.slow

SIZE = 16
SYNTH = SyntheticConfig(num_superclasses=3, subclasses_per_superclass=2, images_per_class=48,
                        image_size=SIZE, seed=3)
BACKBONE = {"model": "resnet8", "width": 0.25, "image_size": SIZE, "normalization": "imagenet"}


def _fit(model, x, y, epochs: int, lr: float) -> None:
    import tf_keras as keras

    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-superclass system (8-bit deltas) trained on synthetic shapes in colours,
    saved and loaded back, with held-out images."""
    import tf_keras as keras

    from supersub_tf.data.synthetic import generate_images, synthetic_hierarchy
    from supersub_tf.deltas.specialist import build_delta_specialist, extract_delta_set
    from supersub_tf.deltas.storage import load_system, save_system
    from supersub_tf.models import create_model

    keras.utils.set_random_seed(0)
    hierarchy = synthetic_hierarchy(SYNTH)
    images, fine = generate_images(SYNTH)
    held_out = np.arange(len(fine)) % 4 == 0
    train_x, train_y = images[~held_out], fine[~held_out]
    x = normalize_images(train_x, "imagenet")
    superclass = hierarchy.fine_to_superclass[train_y]
    generalist = create_model("resnet8", hierarchy.num_superclasses, (SIZE, SIZE, 3),
                              width=0.25)
    _fit(generalist, x, superclass, epochs=20, lr=0.01)
    delta_sets = {}
    for k, name in enumerate(hierarchy.superclass_names):
        mine = superclass == k
        # Float deltas stored at 8 bits: the export sees the same k-bit delta sets as
        # after quantization-aware training, without tfmot's slow model rewrite.
        model = build_delta_specialist(generalist, hierarchy.num_subclasses(k), bits=None)
        _fit(model, x[mine], hierarchy.fine_to_subclass[train_y[mine]], epochs=6, lr=0.01)
        delta_sets[name] = extract_delta_set(model, name, 8)
    root = tmp_path_factory.mktemp("litert")
    path = save_system(root / "system", generalist, delta_sets, hierarchy, BACKBONE,
                       {"bits": 8, "from_stage": 0, "train_batchnorm": True})
    return {"system": load_system(path), "root": root, "train": (train_x, train_y),
            "val": (images[held_out], fine[held_out])}


@pytest.fixture(scope="module")
def export(trained) -> Path:
    """The int8 export of the trained system, calibrated on its training images."""
    train_x, train_y = trained["train"]
    return tflite.export_tflite(trained["system"], trained["root"] / "export", train_x, train_y,
                                calibration_size=64)


@pytest.fixture
def export_copy(export, tmp_path) -> Path:
    """A private copy of the export, for tests that break it."""
    return Path(shutil.copytree(export, tmp_path / "export"))


def edit_manifest(path: Path, change) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


# --------------------------------------------------------------------------- export
@pytest.mark.slow
def test_export_is_full_integer_with_complete_manifest(trained, export):
    from supersub_tf.hierarchy import Hierarchy

    system = trained["system"]
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["format"] == "supersub-litert" and manifest["format_version"] == 1
    assert Hierarchy.from_dict(manifest["hierarchy"]) == system.hierarchy
    spec = manifest["input"]
    assert spec["size"] == SIZE and spec["dtype"] == "uint8" and spec["pixel_divisor"] == 255.0
    assert spec["mean"] == pytest.approx([0.485, 0.456, 0.406])
    entries = [manifest["generalist"], *manifest["specialists"]]
    assert [e.get("superclass") for e in entries[1:]] == system.hierarchy.superclass_names
    assert [e["num_outputs"] for e in entries] == [3, 2, 2, 2]
    for entry in entries:
        path = export / entry["file"]
        assert path.stat().st_size == entry["bytes"]
        assert litert_runtime.sha256_file(path) == entry["sha256"]
        info = tflite.inspect_model(path)
        assert info["float_tensors"] == 0  # full integer: no float32 tensor, no float op
        assert info["input"]["dtype"] == info["output"]["dtype"] == "int8"
        assert info["input"] == entry["input"] and info["output"] == entry["output"]
        assert entry["input"]["scale"] > 0 and entry["calibration_images"] == 64
    assert (export / "litert_runtime.py").read_bytes() == Path(litert_runtime.__file__).read_bytes()
    assert manifest["runtime"]["file"] == "litert_runtime.py"
    # Routing and the file checks are the package's own modules, copied byte for byte.
    from supersub_tf import manifest_files
    from supersub_tf.supersub import routing

    for name, module in (("supersub_routing.py", routing),
                         ("supersub_manifest_files.py", manifest_files)):
        assert (export / name).read_bytes() == Path(module.__file__).read_bytes()
    assert [e["file"] for e in manifest["runtime_modules"]] == [
        "supersub_routing.py", "supersub_manifest_files.py"]
    assert manifest["catch_all"] is False
    assert not [p for p in export.parent.iterdir() if p.name.startswith(".export")]


def test_litert_agrees_with_keras(trained, export):
    # The models are small and briefly trained, and the int8 export quantizes every
    # activation after training (no quantization-aware training of the activations), so
    # images near a decision boundary may flip; the synthetic classes are well separated,
    # so nearly all images are far from one. 90% overall leaves room for that without
    # letting a broken pipeline (wrong normalisation, routing or quantization: ~33-50%)
    # pass; away from the near-ties agreement must be 99%.
    val_x, val_y = trained["val"]
    result = measure.compare_with_keras(export, trained["system"], val_x, val_y)
    assert result["images"] == len(val_y) == 72
    assert result["keras_accuracy"] > 0.6  # the system learned something
    assert result["fine_agreement"] >= 0.9, result
    assert result["superclass_agreement"] >= 0.9, result
    assert result["litert_accuracy"] >= result["keras_accuracy"] - 0.1
    assert result["superclass_prob_mean_abs_diff"] < 0.05
    margins = result["agreement_by_margin"]
    assert [m["min_margin"] for m in margins] == [0.01, 0.05, 0.1]
    assert margins[0]["share"] >= margins[-1]["share"]
    # The documented behaviour (README, Export): int8 flips only near-ties. On these 72
    # images (one flip = 1.4%): every label agrees where the Keras pipeline's top-2
    # margin is >= 0.1, and at most one where it is >= 0.05.
    assert margins[2]["share"] > 0.9 and margins[2]["agreement"] == 1.0, margins
    confident = round(margins[1]["share"] * 72)
    assert round(margins[1]["agreement"] * confident) >= confident - 1, margins


def test_predict_outputs_routings_and_batching(trained, export):
    system = trained["system"]
    h = system.hierarchy
    val_x, val_y = trained["val"]
    runtime = LiteRTSuperSub(export, num_threads=1)
    hard = runtime.predict(val_x)
    n = len(val_x)
    assert hard["superclass_probs"].shape == (n, 3) and hard["fine_probs"].shape == (n, 6)
    np.testing.assert_allclose(hard["superclass_probs"].sum(1), 1, atol=1e-5)
    assert np.array_equal(hard["superclass"], h.fine_to_superclass[hard["fine"]])
    assert np.array_equal(hard["superclass"], hard["superclass_probs"].argmax(1))
    assert np.array_equal(hard["subclass"], h.fine_to_subclass[hard["fine"]])
    assert hard["class_name"] == [h.class_names[f] for f in hard["fine"]]
    assert hard["class_id"][0] in h.class_ids
    assert hard["superclass_name"] == [h.superclass_names[s] for s in hard["superclass"]]
    np.testing.assert_allclose(hard["fine_prob"], hard["fine_probs"].max(1))
    np.testing.assert_allclose(
        hard["fine_prob"], hard["superclass_probs"].max(1) * hard["subclass_prob"], rtol=1e-5)
    # Batches of 5 (odd group sizes, interpreters resized back and forth) change nothing.
    small = runtime.predict(val_x, batch_size=5)
    np.testing.assert_array_equal(small["fine_probs"], hard["fine_probs"])
    top2 = runtime.predict(val_x, "topk", k=2)
    np.testing.assert_allclose(np.sort(top2["superclass_probs"], 1)[:, -2:].sum(1),
                               top2["fine_probs"].sum(1), rtol=1e-5)
    oracle = runtime.predict(val_x, "oracle", true_superclass=h.fine_to_superclass[val_y])
    assert np.array_equal(oracle["superclass"], h.fine_to_superclass[val_y])
    empty = runtime.predict(val_x[:0])
    assert empty["fine"].shape == (0,) and empty["fine_probs"].shape == (0, 6)
    sub = runtime.subclass_probs(val_x[:4], h.superclass_names[1])
    assert sub.shape == (4, 2)


def test_wrong_images_are_clear_errors(export):
    runtime = LiteRTSuperSub(export)
    with pytest.raises(ExportError, match="must be uint8"):
        runtime.predict(np.zeros((2, SIZE, SIZE, 3), np.float32))
    with pytest.raises(ExportError, match=r"uint8 \[N, 16, 16, 3\].*got shape \[2, 32, 32, 3\]"):
        runtime.predict(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ExportError, match="got shape"):
        runtime.predict(np.zeros((SIZE, SIZE, 3), np.uint8))
    with pytest.raises(ExportError, match="unknown superclass"):
        runtime.subclass_probs(np.zeros((1, SIZE, SIZE, 3), np.uint8), "nope")


def test_normalisation_equals_the_training_pipeline():
    import tensorflow as tf

    from supersub_tf.data.pipeline import normalize

    pixels = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    for mode in ("imagenet", "unit", "none"):
        expected = normalize(tf.constant(pixels), mode).numpy()
        np.testing.assert_array_equal(normalize_images(pixels, mode), expected)
    with pytest.raises(ConfigError, match="normalization"):
        normalize_images(pixels, "zscore")


# --------------------------------------------------------------------------- validation
def test_missing_and_corrupted_model_files(export_copy):
    files = sorted((export_copy / "specialists").iterdir())
    data = files[1].read_bytes()
    files[1].write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ExportError, match=rf"{files[1].name}: sha256 mismatch"):
        LiteRTSuperSub(export_copy)
    files[1].write_bytes(data[:100])
    with pytest.raises(ExportError, match=rf"{files[1].name}: size 100 bytes, the manifest says"):
        LiteRTSuperSub(export_copy)
    files[1].unlink()
    with pytest.raises(ExportError, match=rf"{files[1].name}: missing \(listed in manifest"):
        LiteRTSuperSub(export_copy)
    with pytest.raises(DataError, match="missing"):  # the library's error type
        tflite.open_export(export_copy)


def test_manifest_format_and_hierarchy_errors(export_copy):
    (export_copy / "manifest.json").rename(export_copy / "saved.json")
    with pytest.raises(ExportError, match="manifest.json: not found"):
        LiteRTSuperSub(export_copy)
    (export_copy / "saved.json").rename(export_copy / "manifest.json")
    original = (export_copy / "manifest.json").read_text()

    def restore():
        (export_copy / "manifest.json").write_text(original)

    edit_manifest(export_copy, lambda m: m.update(format_version=7))
    with pytest.raises(ExportError, match="unknown format version 7"):
        LiteRTSuperSub(export_copy)
    restore()
    edit_manifest(export_copy, lambda m: m.update(format="supersub-system"))
    with pytest.raises(ExportError, match="not a supersub-litert manifest"):
        LiteRTSuperSub(export_copy)
    restore()

    def drop_subclass(m):
        m["hierarchy"]["superclasses"][0]["subclasses"].pop()

    edit_manifest(export_copy, drop_subclass)  # the specialists list still says 2
    with pytest.raises(ExportError, match="do not match the specialists listed"):
        LiteRTSuperSub(export_copy)
    restore()

    def shrink_superclass(m):  # consistent manifest, but the model still has 2 outputs
        drop_subclass(m)
        m["specialists"][0]["num_subclasses"] = 1
    edit_manifest(export_copy, shrink_superclass)
    with pytest.raises(ExportError, match=r"00_disc.tflite: the model has 2 outputs, but "
                                          r"superclass 'disc' with 1 subclasses needs 1"):
        LiteRTSuperSub(export_copy)
    restore()
    edit_manifest(export_copy, lambda m: m["input"].update(size=32))
    with pytest.raises(ExportError, match=r"generalist.tflite: model input shape \[-1, 16, 16, "
                                          r"3\], the manifest's images are \[N, 32, 32, 3\]"):
        LiteRTSuperSub(export_copy)
    restore()
    edit_manifest(export_copy, lambda m: m["generalist"]["input"].update(dtype="uint8"))
    with pytest.raises(ExportError, match="generalist.tflite: model input dtype int8, the "
                                          "manifest says uint8"):
        LiteRTSuperSub(export_copy)
    restore()
    LiteRTSuperSub(export_copy)  # intact again


# --------------------------------------------------------------------------- atomicity
def test_failed_export_leaves_the_previous_one_intact(trained, export_copy, monkeypatch):
    before = {p.relative_to(export_copy): p.read_bytes()
              for p in export_copy.rglob("*") if p.is_file()}
    real = tflite.convert_model
    calls = []

    def failing(model, quantization="int8", representative=None):
        calls.append(model.name)
        if len(calls) == 2:  # after the generalist was written
            raise RuntimeError("injected failure")
        return real(model, quantization, representative)

    monkeypatch.setattr(tflite, "convert_model", failing)
    with pytest.raises(RuntimeError, match="injected failure"):
        tflite.export_tflite(trained["system"], export_copy, quantization="float32")
    after = {p.relative_to(export_copy): p.read_bytes()
             for p in export_copy.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in export_copy.parent.iterdir()) == ["export"]


def test_export_refuses_bad_targets_and_calibration(trained, tmp_path):
    system = trained["system"]
    train_x, train_y = trained["train"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="refusing to replace"):
        tflite.export_tflite(system, other, quantization="float32")
    assert (other / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="needs representative training images"):
        tflite.export_tflite(system, tmp_path / "a")
    with pytest.raises(ConfigError, match=r"uint8 \[N, 16, 16, 3\]"):
        tflite.export_tflite(system, tmp_path / "a", train_x.astype(np.float32), train_y)
    first = system.hierarchy.fine_to_superclass[train_y] == 0
    with pytest.raises(ConfigError, match="no calibration images of superclass"):
        tflite.export_tflite(system, tmp_path / "a", train_x[~first], train_y[~first])
    with pytest.raises(ConfigError, match="quantization must be one of"):
        tflite.export_tflite(system, tmp_path / "a", quantization="int4")
    assert not (tmp_path / "a").exists()


# --------------------------------------------------------------------------- standalone
def test_runtime_runs_without_tensorflow_or_supersub_tf(trained, export, tmp_path):
    val_x, _ = trained["val"]
    folder = Path(shutil.copytree(export, tmp_path / "deployed"))
    np.save(folder / "images.npy", val_x)
    script = """
import importlib.abc, json, sys
BLOCKED = ("tensorflow", "tf_keras", "keras", "supersub_tf", "tensorflow_model_optimization")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked import of {name}")

sys.meta_path.insert(0, Block())
sys.path.insert(0, ".")
import numpy as np
from litert_runtime import LiteRTSuperSub
runtime = LiteRTSuperSub(".", num_threads=1)
images = np.load("images.npy")
fine = {mode: runtime.predict(images, mode, tau=0.9)["fine"].tolist()
        for mode in ("hard", "topk", "gated")}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"fine": fine, "loaded": loaded,
                  "routing_from": sys.modules["supersub_routing"].__file__}))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and Path(out["routing_from"]).parent == folder
    # The copies answer exactly as the package's modules do, in every routing mode.
    in_package = LiteRTSuperSub(export)
    for mode in ("hard", "topk", "gated"):
        assert out["fine"][mode] == in_package.predict(val_x, mode, tau=0.9)["fine"].tolist()


def test_catch_all_export_runs_every_routing_like_the_keras_pipeline(trained, tmp_path):
    """A float32 export of catch-all specialists: the runtime's hard, top-k and gated
    routing (with the "other" rejection) against the Keras pipeline's."""
    import dataclasses

    from supersub_tf.supersub.pipeline import SuperSubPipeline

    system = trained["system"]
    rng = np.random.default_rng(0)
    sets = {}
    for name, delta_set in system.delta_sets.items():
        kernel, bias = delta_set.owned["logits"]
        other = rng.normal(0, 0.5, (kernel.shape[0], 1)).astype(np.float32)
        sets[name] = dataclasses.replace(
            delta_set, catch_all=True,
            owned={**delta_set.owned, "logits": [np.concatenate([kernel, other], 1),
                                                 np.append(bias, np.float32(-1.0))]})
    caught = dataclasses.replace(system, delta_sets=sets,
                                 delta_settings={**system.delta_settings, "catch_all": True})
    path = tflite.export_tflite(caught, tmp_path / "ca", quantization="float32")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["catch_all"] is True
    assert [e["num_outputs"] for e in manifest["specialists"]] == [3, 3, 3]
    runtime = LiteRTSuperSub(path, num_threads=1)
    val_x, _ = trained["val"]
    pipeline = SuperSubPipeline(caught.generalist, sets, caught.hierarchy)
    x = normalize_images(val_x, "imagenet")
    for mode in ("hard", "topk", "gated"):
        ours = runtime.predict(val_x, mode, tau=0.9)
        keras_pred = pipeline.predict(x, mode, tau=0.9)
        np.testing.assert_allclose(ours["fine_probs"], keras_pred.fine_probs, atol=1e-4)
        assert (ours["fine"] == keras_pred.fine).mean() >= 0.97
    assert runtime.subclass_probs(val_x[:3], 0).shape == (3, 2)   # "other" left out


def test_runtime_command_line_errors_go_to_stderr_naming_the_culprit(export, tmp_path):
    runtime = [sys.executable, str(Path(export) / "litert_runtime.py"), str(export)]
    text = tmp_path / "notes.npy"
    text.write_text("not an array")
    bad_file = subprocess.run([*runtime, str(text)], capture_output=True, text=True)
    assert bad_file.returncode == 1 and bad_file.stdout == ""
    assert "notes.npy: not a NumPy .npy file" in bad_file.stderr
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((1, 8, 8, 3), np.uint8))
    zero = subprocess.run([*runtime, str(images), "--threads", "0"], capture_output=True,
                          text=True)
    assert zero.returncode == 1 and "num_threads must be a positive integer" in zero.stderr
    assert "generalist.tflite" not in zero.stderr


# --------------------------------------------------------------------------- measurement
def test_sizes_and_speed(trained, export):
    system = trained["system"]
    sizes = measure.export_sizes(export, system)
    assert sizes["models_bytes"] == sum(m["bytes"] for m in sizes["models"])
    assert len(sizes["models"]) == 4 and sizes["total_bytes"] > sizes["models_bytes"]
    from supersub_tf.deltas.specialist import materialize

    networks = [system.generalist] + [materialize(system.generalist, d)
                                      for d in system.delta_sets.values()]
    assert sizes["float32_bytes"] == 4 * sum(m.count_params() for m in networks)
    assert sizes["models_vs_float32"] < 1  # int8 weights, plus the flatbuffer overhead
    from supersub_tf.deltas.storage_report import storage_report

    assert sizes["storage_bytes"] == storage_report(system.path)["total_bytes"]
    assert sizes["models_vs_storage"] == sizes["models_bytes"] / sizes["storage_bytes"]
    speed = measure.benchmark_litert(export, trained["val"][0], batch_size=32, repeats=2)
    assert len(speed["seconds"]) == 2 and speed["num_threads"] == 2
    assert speed["images_per_second"] == pytest.approx(72 / min(speed["seconds"]))
    report = measure.measure_export(export, system, *trained["val"], repeats=1)
    assert json.loads(json.dumps(report)) == report  # JSON-ready for run reports
    assert report["comparison"]["images"] == 72 and report["sizes"] == sizes
    text = measure.format_measurement(report)
    assert "identical fine labels vs Keras" in text and "images/s" in text


def test_load_images_from_a_source():
    from supersub_tf.config import DataConfig

    config = DataConfig(dataset="synthetic", image_size=12,
                        synthetic=SyntheticConfig(num_superclasses=2, subclasses_per_superclass=2,
                                                  images_per_class=10, image_size=16))
    images, fine = calibration_images(config, per_superclass=3)
    assert images.shape == (6, 12, 12, 3) and images.dtype == np.uint8
    assert sorted(np.bincount(fine // 2).tolist()) == [3, 3]
    val, val_fine = load_images(config, "val")
    assert len(val) == len(val_fine) > 0 and val.shape[1:] == (12, 12, 3)


def test_calibration_selection_is_balanced():
    to_super = np.array([0, 0, 1, 1, 2])  # five fine classes in three superclasses
    fine = np.array([0] * 50 + [2] * 30 + [3] * 30 + [4] * 4)
    rng = np.random.default_rng(0)
    picked = tflite._balanced(to_super, fine, [0, 1, 2], 30, rng)
    assert len(set(picked.tolist())) == 30
    assert np.bincount(to_super[fine[picked]], minlength=3).tolist() == [13, 13, 4]
    only = tflite._balanced(to_super, fine, [1], 500, rng)  # fewer images than asked
    assert sorted(only.tolist()) == list(range(50, 110))


@pytest.mark.slow
def test_export_commands(trained, tmp_path, capsys):
    """`python -m supersub_tf export savedmodel|tflite SYSTEM OUT`, as the README names them."""
    from supersub_tf.cli import main

    system = str(trained["system"].path)
    assert main(["export", "savedmodel", system, str(tmp_path / "saved")]) == 0
    assert "SavedModel" in capsys.readouterr().out
    assert (tmp_path / "saved" / "saved_model.pb").is_file()
    assert main(["export", "tflite", system, str(tmp_path / "lite"),
                 "--quantization", "float32"]) == 0
    assert "4 models" in capsys.readouterr().out
    runtime = tflite.open_export(tmp_path / "lite")
    val_x, _ = trained["val"]
    reference = measure.keras_predict(trained["system"], val_x)
    assert (runtime.predict(val_x)["fine"] == reference["fine"]).all()
    # An unrelated folder is never replaced.
    assert main(["export", "savedmodel", system, str(trained["root"])]) == 2
    assert "not a SavedModel" in capsys.readouterr().err


def test_a_system_on_the_vanilla_network_routes_by_its_summed_fine_probabilities(
        trained, tmp_path):
    """``base: vanilla``: stage 1 is a fine-class network; the manifest says so, and the
    runtime sums its probabilities per superclass and routes hard, top-k, soft and gated
    (keeping stage 1's own answer above tau) as the in-process pipeline does."""
    import tf_keras as keras

    from supersub_tf.deltas.specialist import build_delta_specialist, extract_delta_set, head_rows
    from supersub_tf.deltas.storage import load_system, save_system
    from supersub_tf.models import with_head
    from supersub_tf.supersub.pipeline import SuperSubPipeline

    system = trained["system"]
    hierarchy = system.hierarchy
    train_x, train_y = trained["train"]
    x = normalize_images(train_x, "imagenet")
    keras.utils.set_random_seed(1)
    vanilla = with_head(system.generalist, hierarchy.num_classes)
    _fit(vanilla, x, train_y, epochs=3, lr=0.01)
    delta_sets = {}
    for k, name in enumerate(hierarchy.superclass_names):
        mine = hierarchy.fine_to_superclass[train_y] == k
        block = hierarchy.fine_labels_of(k)
        model = build_delta_specialist(vanilla, len(block), bits=None,
                                       head_init=head_rows(vanilla, block))
        _fit(model, x[mine], hierarchy.fine_to_subclass[train_y[mine]], epochs=1, lr=0.01)
        delta_sets[name] = extract_delta_set(model, name, 8)
    path = save_system(tmp_path / "system", vanilla, delta_sets, hierarchy, BACKBONE,
                       {"bits": 8, "from_stage": 0, "train_batchnorm": True, "base": "vanilla"})
    on_vanilla = load_system(path)
    out = tflite.export_tflite(on_vanilla, tmp_path / "export", quantization="float32")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generalist"]["stage_one"] == "fine"
    assert manifest["generalist"]["num_outputs"] == hierarchy.num_classes
    runtime = LiteRTSuperSub(out)
    val_x, _ = trained["val"]
    pipeline = SuperSubPipeline.from_system(on_vanilla)
    normalized = normalize_images(val_x, "imagenet")
    for routing in ("hard", "topk", "soft", "gated"):
        got = runtime.predict(val_x, routing=routing, k=2, tau=0.6)
        expected = pipeline.predict(normalized, routing, k=2, tau=0.6)
        assert (got["fine"] == expected.fine).mean() >= 0.99, routing
        np.testing.assert_allclose(got["fine_probs"], expected.fine_probs, atol=1e-4)
    sup, fine = pipeline.stage_one(normalized)[:2]
    np.testing.assert_allclose(runtime.superclass_probs(val_x), sup, atol=1e-5)
    confident = fine.max(1) >= 0.6   # gated: stage 1's own answer, no specialist pass
    gated = runtime.predict(val_x, routing="gated", k=2, tau=0.6)
    assert confident.any() and (gated["fine"][confident] == fine[confident].argmax(1)).all()
