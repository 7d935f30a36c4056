"""Delta specialists: DeltaConv2D, QAT of deltas with tfmot, extraction and materializing.

Everything runs on a tiny ResNet-8 (16x16 inputs, width 0.25) and random data; trained
specialists are cached per configuration so the file stays fast.
"""

from __future__ import annotations

import numpy as np
import pytest

import supersub_tf  # noqa: F401  (selects tf_keras before TensorFlow is imported)
import tensorflow as tf  # noqa: I001
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from supersub_tf.deltas.delta_set import QuantizedTensor
from supersub_tf.deltas.layers import DeltaConv2D
from supersub_tf.deltas.quantization import (
    DeltaQuantizeConfig, delta_quantizer_state, quantize_deltas, quantized_delta)
from supersub_tf.deltas.specialist import (
    build_delta_specialist, delta_layer_names, extract_delta_set, iter_delta_layers,
    materialize)
from supersub_tf.errors import ConfigError
from supersub_tf.models import create_model

NUM_SUBCLASSES = 4
SHAPE = (16, 16, 3)
ALL_CONVS = ["stem_conv", "stage1_block1_1_conv", "stage1_block1_2_conv",
             "stage2_block1_1_conv", "stage2_block1_2_conv", "stage2_block1_proj_conv",
             "stage3_block1_1_conv", "stage3_block1_2_conv", "stage3_block1_proj_conv"]


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def generalist() -> keras.Model:
    """A ResNet-8 whose batch norms have non-trivial parameters and statistics, so
    'unchanged' and 'equal to the generalist' mean something."""
    keras.utils.set_random_seed(0)
    model = create_model("resnet8", 6, SHAPE, width=0.25)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    return model


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """48 random images with one-hot targets over the specialist's subclasses."""
    rng = np.random.default_rng(1)
    images = rng.normal(size=(48, *SHAPE)).astype(np.float32)
    labels = rng.integers(0, NUM_SUBCLASSES, 48)
    return images, np.eye(NUM_SUBCLASSES, dtype=np.float32)[labels]


@pytest.fixture(scope="module")
def trained(generalist, data):
    """``trained(bits, from_stage=0, train_batchnorm=True)``: a specialist trained for
    three epochs of SGD, built once per configuration."""
    cache = {}

    def get(bits, from_stage=0, train_batchnorm=True):
        key = (bits, from_stage, train_batchnorm)
        if key not in cache:
            keras.utils.set_random_seed(2)
            model = build_delta_specialist(generalist, NUM_SUBCLASSES, bits=bits,
                                           from_stage=from_stage,
                                           train_batchnorm=train_batchnorm)
            model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                          keras.losses.CategoricalCrossentropy(from_logits=True))
            model.fit(*data, batch_size=16, epochs=3, verbose=0)
            cache[key] = model
        return cache[key]

    return get


def features(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The model's ``"features"`` output in inference mode."""
    trunk = keras.Model(model.inputs, model.get_layer("features").output)
    return trunk(images, training=False).numpy()


def weights_by_layer(model: keras.Model) -> dict[str, list[np.ndarray]]:
    """Every non-delta layer's weights by name (QAT wrappers unwrapped)."""
    delta_layers = {id(layer) for layer, _ in iter_delta_layers(model)}
    return {layer.name: layer.get_weights() for layer in model.layers
            if id(layer) not in delta_layers and layer.weights}


def model_delta(layer) -> tuple[np.ndarray, np.ndarray]:
    """The delta a layer computes with in inference mode, and the per-channel scale.

    For a QAT layer, the output of the wrapper's own LastValueQuantizer with its stored
    range (what the wrapper feeds the convolution); for a float layer, the variable.
    """
    if isinstance(layer, DeltaConv2D):
        return layer.delta.numpy(), np.ones(layer.filters, np.float32)
    delta, (range_min, range_max), bits = delta_quantizer_state(layer)
    quantizer = tfmot.quantization.keras.quantizers.LastValueQuantizer(
        num_bits=bits, per_axis=True, symmetric=True, narrow_range=True)
    fake = quantizer(delta, False, weights={"min_var": range_min, "max_var": range_max})
    return fake.numpy(), range_max.numpy() / (2 ** (bits - 1) - 1)


# ----------------------------------------------------------------------------- DeltaConv2D

def _delta_conv(**kwargs) -> DeltaConv2D:
    layer = DeltaConv2D(5, 3, strides=2, padding="same", use_bias=True, activation="relu",
                        name="dc", **kwargs)
    layer.build((None, 9, 9, 4))
    return layer


def test_delta_conv_computes_with_base_plus_delta():
    rng = np.random.default_rng(3)
    layer = _delta_conv()
    base, delta, bias = (rng.normal(size=(3, 3, 4, 5)), rng.normal(size=(3, 3, 4, 5)),
                         rng.normal(size=5))
    layer.set_base(base, bias)
    layer.delta.assign(delta)
    reference = keras.layers.Conv2D(5, 3, strides=2, padding="same", activation="relu")
    reference.build((None, 9, 9, 4))
    reference.set_weights([base + delta, bias])
    images = rng.normal(size=(2, 9, 9, 4)).astype(np.float32)
    np.testing.assert_allclose(layer(images), reference(images), atol=1e-5)


def test_zero_delta_is_the_base_conv_and_only_delta_trains():
    rng = np.random.default_rng(4)
    layer = _delta_conv()
    base, bias = rng.normal(size=(3, 3, 4, 5)), rng.normal(size=5)
    layer.set_base(base, bias)
    assert not layer.delta.numpy().any()
    reference = keras.layers.Conv2D(5, 3, strides=2, padding="same", activation="relu")
    reference.build((None, 9, 9, 4))
    reference.set_weights([base, bias])
    images = rng.normal(size=(2, 9, 9, 4)).astype(np.float32)
    np.testing.assert_array_equal(layer(images), reference(images))
    assert [id(w) for w in layer.trainable_weights] == [id(layer.delta)]
    assert {id(w) for w in layer.non_trainable_weights} == {id(layer.base_kernel),
                                                            id(layer.bias)}


def test_delta_conv_config_round_trip():
    layer = _delta_conv()
    clone = DeltaConv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == "supersub_tf>DeltaConv2D"
    assert isinstance(keras.saving.deserialize_keras_object(serialized), DeltaConv2D)
    from_plain = DeltaConv2D.from_conv(keras.layers.Conv2D(7, 1, name="c"))
    assert (from_plain.filters, from_plain.kernel_size, from_plain.name) == (7, (1, 1), "c")


def test_delta_conv_weights_survive_save_and_load(tmp_path):
    def build() -> keras.Model:
        inputs = keras.Input((8, 8, 3))
        return keras.Model(inputs, DeltaConv2D(4, 3, name="dc")(inputs))

    rng = np.random.default_rng(5)
    model = build()
    model.get_layer("dc").set_base(rng.normal(size=(3, 3, 3, 4)), rng.normal(size=4))
    model.get_layer("dc").delta.assign(rng.normal(size=(3, 3, 3, 4)))
    model.save_weights(tmp_path / "m.weights.h5")
    restored = build()
    restored.load_weights(tmp_path / "m.weights.h5")
    for saved, loaded in zip(model.weights, restored.weights, strict=True):
        assert saved.name == loaded.name
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())


# ----------------------------------------------------------------------------- building

@pytest.mark.parametrize("bits", [None, 8])
def test_fresh_specialist_computes_the_generalists_features(generalist, data, bits):
    specialist = build_delta_specialist(generalist, NUM_SUBCLASSES, bits=bits)
    np.testing.assert_array_equal(features(specialist, data[0]), features(generalist, data[0]))
    assert specialist.output_shape == (None, NUM_SUBCLASSES)
    assert delta_layer_names(specialist) == ALL_CONVS
    head = specialist.get_layer("logits")
    assert head.dtype == "float32"
    assert not any(v is w for v in specialist.weights for w in generalist.weights)


@pytest.mark.parametrize("bits", [None, 8])
def test_only_deltas_head_and_region_batchnorm_are_trainable(generalist, bits):
    specialist = build_delta_specialist(generalist, NUM_SUBCLASSES, bits=bits)
    expected = [inner.delta for _, inner in iter_delta_layers(specialist)]
    expected += specialist.get_layer("logits").trainable_weights
    for layer in specialist.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            expected += [layer.gamma, layer.beta]
    assert {id(v) for v in specialist.trainable_weights} == {id(v) for v in expected}
    assert len(specialist.trainable_weights) == len(ALL_CONVS) * 3 + 2
    if bits is None:
        assert not any(isinstance(layer, tfmot.quantization.keras.QuantizeWrapper)
                       for layer in specialist.layers)


@pytest.mark.parametrize("bits", [None, 8])
def test_training_changes_only_deltas_head_and_batchnorm(generalist, trained, bits):
    specialist = trained(bits)
    for layer, inner in iter_delta_layers(specialist):
        source = generalist.get_layer(inner.name)
        np.testing.assert_array_equal(inner.base_kernel.numpy(), source.kernel.numpy())
        assert np.abs(model_delta(layer)[0]).max() > 0, inner.name
    general = weights_by_layer(generalist)
    for name, weights in weights_by_layer(specialist).items():
        if name == "logits":
            continue
        assert name.endswith("_bn"), name  # nothing else outside delta layers has weights
        # trained gamma/beta and updated statistics
        assert not np.array_equal(weights[0], general[name][0]), name
        assert not np.array_equal(weights[2], general[name][2]), name


def test_quantize_deltas_leaves_every_other_layer_float(generalist):
    specialist = build_delta_specialist(generalist, NUM_SUBCLASSES, bits=None)
    quantized = quantize_deltas(specialist, 6)
    wrappers = [layer for layer in quantized.layers
                if isinstance(layer, tfmot.quantization.keras.QuantizeWrapper)]
    assert [w.name for w in wrappers] == [f"quant_{name}" for name in ALL_CONVS]
    assert all(w.quantize_config == DeltaQuantizeConfig(6) for w in wrappers)
    assert "QuantizeLayer" not in {type(layer).__name__ for layer in quantized.layers}
    assert [type(layer) for layer in quantized.layers if layer not in wrappers] == [
        type(layer) for layer in specialist.layers if not isinstance(layer, DeltaConv2D)]
    # every layer has one node in this model, so .output works (trunks, features)
    assert all(len(layer._inbound_nodes) == 1 for layer in quantized.layers[1:])


def test_bad_arguments_are_refused(generalist):
    with pytest.raises(ConfigError, match="from_stage=4"):
        build_delta_specialist(generalist, NUM_SUBCLASSES, from_stage=4)
    with pytest.raises(ConfigError, match="num_classes"):
        build_delta_specialist(generalist, 0)
    with pytest.raises(ValueError, match="bits"):
        build_delta_specialist(generalist, NUM_SUBCLASSES, bits=9)


# ----------------------------------------------------------------------------- QAT

@pytest.mark.parametrize("bits, at_most", [(4, 15), (2, 3)])
def test_low_bit_deltas_take_few_values_per_channel(trained, bits, at_most):
    for layer, inner in iter_delta_layers(trained(bits)):
        delta, _ = model_delta(layer)
        counts = [np.unique(delta[..., c]).size for c in range(delta.shape[-1])]
        assert max(counts) <= at_most, inner.name
        assert delta.any(), inner.name


def test_eight_bit_deltas_take_many_values(trained):
    counts = [np.unique(model_delta(layer)[0][..., c]).size
              for layer, _ in iter_delta_layers(trained(8))
              for c in range(layer.layer.filters)]
    assert max(counts) > 16


@pytest.mark.parametrize("bits", [8, 4])
def test_extracted_codes_reproduce_the_models_fake_quantized_delta(trained, bits):
    for layer, inner in iter_delta_layers(trained(bits)):
        fake, scale = model_delta(layer)
        stored = quantized_delta(layer)
        assert stored.bits == bits and stored.codes.dtype == np.int8
        assert np.abs(stored.codes).max() <= 2 ** (bits - 1) - 1
        np.testing.assert_allclose(stored.scales, scale, rtol=1e-6)
        np.testing.assert_allclose(stored.dequantize(), fake, rtol=0, atol=1e-5 * scale.max())


def test_quantizing_the_final_delta_matches_a_training_mode_fake_quant(trained):
    """``QuantizedTensor.quantize`` uses the range of the delta itself, as tfmot does in
    training mode; the codes agree except where a value sits on a rounding tie (TF
    rounds half up after shifting by the range minimum, numpy half to even)."""
    quantizer = tfmot.quantization.keras.quantizers.LastValueQuantizer(
        num_bits=4, per_axis=True, symmetric=True, narrow_range=True)
    mismatched = total = 0
    for layer, _ in iter_delta_layers(trained(4)):
        delta = layer.layer.delta.numpy()
        channels = delta.shape[-1]
        ranges = {"min_var": tf.Variable(np.zeros(channels, np.float32)),
                  "max_var": tf.Variable(np.zeros(channels, np.float32))}
        fake = quantizer(tf.constant(delta), True, weights=ranges).numpy()
        ours = QuantizedTensor.quantize(delta, 4)
        error = np.abs(ours.dequantize() - fake) / ours.scales
        assert error.max() <= 1 + 1e-4
        mismatched += int((error > 1e-4).sum())
        total += delta.size
    assert mismatched <= total // 1000


# ----------------------------------------------------------------------------- regions

def test_from_stage_three_adapts_only_stage_three(generalist, trained):
    specialist = trained(8, from_stage=3)
    assert delta_layer_names(specialist) == [n for n in ALL_CONVS if n.startswith("stage3_")]
    general = weights_by_layer(generalist)
    for name, weights in weights_by_layer(specialist).items():
        if name.startswith("stage3_") or name == "logits":
            continue
        for ours, theirs in zip(weights, general[name], strict=True):
            np.testing.assert_array_equal(ours, theirs, err_msg=name)
    stage3_bn = specialist.get_layer("stage3_block1_1_bn").get_weights()
    assert not np.array_equal(stage3_bn[2], general["stage3_block1_1_bn"][2])
    assert specialist.get_layer("stage2_block1_1_bn").trainable is False


def test_frozen_batchnorm_stays_the_generalists(generalist, trained):
    specialist = trained(None, from_stage=3, train_batchnorm=False)
    general = weights_by_layer(generalist)
    for name, weights in weights_by_layer(specialist).items():
        if name != "logits":
            for ours, theirs in zip(weights, general[name], strict=True):
                np.testing.assert_array_equal(ours, theirs, err_msg=name)
    assert set(extract_delta_set(specialist, "dog", None).owned) == {"logits"}


# ----------------------------------------------------------------------------- extraction

@pytest.mark.parametrize("bits", [None, 8, 4])
def test_materialized_model_matches_the_specialist(generalist, trained, data, bits):
    specialist = trained(bits)
    delta_set = extract_delta_set(specialist, "dog", bits)
    assert (delta_set.superclass, delta_set.bits) == ("dog", bits)
    assert list(delta_set.deltas) == ALL_CONVS
    bns = [layer.name for layer in generalist.layers
           if isinstance(layer, keras.layers.BatchNormalization)]
    assert sorted(delta_set.owned) == sorted(bns + ["logits"])
    assert [w.shape for w in delta_set.owned["stem_bn"]] == [
        w.shape for w in generalist.get_layer("stem_bn").get_weights()]
    plain = materialize(generalist, delta_set)
    assert not any(isinstance(layer, (DeltaConv2D, tfmot.quantization.keras.QuantizeWrapper))
                   for layer in plain.layers)
    np.testing.assert_allclose(plain(data[0], training=False),
                               specialist(data[0], training=False), atol=1e-4)
    # the generalist itself is untouched
    assert generalist.output_shape == (None, 6)


def test_extraction_refuses_other_bits_for_a_qat_specialist(trained):
    with pytest.raises(ValueError, match="4-bit"):
        extract_delta_set(trained(4), "dog", 8)
    floats = extract_delta_set(trained(4), "dog", None)
    assert floats.deltas["stem_conv"].codes.dtype == np.float32


def test_float_specialist_can_be_quantized_after_training(generalist, trained, data):
    delta_set = extract_delta_set(trained(None), "dog", 8)
    assert all(d.bits == 8 and d.codes.dtype == np.int8 for d in delta_set.deltas.values())
    plain = materialize(generalist, delta_set)
    exact = materialize(generalist, extract_delta_set(trained(None), "dog", None))
    np.testing.assert_allclose(plain(data[0], training=False), exact(data[0], training=False),
                               atol=0.1)


def test_qat_specialist_trains_under_mixed_precision(data):
    """tfmot's fake-quant ops are float32-only; the delta quantizer copes with float16."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        generalist = create_model("resnet8", 6, SHAPE, width=0.25)
        specialist = build_delta_specialist(generalist, NUM_SUBCLASSES, bits=4)
        specialist.compile(keras.optimizers.SGD(0.05),
                           keras.losses.CategoricalCrossentropy(from_logits=True))
        specialist.fit(*data, batch_size=16, epochs=1, verbose=0)
        plain = materialize(generalist, extract_delta_set(specialist, "dog", 4))
        np.testing.assert_allclose(plain(data[0], training=False),
                                   specialist(data[0], training=False), atol=2e-2)
    finally:
        keras.mixed_precision.set_global_policy("float32")
