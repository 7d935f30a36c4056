"""Keras Applications backbones, pretrained weights, their preprocessing and depthwise deltas.

Nothing is downloaded: weights files are saved by the tests themselves (Keras'
application with random weights, perturbed), and the ``imagenet`` branch copies from a
monkeypatched reference.
"""

import numpy as np
import pytest

import supersub_tf  # noqa: F401  (selects tf_keras before TensorFlow is imported)
from supersub_tf.choices import NORMALIZATIONS
from supersub_tf.data.pipeline import denormalize, normalize, normalize_images
from supersub_tf.deltas.delta_set import DeltaSet, QuantizedTensor
from supersub_tf.deltas.layers import DeltaDepthwiseConv2D
from supersub_tf.deltas.specialist import (
    build_delta_specialist, delta_layer_names, head_rows, materialize)
from supersub_tf.errors import ConfigError
from supersub_tf.models import check_pretrained, create_model, layer_stage
from supersub_tf.models import keras_applications
from supersub_tf.models.functional import FunctionalForward

import tensorflow as tf  # noqa: E402,I001  (after supersub_tf)
import tf_keras as keras  # noqa: E402


def pixels(n=2, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def perturbed(model, seed=1):
    """Gives every weight of ``model`` distinct random values (so a load is checkable)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32) + (w if "variance"
                       in v.name else 0) for w, v in zip(model.get_weights(), model.weights)])
    return model


# ------------------------------------------------------------------------------ stages
@pytest.mark.parametrize("name,stage", [
    ("stage3_block1_1_conv", 3), ("stem_conv", None),
    ("conv1_conv", None), ("conv2_block1_1_conv", 1), ("conv5_block3_out", 4),
    ("Conv1", None), ("expanded_conv_depthwise", None), ("block_1_expand", 1),
    ("block_2_project_BN", 1), ("block_3_depthwise", 2), ("block_5_add", 2),
    ("block_6_expand", 3), ("block_12_project", 3), ("block_13_expand", 4),
    ("block_16_project", 4), ("Conv_1", 4), ("Conv_1_bn", 4), ("out_relu", 4),
    ("stem_bn", None), ("block1a_dwconv", None), ("block2b_expand_conv", 1),
    ("block3a_se_reduce", 2), ("block5c_project_bn", 3), ("block7a_dwconv", 4),
    ("top_conv", 4), ("features", None), ("logits", None)])
def test_layer_stage_maps_every_backbone_family(name, stage):
    assert layer_stage(name) == stage


def test_from_stage_selects_later_stages_of_mobilenet_with_depthwise_deltas():
    base = create_model("mobilenetv2", 4, (32, 32, 3), 0.35)
    specialist = build_delta_specialist(base, 3, from_stage=3, bits=None)
    names = delta_layer_names(specialist)
    assert names[0] == "block_6_expand" and names[-1] == "Conv_1"
    assert {layer_stage(n) for n in names} == {3, 4}
    assert "block_6_depthwise" in names and "block_16_depthwise" in names
    assert isinstance(specialist.get_layer("block_6_depthwise"), DeltaDepthwiseConv2D)
    assert not specialist.get_layer("block_5_depthwise").trainable


# ------------------------------------------------------------------------------ normalisation
@pytest.mark.parametrize("mode", NORMALIZATIONS)
def test_every_normalization_is_identical_in_tensorflow_and_numpy(mode):
    images = pixels(3)
    in_graph = tf.function(lambda x: normalize(x, mode))(tf.constant(images)).numpy()
    np.testing.assert_array_equal(normalize(images, mode).numpy(), normalize_images(images, mode))
    # In a graph (the SavedModel's, training's tf.data map) TensorFlow may rewrite a
    # division by a constant as a product with its reciprocal: a few ulps apart.
    np.testing.assert_allclose(in_graph, normalize_images(images, mode), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(denormalize(normalize_images(images, mode), mode), images)


def test_tf_and_caffe_modes_are_keras_preprocessing():
    images = pixels(3)
    keras_tf = keras.applications.mobilenet_v2.preprocess_input(images.astype(np.float32))
    np.testing.assert_array_equal(normalize_images(images, "tf"), keras_tf)
    keras_caffe = keras.applications.resnet50.preprocess_input(images.astype(np.float32))
    # Keras' caffe mode is BGR; ours is the same numbers in RGB order.
    np.testing.assert_array_equal(normalize_images(images, "caffe"), keras_caffe[..., ::-1])


# ------------------------------------------------------------------------------ depthwise deltas
def test_depthwise_delta_layer_at_zero_is_the_base_layer_exactly():
    x = np.random.default_rng(0).normal(size=(2, 9, 9, 6)).astype(np.float32)
    conv = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=True,
                                        depth_multiplier=2, name="dw")
    conv(x)
    perturbed(conv)
    delta = DeltaDepthwiseConv2D.from_conv(conv)
    delta(x)
    delta.set_base(*conv.get_weights())
    np.testing.assert_array_equal(delta(x).numpy(), conv(x).numpy())
    assert [w.name.split("/")[-1].split(":")[0] for w in delta.trainable_weights] == ["delta"]
    step = np.full(delta.delta.shape, 0.01, np.float32)
    delta.delta.assign(step)
    moved = keras.layers.DepthwiseConv2D.from_config(conv.get_config())
    moved(x)
    moved.set_weights([conv.get_weights()[0] + step, conv.get_weights()[1]])
    np.testing.assert_allclose(delta(x).numpy(), moved(x).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bits", [None, pytest.param(4, marks=pytest.mark.slow)])
def test_untrained_mobilenet_specialist_is_the_base_network_exactly(bits):
    base = perturbed(create_model("mobilenetv2", 6, (32, 32, 3), 0.35))
    classes = [1, 4, 5]
    specialist = build_delta_specialist(base, 3, bits=bits, head_init=head_rows(base, classes))
    depthwise = [n for n in delta_layer_names(specialist) if "depthwise" in n]
    assert len(depthwise) == 17  # every depthwise convolution of MobileNetV2 has a delta
    x = normalize_images(pixels(2), "tf")
    np.testing.assert_array_equal(specialist(x, training=False).numpy(),
                                  base(x, training=False).numpy()[:, classes])


def test_depthwise_deltas_materialize_as_the_replay_computes_them():
    base = perturbed(create_model("mobilenetv2", 6, (32, 32, 3), 0.35))
    forward = FunctionalForward(base)
    weights = forward.model_weights(base)
    rng = np.random.default_rng(3)
    deltas = {name: QuantizedTensor.quantize(rng.normal(0, 0.01, weights[name][0].shape), 4)
              for name in ("block_3_depthwise", "block_3_expand", "expanded_conv_depthwise")}
    head = [rng.normal(size=(weights["logits"][0].shape[0], 2)).astype(np.float32),
            np.zeros(2, np.float32)]
    delta_set = DeltaSet("s", 4, deltas, {"logits": head})
    x = normalize_images(pixels(2), "tf")
    for name, q in deltas.items():
        weights[name] = [weights[name][0] + q.dequantize(), *weights[name][1:]]
    weights["logits"] = head
    replayed = forward(tf.constant(x), weights).numpy()
    model = materialize(base, delta_set)
    np.testing.assert_allclose(model(x, training=False).numpy(), replayed, rtol=1e-5, atol=1e-5)
    assert not np.allclose(replayed, FunctionalForward(base)(x, forward.model_weights(base))
                           .numpy()[:, :2])


# ------------------------------------------------------------------------------ pretrained weights
def _saved_application(tmp_path, constructor, input_shape, name, seed=1, **kwargs):
    """A Keras application with random, perturbed weights, saved as Keras saves weights."""
    app = perturbed(getattr(keras.applications, constructor)(
        input_shape=input_shape, weights=None, **kwargs), seed)
    path = tmp_path / name
    app.save_weights(str(path))
    return app, path


def test_mobilenet_loads_a_notop_weights_file(tmp_path):
    app, path = _saved_application(tmp_path, "MobileNetV2", (64, 64, 3), "notop.h5",
                                   alpha=0.35, include_top=False)
    assert keras_applications.top_classes(path) is None
    model = create_model("mobilenetv2", 5, (64, 64, 3), 0.35, weights=str(path))
    for layer in app.layers:
        if layer.weights:
            for a, b in zip(layer.get_weights(), model.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    assert model.get_layer("bn_Conv1").momentum == 0.9
    x = normalize_images(pixels(2, 64), "tf")
    features = keras.Model(model.inputs, model.get_layer("features").input)
    np.testing.assert_allclose(features(x).numpy(), app(x).numpy(), rtol=1e-5, atol=1e-5)


def test_imagenet_head_rows_start_the_logits(tmp_path):
    app, path = _saved_application(tmp_path, "MobileNetV2", (64, 64, 3), "top.h5", alpha=0.35,
                                   include_top=True, classes=12, classifier_activation=None)
    assert keras_applications.top_classes(path) == 12
    rows = [7, 0, 11]
    model = create_model("mobilenetv2", 3, (64, 64, 3), 0.35, weights=str(path),
                         head_classes=rows)
    x = normalize_images(pixels(2, 64), "tf")
    np.testing.assert_allclose(model(x).numpy(), app(x).numpy()[:, rows], rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="3 head classes for a 4-class head"):
        create_model("mobilenetv2", 4, (64, 64, 3), 0.35, weights=str(path), head_classes=rows)


def test_imagenet_weights_are_copied_from_keras_reference(monkeypatch):
    reference = perturbed(keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, include_top=True, weights=None,
        classifier_activation=None))
    calls = []
    monkeypatch.setattr(keras_applications, "imagenet_reference",
                        lambda app, width, top: calls.append((app.name, width, top)) or reference)
    model = create_model("mobilenetv2", 2, (64, 64, 3), 0.35, weights="imagenet",
                         head_classes=[5, 9])
    assert calls == [("mobilenetv2", 0.35, True)]
    np.testing.assert_array_equal(model.get_layer("block_7_depthwise").get_weights()[0],
                                  reference.get_layer("block_7_depthwise").get_weights()[0])
    kernel, bias = reference.get_layer("predictions").get_weights()
    np.testing.assert_array_equal(model.get_layer("logits").get_weights()[0], kernel[:, [5, 9]])
    np.testing.assert_array_equal(model.get_layer("logits").get_weights()[1], bias[[5, 9]])


@pytest.mark.slow
def test_resnet50_folds_keras_bgr_caffe_weights_into_rgb(tmp_path):
    app, path = _saved_application(tmp_path, "ResNet50", (32, 32, 3), "resnet.h5",
                                   include_top=True, classes=10, classifier_activation=None)
    model = create_model("keras_resnet50", 10, (32, 32, 3), weights=str(path),
                         head_classes=list(range(10)))
    images = pixels(2)
    ours = model(normalize_images(images, "caffe"), training=False).numpy()
    theirs = app(keras.applications.resnet50.preprocess_input(images.astype(np.float32)),
                 training=False).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max())


def test_pretrained_settings_are_checked():
    check_pretrained("resnet8", "none", "imagenet")
    check_pretrained("mobilenetv2", "imagenet", "tf")
    with pytest.raises(ConfigError, match="needs a Keras Applications backbone"):
        check_pretrained("resnet8", "imagenet", "imagenet")
    with pytest.raises(ConfigError, match="data.normalization must be 'caffe'"):
        check_pretrained("keras_resnet50", "/some/file.h5", "imagenet")
    with pytest.raises(ConfigError, match="neither none, imagenet nor a weights file"):
        create_model("mobilenetv2", 3, (32, 32, 3), 0.35, weights="/no/such/file.h5")
    with pytest.raises(ConfigError, match="needs pretrained weights with their ImageNet top"):
        create_model("mobilenetv2", 3, (32, 32, 3), 0.35, head_classes=[0, 1, 2])


def test_imagenet_head_classes_are_imagenet_indices(monkeypatch):
    monkeypatch.setenv("SUPERSUB_DATA_DIR", "/nonexistent")
    from supersub_tf.data import class_lists

    monkeypatch.setattr(class_lists, "imagenet1k_classes",
                        lambda meta_dir=None: ["n0", "n1", "n2", "n3"])
    assert keras_applications.imagenet_head_classes(["n3", "n1"]) == [3, 1]
    with pytest.raises(ConfigError, match=r"\['n9'\] are no ImageNet-1k classes"):
        keras_applications.imagenet_head_classes(["n1", "n9"])


# ------------------------------------------------------------------------------ the main job
TWO_SUPERCLASSES = """name: two_tiny
classes: tiny_imagenet
superclasses:
  dog: n02084071
  feline: n02120997
"""


@pytest.mark.slow
@pytest.mark.parametrize("model,width,normalization,top", [
    ("mobilenetv2", 0.35, "tf", True), ("keras_resnet50", 1.0, "caffe", False)])
def test_pretrained_backbone_through_main_job_system_predict_and_exports(
        shared_data, tmp_path, model, width, normalization, top):
    """A pretrained-shaped backbone (a weights file saved here, Keras' layout) through the
    main job on Tiny ImageNet at 64 px: vanilla network, 4-bit delta specialists on its
    plain and depthwise convolutions, the stored system, SavedModel and LiteRT, and
    ``predict`` on each. MobileNetV2's file has a 1,000-way top whose rows for the
    hierarchy's classes start the vanilla head; ResNet50's has none (a new head) and its
    deltas start at stage 3."""
    import json

    import yaml

    from supersub_tf.cli import main
    from supersub_tf.config import load_config
    from supersub_tf.data.class_lists import imagenet1k_classes
    from supersub_tf.deltas.storage import load_system
    from supersub_tf.run import run_pipeline

    constructor = {"mobilenetv2": "MobileNetV2", "keras_resnet50": "ResNet50"}[model]
    kwargs = {"alpha": width} if model == "mobilenetv2" else {}
    if top:
        kwargs.update(include_top=True, classes=1000, classifier_activation=None)
    else:
        kwargs["include_top"] = False
    app, weights = _saved_application(tmp_path, constructor, (64, 64, 3), "weights.h5", **kwargs)
    (tmp_path / "two.yaml").write_text(TWO_SUPERCLASSES)
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump({
        "name": "pre", "output_dir": str(tmp_path / "runs"),
        "data": {"dataset": "tiny_imagenet", "preset": str(tmp_path / "two.yaml"),
                 "path": str(shared_data / "tiny-imagenet-67.zip"), "image_size": 64,
                 "normalization": normalization, "max_per_class": 6, "download": False},
        "train": {"model": model, "width": width, "epochs": 1, "batch_size": 16,
                  "learning_rate": 0.001, "warmup_epochs": 0, "verbose": "0",
                  "pretrained": str(weights), "pretrained_head": top,
                  "freeze_batchnorm": True},
        "networks": ["vanilla", "supersub"],
        "deltas": {"bits": [4], "epochs": 1, "from_stage": 0 if top else 3},
        "preview": {"images_per_superclass": 2},
        "export": {"output_dir": str(tmp_path / "saved_models"), "calibration_images": 4,
                   "savedmodel_routing": "hard"}}))
    run_dir = run_pipeline(load_config(config_path), log=lambda *_: None)

    system = load_system(run_dir / "systems" / "4bit")
    assert system.backbone.model == model
    assert system.backbone.normalization == normalization
    layers = set(next(iter(system.delta_sets.values())).deltas)
    if top:
        assert "block_5_depthwise" in layers and "Conv1" in layers
        vanilla = json.loads((run_dir / "vanilla" / "network.json").read_text())
        assert vanilla["train"]["pretrained_head"] is True
    else:
        assert "conv4_block1_1_conv" in layers and "conv3_block4_3_conv" not in layers
    # The vanilla network's trunk started from the file: the frozen batch norms kept it.
    bn = "bn_Conv1" if top else "conv1_bn"
    np.testing.assert_array_equal(system.generalist.get_layer(bn).get_weights()[2],
                                  app.get_layer(bn).get_weights()[2])
    record = json.loads((run_dir / "export.json").read_text())
    assert record["savedmodel"]["fine_agreement"] >= 0.9
    assert 0.0 <= record["tflite"]["comparison"]["fine_agreement"] <= 1.0

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    from PIL import Image

    for i, image in enumerate(pixels(3, 64, seed=5)):
        Image.fromarray(image).save(pictures / f"{i}.png")
    answers = {}
    for kind, folder in {"system": run_dir / "systems" / "4bit",
                         "savedmodel": tmp_path / "saved_models" / "pre",
                         "litert": tmp_path / "saved_models" / "pre_tflite"}.items():
        out = tmp_path / f"{kind}.json"
        assert main(["predict", str(folder), str(pictures), "--format", "json",
                     "--output", str(out)]) == 0
        answers[kind] = [r["class_id"] for r in json.loads(out.read_text())]
    assert answers["savedmodel"] == answers["system"]
    assert set(answers["litert"]) <= set(system.hierarchy.class_ids)
    if top:  # the head's classes are ImageNet classes
        assert set(system.hierarchy.class_ids) <= set(imagenet1k_classes())


def test_pretrained_settings_are_recorded_only_when_set():
    from supersub_tf.config import RunConfig, TrainConfig
    from supersub_tf.run.freshness import network_settings

    plain = network_settings(RunConfig(), "vanilla")
    assert not any(key in plain for key in ("train.pretrained", "train.pretrained_head",
                                            "train.freeze_batchnorm"))
    config = RunConfig(train=TrainConfig(model="mobilenetv2", pretrained="imagenet",
                                         freeze_batchnorm=True))
    settings = network_settings(config, "vanilla")
    assert settings["train.pretrained"] == "imagenet" and settings["train.freeze_batchnorm"]
    with pytest.raises(ConfigError, match="train.pretrained_head needs train.pretrained"):
        TrainConfig(pretrained_head=True)
