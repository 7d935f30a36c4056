"""The SavedModel export: the functional forward pass, in-graph unpacking, agreement with
the Keras pipeline (in process and in a clean process without this package), input
checks, atomic writes and sizes."""

from __future__ import annotations

import hashlib
import json
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from supersub_tf.choices import SAVEDMODEL_ROUTINGS
from supersub_tf.deltas.delta_set import DeltaSet, QuantizedTensor
from supersub_tf.deltas.packing import pack_codes
from supersub_tf.deltas.storage import SuperSubSystem, load_system, save_system
from supersub_tf.errors import ConfigError, DataError
from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass

SIZES = {"cat": 2, "dog": 3, "bird": 4}
IMAGE_SIZE = 16
BN_LAYERS = ("stage3_block1_1_bn", "stage3_block1_2_bn")


def make_hierarchy() -> Hierarchy:
    return Hierarchy([Superclass(name, tuple(Subclass(f"n{name}{i}", f"{name} {i}")
                                             for i in range(n)))
                      for name, n in SIZES.items()], name="toy")


def randomize_batch_norms(model, rng) -> None:
    """Random gamma, beta and moving statistics, so the weight order is exercised."""
    import tf_keras as keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2, variance.shape)])


def spread_head(model, images, mode: str, outputs: int = len(SIZES)) -> None:
    """A generalist head (or a vanilla one of ``outputs`` classes) whose argmax varies
    across ``images`` (random weights route nearly everything to one superclass):
    random kernel, logits centred and scaled."""
    from supersub_tf.data.pipeline import normalize
    from supersub_tf.models import trunk

    features = trunk(model)(normalize(images, mode), training=False).numpy()
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(features.shape[1], outputs)).astype(np.float32)
    logits = features @ kernel
    kernel /= logits.std(0).mean()
    model.get_layer("logits").set_weights([kernel, -(logits / logits.std(0).mean()).mean(0)])


def make_delta_sets(generalist, bits: int | None, seed: int) -> dict[str, DeltaSet]:
    """Random non-zero deltas on every convolution, a random head and two batch norms."""
    import tf_keras as keras

    rng = np.random.default_rng(seed)
    convs = [layer for layer in generalist.layers if type(layer) is keras.layers.Conv2D]
    features = generalist.get_layer("logits").get_weights()[0].shape[0]
    sets = {}
    for name, n in SIZES.items():
        deltas = {layer.name: QuantizedTensor.quantize(
            rng.normal(0, 0.05, layer.kernel.shape), bits) for layer in convs}
        owned = {"logits": [rng.normal(size=(features, n)).astype(np.float32),
                            rng.normal(size=n).astype(np.float32)]}
        for layer in BN_LAYERS:
            gamma, beta, mean, variance = generalist.get_layer(layer).get_weights()
            owned[layer] = [gamma * 1.2, beta + 0.1, mean - 0.05, variance * 0.8]
        sets[name] = DeltaSet(name, bits, deltas, owned)
    return sets


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (48, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)


@pytest.fixture(scope="module")
def generalist(images):
    import tf_keras as keras

    from supersub_tf.models import create_model

    keras.utils.set_random_seed(0)
    model = create_model("resnet8", len(SIZES), (IMAGE_SIZE, IMAGE_SIZE, 3), width=0.5)
    randomize_batch_norms(model, np.random.default_rng(0))
    spread_head(model, images, "imagenet")
    return model


def in_memory_system(generalist, bits, normalization="imagenet", seed=0) -> SuperSubSystem:
    backbone = {"model": "resnet8", "width": 0.5, "image_size": IMAGE_SIZE,
                "normalization": normalization}
    return SuperSubSystem(Path("in-memory"), make_hierarchy(), backbone, {"bits": bits},
                          generalist, make_delta_sets(generalist, bits, seed))


@pytest.fixture(scope="module")
def system_dir(tmp_path_factory, generalist) -> Path:
    """A saved 4-bit system."""
    system = in_memory_system(generalist, 4)
    return save_system(tmp_path_factory.mktemp("system") / "system", generalist,
                       system.delta_sets, system.hierarchy, system.backbone,
                       system.delta_settings)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, system_dir) -> Path:
    from supersub_tf.export.savedmodel import export_savedmodel

    return export_savedmodel(system_dir, tmp_path_factory.mktemp("export") / "savedmodel")


def keras_prediction(system: SuperSubSystem, images: np.ndarray):
    """The reference: ``SuperSubPipeline.predict(..., "hard")`` on the same preprocessing."""
    from supersub_tf.data.pipeline import normalize
    from supersub_tf.supersub.pipeline import SuperSubPipeline

    mode = system.backbone.normalization
    pipeline = SuperSubPipeline.from_system(system)
    return pipeline.predict(normalize(images, mode).numpy(), "hard")


def assert_matches_pipeline(outputs: dict[str, np.ndarray], prediction, hierarchy,
                            spread: bool = True) -> None:
    n = len(prediction.fine)
    if spread:
        assert len(set(prediction.superclass.tolist())) >= 2, "routing used one superclass only"
    for name in ("superclass", "subclass", "fine"):
        assert outputs[name].dtype == np.int32
        np.testing.assert_array_equal(outputs[name], getattr(prediction, name), err_msg=name)
    np.testing.assert_allclose(outputs["superclass_probs"], prediction.superclass_probs,
                               atol=1e-5)
    np.testing.assert_allclose(outputs["superclass_prob"],
                               prediction.superclass_probs[np.arange(n), prediction.superclass],
                               atol=1e-5)
    np.testing.assert_allclose(outputs["subclass_prob"], prediction.subclass_prob, atol=1e-5)
    np.testing.assert_allclose(outputs["fine_prob"], prediction.fine_prob, atol=1e-5)
    np.testing.assert_allclose(outputs["fine_probs"], prediction.fine_probs, atol=1e-5)
    names = {"superclass_name": np.array(hierarchy.superclass_names)[prediction.superclass],
             "fine_name": np.array(hierarchy.class_names)[prediction.fine],
             "fine_id": np.array(hierarchy.class_ids)[prediction.fine]}
    for key, expected in names.items():
        assert [s.decode() for s in outputs[key]] == expected.tolist(), key


# ---------------------------------------------------------------------- building blocks
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_unpack_codes_tf_inverts_pack_codes(bits):
    from supersub_tf.export.savedmodel import unpack_codes_tf

    levels = 2 ** (bits - 1) - 1
    rng = np.random.default_rng(bits)
    for shape in [(3, 3, 5, 7), (1,), (2, 9)]:
        codes = rng.integers(-levels, levels + 1, shape).astype(np.int8)
        codes.reshape(-1)[:2] = [-levels, levels][:codes.size]
        unpacked = unpack_codes_tf(pack_codes(codes, bits), bits, shape).numpy()
        np.testing.assert_array_equal(unpacked, codes)


def small_model_with_every_layer_type():
    """A small functional model using every supported layer type and option the
    registered architectures do not (conv bias and activation, average pooling)."""
    import tf_keras as keras

    inputs = keras.Input((12, 12, 3))
    x = keras.layers.ZeroPadding2D(((0, 1), (1, 0)), name="pad")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="valid", activation="relu",
                            name="conv_bias")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(x)
    y = keras.layers.BatchNormalization(epsilon=1e-3, name="bn")(y)
    y = keras.layers.ReLU(6.0, name="relu6")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.MaxPooling2D(2, strides=1, padding="same", name="max_pool")(x)
    x = keras.layers.AveragePooling2D(2, name="avg_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="logits")(x))


@pytest.mark.parametrize("name", ["small", "resnet18"])
def test_functional_forward_equals_keras(name):
    """Every supported layer type; resnet18 adds the ImageNet stem's max-pooling.
    (MobileNetV2 passes too; it is left out as slow to build.)"""
    import tf_keras as keras

    from supersub_tf.models.functional import FunctionalForward
    from supersub_tf.models import create_model

    keras.utils.set_random_seed(1)
    model = (small_model_with_every_layer_type() if name == "small"
             else create_model(name, 5, (32, 32, 3), width=0.25))
    randomize_batch_norms(model, np.random.default_rng(1))
    size = model.input_shape[1]
    x = np.random.default_rng(2).normal(size=(4, size, size, 3)).astype(np.float32)
    forward = FunctionalForward(model)
    got = forward(x, forward.model_weights(model)).numpy()
    np.testing.assert_allclose(got, model(x, training=False).numpy(), atol=1e-5, rtol=1e-5)


def test_unsupported_layer_is_named():
    import tf_keras as keras

    from supersub_tf.models.functional import FunctionalForward

    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    with pytest.raises(ConfigError, match="'flat'.*Flatten"):
        FunctionalForward(keras.Model(inputs, keras.layers.Dense(2)(x)))


def test_inconsistent_delta_sets_are_rejected(generalist):
    from supersub_tf.export.savedmodel import SuperSubModule

    system = in_memory_system(generalist, 4)
    delta = system.delta_sets["dog"].deltas["stem_conv"]
    system.delta_sets["dog"].deltas["stem_conv"] = QuantizedTensor(
        delta.codes[..., :1], delta.scales[:1], 4)
    with pytest.raises(DataError, match="'dog'.*'stem_conv'"):
        SuperSubModule(system)
    system = in_memory_system(generalist, 4)
    del system.delta_sets["bird"].deltas["stem_conv"]
    with pytest.raises(DataError, match="'cat' and 'bird' differ in their delta layers"):
        SuperSubModule(system)


# ---------------------------------------------------------------------- agreement
@pytest.mark.parametrize("bits,normalization", [(8, "unit"), (None, "imagenet")])
def test_module_equals_keras_pipeline(generalist, images, bits, normalization):
    """The serving graph in process (8-bit and float deltas, unit normalization), unsaved."""
    from supersub_tf.export.savedmodel import SuperSubModule
    from supersub_tf.models import copy_model

    if normalization != "imagenet":
        generalist = copy_model(generalist)
        spread_head(generalist, images, normalization)
    system = in_memory_system(generalist, bits, normalization, seed=3)
    # A specialist may own fewer layers than another: it keeps the generalist's there.
    del system.delta_sets["dog"].owned[BN_LAYERS[0]]
    module = SuperSubModule(system)
    outputs = {k: v.numpy() for k, v in module.serve(images).items()}
    assert_matches_pipeline(outputs, keras_prediction(system, images), system.hierarchy)


# Runs in a Python without this project: -I ignores PYTHON* variables and the script's
# folder, -S skips site (so the editable install's finder is never installed); only the
# venv's site-packages (TensorFlow, numpy) are put back on the path. It runs the
# signature on the images, on one and on none, and records what bad inputs raise.
CLEAN_PROCESS = r"""
import glob, importlib.util, json, sys
sys.path.extend(json.loads(sys.argv[1]))
assert importlib.util.find_spec("supersub_tf") is None, "supersub_tf is importable"
import numpy as np
import tensorflow as tf
serve = tf.saved_model.load(sys.argv[2]).signatures["serving_default"]
images = np.load(sys.argv[3])
results = {}
for n in (len(images), 1, 0):
    for key, value in serve(images=tf.constant(images[:n])).items():
        value = value.numpy()
        results[f"{key}/{n}"] = value.astype(bytes) if value.dtype == object else value
size = images.shape[1]
errors = {}
for case, bad in {"float32": tf.zeros([1, size, size, 3], tf.float32),
                  "small": tf.zeros([1, 8, 8, 3], tf.uint8),
                  "channels": tf.zeros([1, size, size, 4], tf.uint8),
                  "unbatched": tf.zeros([size, size, 3], tf.uint8)}.items():
    try:
        serve(images=bad)
    except Exception as err:
        errors[case] = f"{type(err).__name__}: {err}"
# The bytes signature on encoded files, as a serving stack sends them.
by_bytes = tf.saved_model.load(sys.argv[2]).signatures["image_bytes"]
for kind in ("png", "jpeg"):
    files = sorted(glob.glob(f"{sys.argv[5]}/*.{kind}"))
    data = tf.constant([open(f, "rb").read() for f in files])
    for key, value in by_bytes(image_bytes=data).items():
        value = value.numpy()
        results[f"{kind}:{key}"] = value.astype(bytes) if value.dtype == object else value
# A file that is not an image is answered invalid; a matrix of files is refused.
for key, value in by_bytes(image_bytes=tf.constant([b"not an image"])).items():
    value = value.numpy()
    results[f"undecodable:{key}"] = value.astype(bytes) if value.dtype == object else value
try:
    by_bytes(image_bytes=tf.constant([[b"not an image"]]))
except Exception as err:
    errors["matrix"] = f"{type(err).__name__}: {err}"
assert "supersub_tf" not in sys.modules
np.savez(sys.argv[4], errors=json.dumps(errors), **results)
"""


@pytest.mark.slow
def test_savedmodel_in_clean_process_equals_keras_pipeline(exported, system_dir, images,
                                                           tmp_path):
    site_dirs = sorted({*site.getsitepackages(), sysconfig.get_paths()["purelib"],
                        sysconfig.get_paths()["platlib"]})
    if any((Path(d) / "supersub_tf").exists() for d in site_dirs):
        pytest.skip("supersub_tf is installed into site-packages (not editable): cannot hide it")
    import tensorflow as tf

    from supersub_tf.data.pipeline import resize

    np.save(tmp_path / "images.npy", images)
    # The same pictures as PNG files (lossless, at the size) and as larger JPEGs of
    # another aspect ratio (decoded and resized in the graph).
    files = tmp_path / "files"
    files.mkdir()
    big = tf.image.resize(images, [40, 24], method="nearest").numpy().astype(np.uint8)
    for i, (image, large) in enumerate(zip(images, big)):
        (files / f"{i:03d}.png").write_bytes(tf.io.encode_png(image).numpy())
        (files / f"{i:03d}.jpeg").write_bytes(tf.io.encode_jpeg(large, quality=95).numpy())
    decoded = np.stack([resize(tf.io.decode_jpeg((files / f"{i:03d}.jpeg").read_bytes()),
                               images.shape[1]).numpy() for i in range(len(images))])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", CLEAN_PROCESS, json.dumps(site_dirs), str(exported),
         str(tmp_path / "images.npy"), str(tmp_path / "out.npz"), str(files)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(tmp_path / "out.npz") as data:
        results = {key: data[key] for key in data.files}
    errors = json.loads(str(results.pop("errors")))
    system = load_system(system_dir)
    n = len(images)
    outputs = {key[:-len(f"/{n}")]: value for key, value in results.items()
               if key.endswith(f"/{n}")}
    assert_matches_pipeline(outputs, keras_prediction(system, images), system.hierarchy)
    png = {key[4:]: value for key, value in results.items() if key.startswith("png:")}
    jpeg = {key[5:]: value for key, value in results.items() if key.startswith("jpeg:")}
    assert sorted(png) == sorted(jpeg) == sorted(outputs)
    assert_matches_pipeline(png, keras_prediction(system, images), system.hierarchy)
    assert_matches_pipeline(jpeg, keras_prediction(system, decoded), system.hierarchy,
                            spread=False)  # the blurred copies need not spread
    assert results["undecodable:valid"].tolist() == [False]
    assert results["undecodable:fine"].tolist() == [-1]
    assert results["undecodable:fine_name"].tolist() == [b""]
    assert errors["matrix"].startswith("InvalidArgumentError")
    assert "image_bytes must be a 1-D batch [N] of encoded images" in errors["matrix"]
    for key, value in outputs.items():  # batch of one: the first image's; empty: empty
        if value.dtype.kind == "f":
            np.testing.assert_allclose(results[f"{key}/1"], value[:1], atol=1e-6)
        else:
            np.testing.assert_array_equal(results[f"{key}/1"], value[:1])
        empty = {"superclass_probs": (0, len(SIZES)), "fine_probs": (0, sum(SIZES.values()))}
        assert results[f"{key}/0"].shape == empty.get(key, (0,))
    # Bad inputs: the signature names the dtype, the in-graph check the shape.
    assert sorted(errors) == ["channels", "float32", "matrix", "small", "unbatched"]
    assert errors["float32"].startswith("InvalidArgumentError")
    assert "expected to be a uint8 tensor but is a float tensor" in errors["float32"]
    for case in ("small", "channels", "unbatched"):
        assert errors[case].startswith("InvalidArgumentError")
        assert "not compatible with expected shape [?,16,16,3]" in errors[case], errors[case]


def test_concurrent_requests_do_not_interfere(exported, images):
    """Nothing is assigned while serving: parallel calls equal sequential ones."""
    from concurrent.futures import ThreadPoolExecutor

    import tensorflow as tf

    serve = tf.saved_model.load(str(exported)).signatures["serving_default"]
    batches = [images[i::4] for i in range(4)]
    sequential = [serve(images=tf.constant(b))["fine_prob"].numpy() for b in batches]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda b: serve(images=tf.constant(b))["fine_prob"].numpy(),
                                 batches * 3))
    for i, result in enumerate(parallel):
        np.testing.assert_array_equal(result, sequential[i % 4])


def test_metadata_describes_the_export(exported, system_dir):
    from supersub_tf.export.savedmodel import METADATA_FILE, OUTPUTS

    metadata = json.loads((exported / METADATA_FILE).read_text())
    assert metadata["format"] == "supersub-savedmodel"
    assert metadata["image_size"] == IMAGE_SIZE and metadata["normalization"] == "imagenet"
    assert metadata["delta_bits"] == 4 and metadata["routing"] == "hard"
    assert Hierarchy.from_dict(metadata["hierarchy"]).superclass_names == list(SIZES)
    assert sorted(metadata["signature"]["outputs"]) == sorted(OUTPUTS)
    assert metadata["source"]["path"] == str(system_dir.resolve())
    assert metadata["source"]["manifest_sha256"] == hashlib.sha256(
        (system_dir / "manifest.json").read_bytes()).hexdigest()


# ---------------------------------------------------------------------- atomicity, sizes
def tree(path: Path) -> dict[str, str]:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


def test_failed_export_leaves_previous_one(exported, system_dir, tmp_path, monkeypatch):
    import shutil

    import tensorflow as tf

    from supersub_tf.export.savedmodel import export_savedmodel

    target = tmp_path / "savedmodel"
    shutil.copytree(exported, target)
    before = tree(target)

    def failing_save(obj, export_dir, signatures=None, **kwargs):
        (Path(export_dir) / "saved_model.pb").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        export_savedmodel(system_dir, target)
    assert tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["savedmodel"]


def test_refuses_to_replace_an_unrelated_folder(system_dir, tmp_path):
    from supersub_tf.export.savedmodel import export_savedmodel

    target = tmp_path / "photos"
    target.mkdir()
    (target / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(DataError, match="refusing to replace"):
        export_savedmodel(system_dir, target)
    assert (target / "holiday.jpg").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_size_stays_near_storage_not_n_plus_1_networks(exported, system_dir):
    from supersub_tf.export.measure import export_size_report, format_export_size_report

    report = export_size_report(exported)  # finds the system from the metadata
    n, unit = report["num_specialists"], report["float32_network_bytes"]
    assert n == len(SIZES) and report["system"] == str(system_dir.resolve())
    # 4-bit deltas: each specialist is about an eighth of a network, plus a small head.
    assert report["variables_bytes"] < unit * (1 + 0.5 * n)
    assert report["variables_bytes"] < report["system_bytes"] * 1.2
    assert report["savedmodel_bytes"] == (report["variables_bytes"] + report["graph_bytes"]
                                          + sum(f.stat().st_size for f in exported.iterdir()
                                                if f.is_file() and f.name != "saved_model.pb"))
    assert "SavedModel / system" in format_export_size_report(report)


@pytest.mark.parametrize("stage_one", ["fine", "superclass"])
@pytest.mark.parametrize("routing", SAVEDMODEL_ROUTINGS)  # the graph's EXPORT_ROUTINGS
def test_each_routing_the_graph_declares_equals_routing_py(generalist, images, routing,
                                                          stage_one):
    """Every mode the SavedModel declares (EXPORT_ROUTINGS: hard, soft) answers as
    ``supersub/routing.py`` does in the in-process pipeline, with a generalist stage 1
    and with the vanilla network's (``base: vanilla``: a fine-class head whose
    probabilities the graph sums per superclass)."""
    import tf_keras as keras

    from supersub_tf.data.pipeline import normalize
    from supersub_tf.export.savedmodel import SuperSubModule
    from supersub_tf.models import with_head
    from supersub_tf.supersub.pipeline import SuperSubPipeline

    hierarchy = make_hierarchy()
    if stage_one == "fine":
        keras.utils.set_random_seed(2)
        network = with_head(generalist, hierarchy.num_classes)  # the same trunk, a fine head
        spread_head(network, images, "imagenet", hierarchy.num_classes)
        settings = {"bits": 4, "base": "vanilla"}
    else:
        network, settings = generalist, {"bits": 4}
    backbone = {"model": "resnet8", "width": 0.5, "image_size": IMAGE_SIZE,
                "normalization": "imagenet"}
    system = SuperSubSystem(Path("in-memory"), hierarchy, backbone, settings, network,
                            make_delta_sets(network, 4, seed=3))
    assert system.stage_one_head == stage_one
    pipeline = SuperSubPipeline.from_system(system)
    x = normalize(images, "imagenet").numpy()
    sup_probs, fine_probs, _ = pipeline.stage_one(x)
    confidence = (fine_probs if stage_one == "fine" else sup_probs).max(1)
    tau = float(np.median(confidence))  # gated: half the images confident, half not
    outputs = {k: v.numpy() for k, v in
               SuperSubModule(system, routing, k=2, tau=tau).serve(images).items()}
    expected = pipeline.predict(x, routing, k=2, tau=tau)
    assert_matches_pipeline(outputs, expected, hierarchy, spread=routing == "hard")
    if routing == "soft":   # every block is weighted by its p(superclass)
        np.testing.assert_allclose(outputs["fine_probs"].sum(1), 1.0, atol=1e-5)
    if routing == "gated" and stage_one == "fine":
        # Confident images keep the vanilla network's own answer and probabilities;
        # the others get their top-2 specialists' answer, which here often differs.
        sure = confidence >= tau
        assert 0 < sure.sum() < len(sure)
        np.testing.assert_array_equal(outputs["fine"][sure], fine_probs[sure].argmax(1))
        np.testing.assert_allclose(outputs["fine_probs"][sure], fine_probs[sure], atol=1e-5)
        topk = pipeline.predict(x, "topk", k=2)
        np.testing.assert_array_equal(outputs["fine"][~sure], topk.fine[~sure])
        assert (outputs["fine"][~sure] != fine_probs[~sure].argmax(1)).any()


def test_the_graph_refuses_every_mode_it_does_not_declare(generalist):
    from supersub_tf.errors import ExportError
    from supersub_tf.export.savedmodel import EXPORT_ROUTINGS, SuperSubModule
    from supersub_tf.supersub.routing import ALL_ROUTINGS, INFERENCE_ROUTINGS

    system = in_memory_system(generalist, 4)
    assert EXPORT_ROUTINGS == INFERENCE_ROUTINGS  # every mode that needs no truth
    others = [mode for mode in ALL_ROUTINGS if mode not in EXPORT_ROUTINGS]
    assert others == ["oracle"]
    for mode in others:
        with pytest.raises(ExportError, match=f"routes hard, topk, soft, gated, not '{mode}'"):
            SuperSubModule(system, mode)
    with pytest.raises(ExportError, match="k >= 1"):
        SuperSubModule(system, "topk", k=0)


@pytest.mark.slow
def test_a_gated_export_records_k_and_tau_and_predict_keeps_them(system_dir, images, tmp_path):
    """A gated SavedModel records its k and tau; ``predict`` answers with them (as the
    in-process pipeline does at the same tau) and refuses another --tau by name."""
    import json

    from supersub_tf.data.pipeline import normalize
    from supersub_tf.errors import DataError
    from supersub_tf.export.savedmodel import METADATA_FILE, export_savedmodel
    from supersub_tf.predict import open_model
    from supersub_tf.supersub.pipeline import SuperSubPipeline

    path = export_savedmodel(system_dir, tmp_path / "gated", routing="gated", k=2, tau=0.4)
    metadata = json.loads((path / METADATA_FILE).read_text())
    assert (metadata["routing"], metadata["topk"], metadata["gate_tau"]) == ("gated", 2, 0.4)
    model = open_model(path)
    assert model.routings == ("gated",)
    got = model.predict(images, "gated", None, None)
    expected = SuperSubPipeline.from_system(load_system(system_dir)).predict(
        normalize(images, "imagenet").numpy(), "gated", k=2, tau=0.4)
    np.testing.assert_array_equal(got["fine"], expected.fine)
    assert model.predict(images, "gated", 2, 0.4)["fine"].tolist() == expected.fine.tolist()
    with pytest.raises(DataError, match="--tau 0.6: this SavedModel was exported with tau 0.4"):
        model.predict(images, "gated", None, 0.6)


def test_soft_export_of_catch_all_specialists_is_refused(system_dir, tmp_path):
    import dataclasses

    from supersub_tf.errors import ExportError
    from supersub_tf.export.savedmodel import export_savedmodel

    system = load_system(system_dir)
    caught = dataclasses.replace(system, delta_sets={
        k: dataclasses.replace(d, catch_all=True) for k, d in system.delta_sets.items()})
    for routing in ("topk", "soft", "gated"):
        with pytest.raises(ExportError, match=f"{routing} routing by p\\(other\\)"):
            export_savedmodel(caught, tmp_path / "out", routing=routing)
    with pytest.raises(ExportError, match="routes hard, topk, soft, gated, not 'oracle'"):
        export_savedmodel(system, tmp_path / "out", routing="oracle")


# ---------------------------------------------------------------------- encoded files
@pytest.mark.parametrize("fmt,endian", [("JPEG", "<"), ("JPEG", ">"), ("PNG", "<"),
                                        ("PNG", ">"), ("WEBP", "<")])
def test_exif_orientation_in_the_graph_is_pillows(fmt, endian):
    """The graph reads the EXIF orientation where Pillow does (JPEG APP1 after JFIF's
    APP0, PNG eXIf, WebP EXIF; both byte orders) and turns the pixels as
    PIL.ImageOps.exif_transpose turns the same decoded pixels."""
    import io

    import tensorflow as tf
    from PIL import Image, ImageOps
    from test_predict import STORED_AS, photo_with_orientation, upright_picture

    from supersub_tf.data.examples import decode_image
    from supersub_tf.export.image_bytes import apply_orientation, exif_orientation

    for orientation in sorted(STORED_AS):
        data = photo_with_orientation(orientation, fmt, endian)
        with Image.open(io.BytesIO(data)) as image:
            exif = image.info["exif"]  # the EXIF block as Pillow found it
        stored = decode_image(tf.constant(data)).numpy()
        carrier = Image.fromarray(stored)
        carrier.info["exif"] = exif
        expected = np.asarray(ImageOps.exif_transpose(carrier))
        assert int(exif_orientation(tf.constant(data))) == orientation
        got = apply_orientation(tf.constant(stored), exif_orientation(tf.constant(data)))
        np.testing.assert_array_equal(got.numpy(), expected, err_msg=f"orientation {orientation}")
        if fmt != "JPEG":  # lossless: the very picture
            np.testing.assert_array_equal(got.numpy(), upright_picture())
    # No EXIF, or bytes that are not an image: upright, and never an error.
    for data in (b"", b"garbage", b"\xff\xd8\xff\xe1\x00", b"\x89PNG\r\n\x1a\n\xff\xff\xff\xff",
                 tf.io.encode_png(upright_picture()).numpy()):
        assert int(exif_orientation(tf.constant(data))) == 1


def huge_png(side: int) -> bytes:
    """A real black ``side x side`` PNG (1-bit greyscale, so the file is small) whose
    decoding would take ``side * side * 3`` bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    body = zlib.compress(b"\0" * ((1 + (side + 7) // 8) * side), 1)  # rows of 0-filter black
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def mixed_files(folder: Path, images: np.ndarray) -> dict[str, tuple[bytes, bool]]:
    """A server batch with bad files among good ones, also written to ``folder``:
    name -> (bytes, whether it is a valid image). Good: PNGs, a sideways JPEG, an
    animated and a still GIF (their first frame is the image), a large PNG; bad: empty,
    truncated JPEG and PNG, garbage, a PNG over Pillow's pixel limit."""
    import io

    from PIL import Image
    from test_predict import photo_with_orientation

    def encoded(picture: np.ndarray, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, fmt, **options)
        return buffer.getvalue()

    rng = np.random.default_rng(5)
    frames = [Image.fromarray(rng.integers(0, 256, (20, 24, 3), np.uint8)) for _ in range(3)]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], duration=100)
    rows, columns = np.meshgrid(np.arange(1200), np.arange(1600), indexing="ij")
    gradient = np.stack([rows % 256, columns % 256, (rows + columns) % 256], -1).astype(np.uint8)
    jpeg = encoded(images[3], "JPEG", quality=95)
    png = encoded(images[4], "PNG")
    files = {
        "good0.png": (encoded(images[0], "PNG"), True),
        "empty.png": (b"", False),
        "sideways.jpg": (photo_with_orientation(6, "JPEG", picture=images[1]), True),
        "truncated.jpg": (jpeg[:len(jpeg) // 2], False),
        "animated.gif": (animated.getvalue(), True),
        "garbage.png": (b"not an image at all", False),
        "good1.png": (encoded(images[2], "PNG"), True),
        "huge.png": (huge_png(13_400), False),  # 179,560,000 pixels
        "still.gif": (encoded(images[5], "GIF"), True),
        "large.png": (encoded(gradient, "PNG"), True),
        "truncated.png": (png[:len(png) // 2], False),
        "good2.png": (encoded(images[6], "PNG"), True),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return files


def test_decode_batch_keeps_the_valid_files_as_predict_reads_them(images, tmp_path):
    """The in-graph decoding of a mixed batch: the valid files, in order, with the very
    pixels `predict` reads (EXIF orientation, a GIF's first frame, resize); `predict`
    refuses each file the graph drops (the same limit: Pillow's)."""
    import PIL.Image
    import tensorflow as tf

    from supersub_tf.export.image_bytes import MAX_PIXELS, decode_batch
    from supersub_tf.predict import read_image

    assert MAX_PIXELS == 2 * PIL.Image.MAX_IMAGE_PIXELS
    files = mixed_files(tmp_path, images)
    decode = tf.function(lambda data: decode_batch(data, IMAGE_SIZE),  # traced once, as served
                         input_signature=[tf.TensorSpec([None], tf.string)])
    kept, pixels = decode(tf.constant([data for data, _ in files.values()]))
    assert kept.numpy().tolist() == [i for i, (_, ok) in enumerate(files.values()) if ok]
    expected = [read_image(tmp_path / name, IMAGE_SIZE) for name, (_, ok) in files.items() if ok]
    np.testing.assert_array_equal(pixels.numpy(), np.stack(expected))
    for name, (_, ok) in files.items():
        if not ok:
            with pytest.raises(DataError, match="cannot decode it as an image"):
                read_image(tmp_path / name, IMAGE_SIZE)
    kept, pixels = decode(tf.constant([], tf.string))
    assert kept.shape == (0,) and pixels.shape == (0, IMAGE_SIZE, IMAGE_SIZE, 3)


@pytest.mark.slow
def test_image_bytes_answers_every_good_file_of_a_batch_with_bad_ones(exported, images,
                                                                      tmp_path):
    """The signature on a mixed batch: each good file gets the answer of its pixels as
    `predict` reads them, each bad one valid=False, labels -1, zero probabilities and
    empty names; a file alone, or as a scalar, gets the same answer."""
    import tensorflow as tf

    from supersub_tf.export.savedmodel import INVALID_ANSWER, OUTPUTS
    from supersub_tf.predict import read_image

    files = mixed_files(tmp_path, images)
    valid = np.array([ok for _, ok in files.values()])
    pixels = np.stack([read_image(tmp_path / name, IMAGE_SIZE)
                       for name, (_, ok) in files.items() if ok])
    model = tf.saved_model.load(str(exported))
    reference = {k: v.numpy() for k, v in
                 model.signatures["serving_default"](images=tf.constant(pixels)).items()}
    assert reference["valid"].all() and len(set(reference["fine"].tolist())) >= 2
    by_bytes = model.signatures["image_bytes"]
    out = {k: v.numpy() for k, v in
           by_bytes(image_bytes=tf.constant([data for data, _ in files.values()])).items()}
    assert sorted(out) == sorted(OUTPUTS)
    np.testing.assert_array_equal(out["valid"], valid)
    for name, (dtype, _) in OUTPUTS.items():
        np.testing.assert_array_equal(out[name][valid], reference[name], err_msg=name)
        invalid = {"int32": -1, "float32": 0.0, "string": b"", "bool": False}[dtype]
        assert INVALID_ANSWER[dtype] in (invalid, invalid.decode() if dtype == "string" else ())
        assert (out[name][~valid] == invalid).all(), (name, out[name][~valid])
    # A good file sent alone, and as a scalar (a batch of one): the same answer.
    alone = by_bytes(image_bytes=tf.constant([files["sideways.jpg"][0]]))
    scalar = by_bytes(image_bytes=tf.constant(files["sideways.jpg"][0]))
    for name, (dtype, _) in OUTPUTS.items():
        np.testing.assert_array_equal(scalar[name].numpy(), alone[name].numpy(), err_msg=name)
        if dtype == "float32":
            np.testing.assert_allclose(alone[name].numpy()[0], out[name][2], atol=1e-6)
        else:
            np.testing.assert_array_equal(alone[name].numpy()[0], out[name][2], err_msg=name)
    empty = by_bytes(image_bytes=tf.constant([], tf.string))
    assert empty["valid"].shape == (0,) and empty["fine_probs"].shape == (0, sum(SIZES.values()))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes must be a 1-D batch \[N\] of encoded images"):
        by_bytes(image_bytes=tf.constant([[files["good0.png"][0]]]))


def test_call_signature_names_the_inputs(exported, images):
    """A wrong keyword is one line naming the inputs the signature takes (TensorFlow's
    own binding error prints the whole array first)."""
    import tensorflow as tf

    from supersub_tf.errors import ExportError
    from supersub_tf.export.savedmodel import call_signature

    signatures = tf.saved_model.load(str(exported)).signatures
    with pytest.raises(ExportError) as caught:
        call_signature(signatures["serving_default"], image=tf.constant(images[:2]))
    assert str(caught.value) == ("the signature takes images (uint8, shape (None, 16, 16, 3)); "
                                 "got image")
    with pytest.raises(ExportError, match=r"^the signature takes image_bytes \(string, shape "
                                          r"<unknown>\); got images$"):
        call_signature(signatures["image_bytes"], images=tf.constant(images[:2]))
    out = call_signature(signatures["serving_default"], images=tf.constant(images[:2]))
    assert out["fine"].shape == (2,)
