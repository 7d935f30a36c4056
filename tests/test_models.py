"""The model registry, architectures, head helpers and tfmot quantization of every model.

Each registered model is built once (32x32 inputs, the smallest MobileNetV2 width) and
shared by the build, training and quantization tests, which are parametrized over
``list_models()`` (stride-2-stem variants at two depths) so a new registration is
tested automatically.
"""

import subprocess
import sys

import numpy as np
import pytest

import supersub_tf  # noqa: F401  (selects tf_keras before TensorFlow is imported)
from supersub_tf.errors import ConfigError
from supersub_tf.models import (copy_model, create_model, flatness_problems, list_models,
                                register_model, trunk, with_head)
from supersub_tf.models.blocks import scale_channels
from supersub_tf.models.resnet_cifar import DEPTHS, blocks_per_stage

import tf_keras as keras  # noqa: E402,I001  (after supersub_tf)

NUM_CLASSES = 5
INPUT_SHAPE = (32, 32, 3)
SMALL_WIDTH = {"mobilenetv2": 0.35}
# Trainable parameters of torchvision's models with 1000 classes.
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "mobilenetv2": 3_504_872}

_BUILT = {}


def built(name):
    """The test instance of a registered model, built once per test module."""
    if name not in _BUILT:
        _BUILT[name] = create_model(name, NUM_CLASSES, INPUT_SHAPE, SMALL_WIDTH.get(name, 1.0))
    return _BUILT[name]


def images(n=2, shape=INPUT_SHAPE, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def trainable_params(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def kernel_sizes(model):
    """Kernel sizes of the model's regular (not depthwise) convolutions."""
    return [layer.kernel_size for layer in model.layers
            if type(layer) is keras.layers.Conv2D]


def test_registry_lists_all_architectures():
    expected = ({f"resnet{d}" for d in DEPTHS} | {f"resnet{d}_s2" for d in DEPTHS}
                | {"resnet18", "resnet34", "resnet50", "mobilenetv2", "keras_resnet50",
                   "efficientnetb0"})
    assert set(list_models()) == expected
    assert list_models() == sorted(list_models())


def test_listing_models_does_not_import_tensorflow():
    code = ("import sys, supersub_tf.models as m; assert m.list_models(); "
            "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


#: Every architecture, with the stride-2-stem variants at two depths only (one builder
#: makes all of them; the others differ from these in depth alone).
CHECKED = [m for m in list_models() if not m.endswith("_s2") or m in ("resnet8_s2", "resnet20_s2")]


@pytest.mark.parametrize("name", CHECKED, ids=CHECKED)
def test_builds_flat_with_features_and_logits(name):
    model = built(name)
    assert model.name == name
    assert flatness_problems(model) == []
    assert not any(isinstance(layer, (keras.Model, keras.layers.Lambda)) for layer in model.layers)
    assert len(model.inputs) == 1 and len(model.outputs) == 1
    features, logits = model.get_layer("features"), model.get_layer("logits")
    assert isinstance(features, keras.layers.GlobalAveragePooling2D)
    assert isinstance(logits, keras.layers.Dense) and model.layers[-1] is logits
    assert logits.activation is keras.activations.linear and logits.dtype == "float32"
    assert logits.units == NUM_CLASSES
    out = model(images(), training=False)
    assert out.shape == (2, NUM_CLASSES) and out.dtype == "float32"
    assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("name", CHECKED, ids=CHECKED)
def test_trains_one_step(name):
    # Tracing the train function of the deepest models takes 5-10 s each on 2 cores, so
    # most run the step eagerly; resnet20 runs the compiled graph like real training.
    model = built(name)
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="sgd", loss=loss_fn, run_eagerly=name != "resnet20")
    loss = model.train_on_batch(images(4), np.arange(4) % NUM_CLASSES)
    assert np.isfinite(loss)
    after = model.trainable_weights
    assert not np.allclose(before[0], after[0].numpy())  # the stem kernel moved
    assert not np.allclose(before[-1], after[-1].numpy())  # and the logits bias


#: Deep backbones take 3-12 s each to rewrite for QAT: the slow tier covers them.
# The fast tier quantizes the small ResNets (one per family); the rest are slow.
SLOW_TO_QUANTIZE = {"resnet14", "resnet18", "resnet32", "resnet34", "resnet44", "resnet50",
                    "resnet56", "resnet110", "mobilenetv2", "keras_resnet50", "efficientnetb0"}


def test_stride_two_stem_halves_the_resolution_at_the_same_parameters():
    plain, s2 = (create_model(name, 10, (64, 64, 3)) for name in ("resnet8", "resnet8_s2"))
    assert plain.count_params() == s2.count_params()
    assert plain.get_layer("features").input_shape[1:3] == (16, 16)
    assert s2.get_layer("features").input_shape[1:3] == (8, 8)


#: Whole-network QAT (tfmot's quantize_model) has no config for EfficientNet's in-model
#: Rescaling and Normalization layers; the project quantizes only delta specialists' deltas,
#: which are plain and depthwise convolutions.
WHOLE_QAT = [n for n in CHECKED if n != "efficientnetb0"]


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TO_QUANTIZE else n
    for n in WHOLE_QAT], ids=WHOLE_QAT)
def test_quantize_model(name):
    import tensorflow_model_optimization as tfmot

    quantized = tfmot.quantization.keras.quantize_model(built(name))
    out = quantized(images(), training=False)
    assert out.shape == (2, NUM_CLASSES)
    assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("depth", DEPTHS, ids=[f"resnet{d}" for d in DEPTHS])
def test_cifar_resnet_depth_structure(depth):
    sizes = kernel_sizes(built(f"resnet{depth}"))
    # Stem + 6n block convolutions, plus the classifier, make the 6n+2 layers ...
    assert sizes.count((3, 3)) == 6 * blocks_per_stage(depth) + 1 == depth - 1
    # ... and the two stage transitions have 1x1 projection shortcuts.
    assert sizes.count((1, 1)) == 2 and len(sizes) == depth + 1


def test_resnet20_shape_and_parameters():
    model = create_model("resnet20", 10)
    assert 260_000 < trainable_params(model) < 300_000  # 0.27M, as in He et al. 2016
    assert model.get_layer("stage1_block1_out").output.shape[1:] == (32, 32, 16)
    assert model.get_layer("stage2_block1_out").output.shape[1:] == (16, 16, 32)
    assert model.get_layer("stage3_block3_out").output.shape[1:] == (8, 8, 64)
    assert model.get_layer("stage2_block1_proj_conv").strides == (2, 2)
    assert all(layer.momentum == 0.9 for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization))
    conv = model.get_layer("stem_conv")
    assert not conv.use_bias and conv.kernel_regularizer is None
    assert isinstance(conv.kernel_initializer, keras.initializers.HeNormal)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_imagenet_models_match_torchvision_parameter_counts(name):
    assert trainable_params(create_model(name, 1000)) == TORCHVISION_PARAMS[name]


def test_imagenet_resnet_downsamples_by_32():
    model = create_model("resnet18", 3, (64, 64, 3), width=0.25)
    assert model.get_layer("stem_pool").output.shape[1:] == (16, 16, 16)
    assert model.get_layer("features").input.shape[1:] == (2, 2, 128)


def test_width_scales_channels():
    assert [scale_channels(c, 1.0) for c in (16, 32, 64)] == [16, 32, 64]
    assert [scale_channels(c, 0.5) for c in (16, 32, 64)] == [8, 16, 32]
    assert scale_channels(16, 0.01) == 4 and scale_channels(16, 1.3) == 20
    narrow = create_model("resnet8", 3, width=0.5)
    assert trunk(narrow).output.shape == (None, 32)
    assert create_model("resnet8", 3, width=2).get_layer("stem_conv").filters == 32


def test_mobilenet_is_reinitialised_and_flat():
    model = built("mobilenetv2")
    assert model.get_layer("Conv1").kernel_initializer.__class__ is keras.initializers.HeNormal
    assert model.get_layer("bn_Conv1").momentum == 0.9
    assert trunk(model).output.shape == (None, 1280)


def test_logits_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = create_model("resnet8", 3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("stem_conv").compute_dtype == "float16"
    assert model.get_layer("features").output.dtype == "float16"
    assert model.output.dtype == "float32"


def test_trunk_shares_layers():
    model = built("resnet20")
    features = trunk(model)
    assert features.output.shape == (None, 64)
    assert features.get_layer("stem_conv") is model.get_layer("stem_conv")
    assert flatness_problems(features) == []
    assert "logits" not in [layer.name for layer in features.layers]


def test_with_head_shares_trunk_and_has_new_head():
    model = create_model("resnet8", NUM_CLASSES)
    headed = with_head(model, 7, name="specialist")
    assert headed.name == "specialist" and flatness_problems(headed) == []
    assert headed.output.shape == (None, 7) and headed.output.dtype == "float32"
    assert headed.get_layer("logits") is not model.get_layer("logits")
    assert headed.get_layer("logits").units == 7
    assert headed.get_layer("stem_conv") is model.get_layer("stem_conv")
    x = images()
    assert np.allclose(trunk(model)(x), trunk(headed)(x))
    kernel = model.get_layer("stem_conv").kernel
    kernel.assign(kernel * 2.0 + 0.1)  # changes both models: one variable
    assert headed.get_layer("stem_conv").kernel is kernel
    assert np.allclose(trunk(model)(x), trunk(headed)(x))
    # The new head's variables are its own; the old head is untouched.
    head_ids = {id(w) for w in headed.get_layer("logits").weights}
    assert not head_ids & {id(w) for w in model.weights}
    assert model.output.shape == (None, NUM_CLASSES)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="sgd", loss=loss_fn)
    assert np.isfinite(model.train_on_batch(x, np.array([0, 1])))


def test_with_head_model_is_quantizable():
    import tensorflow_model_optimization as tfmot

    headed = with_head(create_model("resnet8", NUM_CLASSES), 2)
    assert tfmot.quantization.keras.quantize_model(headed)(images()).shape == (2, 2)


def test_copy_model_is_independent():
    model = built("resnet14")
    copy = copy_model(model, name="copy")
    x = images()
    assert copy.name == "copy" and model.name == "resnet14"
    assert np.allclose(model(x, training=False), copy(x, training=False), atol=1e-5)
    assert not {id(w) for w in copy.weights} & {id(w) for w in model.weights}
    original = model.get_layer("stem_conv").kernel.numpy().copy()
    copy.get_layer("stem_conv").kernel.assign(np.zeros_like(original))
    assert np.array_equal(model.get_layer("stem_conv").kernel.numpy(), original)
    assert not np.allclose(model(x, training=False), copy(x, training=False))


def test_unknown_model_lists_registered_ones():
    with pytest.raises(ConfigError, match="model 'resnet21' is not a registered backbone") as error:
        create_model("resnet21", 10)
    assert all(name in str(error.value) for name in list_models())


@pytest.mark.parametrize("width", [0.6, 2.0, 0.25])
def test_mobilenet_rejects_unpublished_width(width):
    with pytest.raises(ConfigError, match="alpha"):
        create_model("mobilenetv2", 10, width=width)


def test_mobilenet_rejects_small_inputs():
    with pytest.raises(ConfigError, match="32x32"):
        create_model("mobilenetv2", 10, (16, 16, 3), width=0.35)


@pytest.mark.parametrize("kwargs", [
    {"num_classes": 0}, {"num_classes": 2.0}, {"num_classes": True},
    {"input_shape": (32, 32)}, {"input_shape": (32, 0, 3)}, {"input_shape": "32"},
    {"width": 0}, {"width": -1.0}, {"width": float("nan")}, {"width": "1"},
    {"dropout": 0.5},
], ids=lambda kwargs: "-".join(f"{k}={v}" for k, v in kwargs.items()))
def test_invalid_arguments_are_config_errors(kwargs):
    args = {"num_classes": 10, **kwargs}
    with pytest.raises(ConfigError):
        create_model("resnet8", **args)


def test_arguments_from_configs_are_accepted():
    model = create_model("resnet8", np.int64(4), [40, 40, 3], width=1, model_name="generalist",
                         bn_momentum=0.99)
    assert model.name == "generalist" and model.input_shape == (None, 40, 40, 3)
    assert model.get_layer("stem_bn").momentum == 0.99


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet20")(lambda num_classes, input_shape, width: None)
