"""Quantization-aware training of deltas with tensorflow-model-optimization (tfmot).

Each delta layer (:class:`~supersub_tf.deltas.layers.DeltaConv2D` or
:class:`~supersub_tf.deltas.layers.DeltaDepthwiseConv2D`) is wrapped in tfmot's
``QuantizeWrapperV2`` with a :class:`DeltaQuantizeConfig`: its ``delta`` is
fake-quantized to ``bits`` bits per output channel by ``LastValueQuantizer`` (symmetric,
narrow range: integer codes in ``[-(2^(k-1) - 1), 2^(k-1) - 1]`` times one scale per
channel) and nothing else is quantized: not the base kernel, not activations, not
outputs, and no other layer.

That last point needs :class:`DeltaOnlyScheme`. With tfmot's default 8-bit scheme,
``quantize_apply`` also quantizes layers nobody annotated: it inserts an input
``QuantizeLayer`` in front of an annotated layer fed by the model input, and adds output
quantization to every unannotated layer (ReLU, Add, ...) feeding an annotated one. The
scheme here has no layout transforms and a registry that supports no layer, so only the
annotated delta layers change.

Ranges: in training mode ``LastValueQuantizer`` sets each channel's range to the
current ``[-max|delta|, max|delta|]`` and stores it in the wrapper's ``delta_min`` /
``delta_max`` variables; in inference mode it uses the stored range. After the last
optimizer step the stored range is that of the delta one step earlier, so the delta a
trained QAT model uses at inference is not exactly ``QuantizedTensor.quantize(delta)``.
:func:`quantized_delta` therefore reads the stored range and reproduces the model's own
fake-quantized delta (codes and scales that dequantize to it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from supersub_tf.choices import check_bits
from supersub_tf.deltas.delta_set import QuantizedTensor, levels
from supersub_tf.deltas.layers import DeltaConv2D, is_delta_layer
from supersub_tf.deltas.layers import custom_objects as layer_objects

tfmot_keras = tfmot.quantization.keras


class Float32LastValueQuantizer(tfmot_keras.quantizers.LastValueQuantizer):
    """``LastValueQuantizer`` that fake-quantizes in float32 whatever the compute dtype.

    TensorFlow's fake-quant ops have only float32 kernels, so under a mixed-precision
    policy (where a layer reads its variables as float16) tfmot's quantizer fails with a
    dtype error. This one keeps its range variables float32 (not auto-cast), casts the
    (possibly float16) values to float32, quantizes, and returns float32; the layer
    casts the result to its compute dtype. Under a float32 policy it is tfmot's
    quantizer exactly (same variables, names and initial range of +-6).
    """

    def build(self, tensor_shape, name: str, layer: keras.layers.Layer) -> dict:
        shape = (tensor_shape[-1],) if self.per_axis else None
        return {key: layer.add_weight(f"{name}_{end}", shape=shape, dtype=tf.float32,
                                      initializer=keras.initializers.Constant(value),
                                      trainable=False, autocast=False)
                for key, end, value in (("min_var", "min", -6.0), ("max_var", "max", 6.0))}

    def __call__(self, inputs, training, weights, **kwargs):
        return super().__call__(tf.cast(inputs, tf.float32), training, weights, **kwargs)


@keras.saving.register_keras_serializable(package="supersub_tf")
class DeltaQuantizeConfig(tfmot_keras.QuantizeConfig):
    """Fake-quantizes a delta layer's ``delta`` per output channel (its last axis);
    nothing else. Serves DeltaConv2D and DeltaDepthwiseConv2D alike.

    Args:
        bits: Bit width of the delta codes, 2 to 8.
    """

    def __init__(self, bits: int = 8) -> None:
        self.bits = check_bits(bits)
        self.quantizer = Float32LastValueQuantizer(
            num_bits=self.bits, per_axis=True, symmetric=True, narrow_range=True)

    def get_weights_and_quantizers(self, layer: DeltaConv2D) -> list:
        return [(layer.delta, self.quantizer)]

    def get_activations_and_quantizers(self, layer: DeltaConv2D) -> list:
        return []

    def set_quantize_weights(self, layer: DeltaConv2D, quantize_weights: list) -> None:
        # Not ``layer.delta = ...``: that would untrack the variable (see layers.py).
        layer.use_quantized_delta(quantize_weights[0])

    def set_quantize_activations(self, layer: DeltaConv2D, quantize_activations: list) -> None:
        pass

    def get_output_quantizers(self, layer: DeltaConv2D) -> list:
        return []

    def get_config(self) -> dict:
        return {"bits": self.bits}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeltaQuantizeConfig) and other.bits == self.bits

    def __hash__(self) -> int:
        return hash(("DeltaQuantizeConfig", self.bits))


class _NoTransforms(tfmot_keras.QuantizeLayoutTransform):
    """Leaves the model's layout alone (no BN folding, no inserted QuantizeLayers)."""

    def apply(self, model: keras.Model, layer_quantize_map: dict) -> tuple[keras.Model, dict]:
        return model, layer_quantize_map


class _NoRegistry(tfmot_keras.QuantizeRegistry):
    """Supports no layer, so unannotated layers never get output quantization."""

    def supports(self, layer: keras.layers.Layer) -> bool:
        return False

    def get_quantize_config(self, layer: keras.layers.Layer):
        raise ValueError(f"layer {layer.name} is not annotated for quantization")


class DeltaOnlyScheme(tfmot_keras.QuantizeScheme):
    """A tfmot scheme that quantizes exactly the annotated layers, as their configs say."""

    def get_layout_transformer(self) -> tfmot_keras.QuantizeLayoutTransform:
        return _NoTransforms()

    def get_quantize_registry(self) -> tfmot_keras.QuantizeRegistry:
        return _NoRegistry()


def custom_objects() -> dict[str, type]:
    """Everything Keras needs to clone or load a model with (quantized) delta layers."""
    return {**layer_objects(), "DeltaQuantizeConfig": DeltaQuantizeConfig,
            "QuantizeWrapperV2": tfmot_keras.QuantizeWrapperV2}


def quantize_deltas(model: keras.Model, bits: int) -> keras.Model:
    """A QAT copy of ``model`` whose delta layers' deltas are fake-quantized to ``bits`` bits.

    Args:
        model: A flat functional model containing delta layers.
        bits: Bit width of the deltas, 2 to 8.

    Returns:
        A new model (own variables, same weight values and trainable flags) in which
        every delta layer is wrapped in a ``QuantizeWrapperV2`` named ``quant_<name>``;
        every other layer is unchanged and stays float.

    Raises:
        ValueError: On bad ``bits`` or a model without delta layers.
    """
    config = DeltaQuantizeConfig(check_bits(bits))
    if not any(is_delta_layer(layer) for layer in model.layers):
        raise ValueError(f"model {model.name} has no delta layers to quantize")

    def annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
        clone = layer.__class__.from_config(layer.get_config())
        if is_delta_layer(layer):
            return tfmot_keras.quantize_annotate_layer(clone, config)
        return clone

    with tfmot_keras.quantize_scope(custom_objects()):
        annotated = keras.models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
        quantized = tfmot_keras.quantize_apply(annotated, scheme=DeltaOnlyScheme())
        # quantize_apply reuses the unannotated layers of its intermediate models, so
        # they keep several inbound nodes and ``layer.output`` points into a discarded
        # graph; a last clone gives a model whose layers are its own.
        clean = keras.models.clone_model(quantized)
    clean.set_weights(quantized.get_weights())
    clean._name = model.name  # Keras models have no public setter for their name.
    return clean


def is_quantized_delta_layer(layer: keras.layers.Layer) -> bool:
    """True for a QuantizeWrapper around a delta layer."""
    return isinstance(layer, tfmot_keras.QuantizeWrapper) and is_delta_layer(layer.layer)


def delta_quantizer_state(wrapper: tfmot_keras.QuantizeWrapper) -> tuple[Any, Any, int]:
    """The delta variable of a quantized delta layer, its stored range and its bits.

    Returns:
        ``(delta, (min_var, max_var), bits)``: the trainable delta variable, the
        per-channel range variables ``LastValueQuantizer`` uses in inference mode,
        and the bit width.
    """
    # QuantizeWrapper keeps (weight, quantizer, quantizer variables) in _weight_vars;
    # tfmot has no public accessor for them.
    for weight, quantizer, variables in wrapper._weight_vars:  # noqa: SLF001
        if weight is wrapper.layer.delta:
            return weight, (variables["min_var"], variables["max_var"]), quantizer.num_bits
    raise ValueError(f"{wrapper.name} does not quantize its delta")


def fake_quantize(values: np.ndarray, range_min: np.ndarray, range_max: np.ndarray,
                  bits: int) -> np.ndarray:
    """``values`` fake-quantized per output channel (last axis) exactly as tfmot does it
    in inference mode: TensorFlow's ``fake_quant_with_min_max_vars_per_channel``."""
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        tf.constant(values, tf.float32), tf.constant(range_min, tf.float32),
        tf.constant(range_max, tf.float32), num_bits=bits, narrow_range=True).numpy()


def quantize_in_range(values: np.ndarray, range_max: np.ndarray, bits: int) -> QuantizedTensor:
    """Codes and scales reproducing tfmot's fake quantization of ``values`` in a
    symmetric range ``[-range_max, range_max]`` per output channel.

    The scale of a channel is ``range_max / (2^(k-1) - 1)`` (TensorFlow's nudged scale
    for a symmetric narrow range); values beyond the range are clipped and ties round
    up, as in TensorFlow's kernel, because the codes are read off TensorFlow's own
    fake-quantized output. Channels whose range is zero are all zero (scale 1).

    Raises:
        ValueError: When the codes do not reproduce the fake-quantized values (a range
            that is not symmetric).
    """
    values = np.asarray(values, np.float32)
    range_max = np.asarray(range_max, np.float32)
    if np.any(range_max < 0):
        raise ValueError("quantization ranges must be non-negative")
    scale = np.where(range_max > 0, (2 * range_max) / np.float32(2 * levels(bits)),
                     np.float32(1)).astype(np.float32)
    target = fake_quantize(values, -range_max, range_max, bits)
    codes = np.rint(target / scale).astype(np.int8)
    result = QuantizedTensor(codes, scale, bits)
    error = np.abs(result.dequantize() - target)
    if np.any(error > 1e-4 * scale):
        raise ValueError(f"codes do not reproduce the fake-quantized values "
                         f"(largest error {float(error.max()):.3g}); is the range symmetric?")
    return result


def quantized_delta(wrapper: tfmot_keras.QuantizeWrapper) -> QuantizedTensor:
    """The delta a trained QAT delta layer uses in inference mode, as codes and scales.

    Reads the range stored by ``LastValueQuantizer`` (see the module docstring), so
    ``quantized_delta(w).dequantize()`` equals the layer's fake-quantized delta up to
    float rounding (a few units in the last place of the scale). Under a
    mixed-precision policy the layer quantizes its delta as read in the compute dtype
    (float16), and so does this function.
    """
    delta, (range_min, range_max), bits = delta_quantizer_state(wrapper)
    peak = np.maximum(np.abs(range_min.numpy()), np.abs(range_max.numpy()))
    values = delta.numpy()
    if wrapper.compute_dtype != "float32":  # the layer quantizes the delta as it reads it
        values = values.astype(wrapper.compute_dtype).astype(np.float32)
    return quantize_in_range(values, peak, bits)
