"""A Keras functional model as a pure TensorFlow function of its inputs and its weights.

The exported SavedModel runs the generalist and every specialist with *one* layer graph
but different weights, built per request as tensors (``W + delta``). Keras layers own
their variables, so calling them cannot do that without assigning to variables, which
is neither thread-safe under concurrent serving nor cheap. :class:`FunctionalForward`
instead reads the model's layer graph once (from ``model.get_config()``: layer classes,
their settings and which tensors feed which layer) and replays it with plain ``tf.nn``
ops on a weights mapping ``layer name -> [tensors in layer.weights order]``.

Only the layer types the registered architectures use are supported (convolutions,
depthwise convolutions, batch norm in inference mode, ReLU and Activation layers, Add,
Multiply, padding, pooling, global average pooling, Reshape, Dropout (the identity at
inference), Dense, and EfficientNet's Rescaling and Normalization), all channels-last
and float32; any other layer raises
:class:`~supersub_tf.errors.ConfigError` naming it when the forward pass is built, not
when it is first called. Every op here computes what the Keras layer computes in
inference mode, up to float rounding (batch norm: Keras may use the fused kernel).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from supersub_tf.errors import ConfigError

if TYPE_CHECKING:
    import tensorflow as tf
    import tf_keras as keras

# One layer's computation: (input tensors, its weights in layer.weights order) -> output.
LayerOp = Callable[[Sequence["tf.Tensor"], Sequence["tf.Tensor"]], "tf.Tensor"]
TensorKey = tuple[str, int, int]  # (layer name, node index, tensor index), as in get_config


@dataclasses.dataclass(frozen=True)
class Step:
    """One call of one layer in the replayed graph."""

    layer: str
    op: LayerOp
    inputs: tuple[TensorKey, ...]
    output: TensorKey


# ------------------------------------------------------------------------------ layer ops
def _activation(name: str, layer: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """The pure function of a Keras activation given by name (the few our models use)."""
    import tensorflow as tf

    # Keras' swish is tf.nn.silu and its sigmoid tf.sigmoid: the same kernels.
    table = {"linear": lambda x: x, "relu": tf.nn.relu, "relu6": tf.nn.relu6,
             "swish": tf.nn.silu, "silu": tf.nn.silu, "sigmoid": tf.sigmoid}
    if name not in table:
        raise ConfigError(f"layer {layer!r}: activation {name!r} is not supported by the "
                          f"functional forward pass (supported: {sorted(table)})")
    return table[name]


def _check_channels_last(config: Mapping[str, Any], layer: str) -> None:
    if config.get("data_format", "channels_last") != "channels_last":
        raise ConfigError(f"layer {layer!r}: only channels_last is supported, got "
                          f"{config['data_format']!r}")


def _conv2d(config: Mapping[str, Any], layer: str) -> LayerOp:
    import tensorflow as tf

    _check_channels_last(config, layer)
    if config.get("groups", 1) != 1:
        raise ConfigError(f"layer {layer!r}: grouped convolutions are not supported")
    strides, dilations = list(config["strides"]), list(config["dilation_rate"])
    padding, use_bias = config["padding"].upper(), config["use_bias"]
    activation = _activation(config["activation"], layer)

    def op(inputs, weights):
        y = tf.nn.convolution(inputs[0], weights[0], strides=strides, padding=padding,
                              dilations=dilations)
        if use_bias:
            y = tf.nn.bias_add(y, weights[1])
        return activation(y)

    return op


def _depthwise_conv2d(config: Mapping[str, Any], layer: str) -> LayerOp:
    import tensorflow as tf

    _check_channels_last(config, layer)
    strides = [1, *config["strides"], 1]
    dilations, padding = list(config["dilation_rate"]), config["padding"].upper()
    use_bias = config["use_bias"]
    activation = _activation(config["activation"], layer)

    def op(inputs, weights):
        y = tf.nn.depthwise_conv2d(inputs[0], weights[0], strides=strides, padding=padding,
                                   dilations=dilations)
        if use_bias:
            y = tf.nn.bias_add(y, weights[1])
        return activation(y)

    return op


def _batch_norm(config: Mapping[str, Any], layer: str) -> LayerOp:
    """Inference-mode batch norm with the moving statistics (weights: [gamma], [beta],
    moving mean, moving variance, as Keras orders them)."""
    import tensorflow as tf

    axis = list(config["axis"]) if not isinstance(config["axis"], int) else [config["axis"]]
    if axis not in ([-1], [3]):
        raise ConfigError(f"layer {layer!r}: batch norm over axis {axis} is not supported "
                          "(channels-last images only)")
    scale, center, epsilon = config["scale"], config["center"], float(config["epsilon"])

    def op(inputs, weights):
        weights = list(weights)
        gamma = weights.pop(0) if scale else None
        beta = weights.pop(0) if center else None
        mean, variance = weights
        x = inputs[0]
        if x.shape.rank == 4 and x.dtype == tf.float32:
            # The fused kernel, as Keras uses in inference mode: faster, same rounding.
            ones, zeros = tf.ones_like(mean), tf.zeros_like(mean)
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, ones if gamma is None else gamma, zeros if beta is None else beta,
                mean=mean, variance=variance, epsilon=epsilon, is_training=False)
            return y
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)

    return op


def _relu(config: Mapping[str, Any], layer: str) -> LayerOp:
    import tensorflow as tf

    max_value = config.get("max_value")
    max_value = None if max_value is None else float(np.asarray(max_value))
    if float(np.asarray(config.get("negative_slope", 0.0))) != 0.0 or \
            float(np.asarray(config.get("threshold", 0.0))) != 0.0:
        raise ConfigError(f"layer {layer!r}: ReLU with a negative slope or threshold is not "
                          "supported")

    def op(inputs, weights):
        y = tf.nn.relu(inputs[0])
        return y if max_value is None else tf.minimum(y, max_value)

    return op


def _add(config: Mapping[str, Any], layer: str) -> LayerOp:
    import tensorflow as tf

    return lambda inputs, weights: tf.add_n(list(inputs))


def _multiply(config: Mapping[str, Any], layer: str) -> LayerOp:
    def op(inputs, weights):
        y = inputs[0]
        for x in inputs[1:]:
            y = y * x
        return y

    return op


def _activation_layer(config: Mapping[str, Any], layer: str) -> LayerOp:
    activation = _activation(config["activation"], layer)
    return lambda inputs, weights: activation(inputs[0])


def _identity(config: Mapping[str, Any], layer: str) -> LayerOp:
    """Dropout: the identity in inference mode."""
    return lambda inputs, weights: inputs[0]


def _reshape(config: Mapping[str, Any], layer: str) -> LayerOp:
    import tensorflow as tf

    target = [int(d) for d in config["target_shape"]]
    return lambda inputs, weights: tf.reshape(inputs[0], [-1, *target])


def _rescaling(config: Mapping[str, Any], layer: str) -> LayerOp:
    import tensorflow as tf

    scale = np.asarray(config["scale"], np.float32)
    offset = np.asarray(config["offset"], np.float32)
    return lambda inputs, weights: inputs[0] * tf.constant(scale) + tf.constant(offset)


def _normalization(config: Mapping[str, Any], layer: str) -> LayerOp:
    """Keras' Normalization: ``(x - mean) / max(sqrt(variance), 1e-7)``, its mean and
    variance from its weights (an adapted layer: mean, variance, count) or its config."""
    import tensorflow as tf

    if config.get("invert"):
        raise ConfigError(f"layer {layer!r}: an inverting Normalization is not supported")
    axis = config.get("axis")
    if list(np.atleast_1d(axis)) not in ([-1], [3]):
        raise ConfigError(f"layer {layer!r}: Normalization over axis {axis} is not supported")
    fixed = config.get("mean") is not None

    def op(inputs, weights):
        if fixed:
            mean, variance = (np.asarray(config[k], np.float32) for k in ("mean", "variance"))
        else:
            mean, variance = weights[0], weights[1]
        return (inputs[0] - mean) / tf.maximum(tf.sqrt(variance), 1e-7)

    return op


def _global_average_pooling(config: Mapping[str, Any], layer: str) -> LayerOp:
    import tensorflow as tf

    _check_channels_last(config, layer)
    keepdims = bool(config.get("keepdims", False))
    return lambda inputs, weights: tf.reduce_mean(inputs[0], axis=[1, 2], keepdims=keepdims)


def _pooling(kind: str) -> Callable[[Mapping[str, Any], str], LayerOp]:
    def build(config: Mapping[str, Any], layer: str) -> LayerOp:
        import tensorflow as tf

        _check_channels_last(config, layer)
        pool = tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d
        size, strides = list(config["pool_size"]), list(config["strides"])
        padding = config["padding"].upper()
        return lambda inputs, weights: pool(inputs[0], size, strides, padding)

    return build


def _zero_padding(config: Mapping[str, Any], layer: str) -> LayerOp:
    import tensorflow as tf

    _check_channels_last(config, layer)
    (top, bottom), (left, right) = config["padding"]
    paddings = [[0, 0], [top, bottom], [left, right], [0, 0]]
    return lambda inputs, weights: tf.pad(inputs[0], paddings)


def _dense(config: Mapping[str, Any], layer: str) -> LayerOp:
    import tensorflow as tf

    use_bias = config["use_bias"]
    activation = _activation(config["activation"], layer)

    def op(inputs, weights):
        if inputs[0].shape.rank != 2:
            raise ConfigError(f"layer {layer!r}: Dense on rank-{inputs[0].shape.rank} inputs is "
                              "not supported (rank 2 only)")
        y = tf.matmul(inputs[0], weights[0])
        if use_bias:
            y = tf.nn.bias_add(y, weights[1])
        return activation(y)

    return op


# Exact Keras class name -> builder of its op. Exact names, not isinstance: subclasses
# (DeltaConv2D, Conv2DTranspose, QAT wrappers) compute something else and must fail.
_BUILDERS: dict[str, Callable[[Mapping[str, Any], str], LayerOp]] = {
    "Conv2D": _conv2d,
    "DepthwiseConv2D": _depthwise_conv2d,
    "BatchNormalization": _batch_norm,
    "ReLU": _relu,
    "Add": _add,
    "Multiply": _multiply,
    "Activation": _activation_layer,
    "Dropout": _identity,
    "Reshape": _reshape,
    "Rescaling": _rescaling,
    "Normalization": _normalization,
    "GlobalAveragePooling2D": _global_average_pooling,
    "MaxPooling2D": _pooling("max"),
    "AveragePooling2D": _pooling("average"),
    "ZeroPadding2D": _zero_padding,
    "Dense": _dense,
}
SUPPORTED_LAYERS = tuple(sorted(_BUILDERS))


# ------------------------------------------------------------------------------ the graph
def _layer_op(model: keras.Model, layer_config: Mapping[str, Any]) -> LayerOp:
    """The op of one layer, after checking its type (exact class) and float32 compute."""
    name, class_name = layer_config["config"]["name"], layer_config["class_name"]
    layer = model.get_layer(name)
    if class_name not in _BUILDERS or type(layer).__name__ != class_name:
        raise ConfigError(f"layer {name!r} of model {model.name!r} is a "
                          f"{type(layer).__name__}, which the functional forward pass does "
                          f"not support (supported: {', '.join(SUPPORTED_LAYERS)})")
    if layer.compute_dtype != "float32":
        raise ConfigError(f"layer {name!r} computes in {layer.compute_dtype}; only float32 "
                          "models are supported")
    return _BUILDERS[class_name](layer_config["config"], name)


def _steps(model: keras.Model) -> tuple[TensorKey, TensorKey, list[Step]]:
    """``(input key, output key, steps in a valid evaluation order)`` of ``model``."""
    config = model.get_config()
    if not isinstance(config, dict) or "layers" not in config or "input_layers" not in config:
        raise ConfigError(f"model {model.name!r} is not a functional model")
    if len(config["input_layers"]) != 1 or len(config["output_layers"]) != 1:
        raise ConfigError(f"model {model.name!r} must have exactly one input and one output")
    input_key = tuple(config["input_layers"][0])
    output_key = tuple(config["output_layers"][0])
    steps = []
    for layer_config in config["layers"]:
        if layer_config["class_name"] == "InputLayer":
            continue
        op = _layer_op(model, layer_config)
        name = layer_config["config"]["name"]
        for k, node in enumerate(layer_config["inbound_nodes"]):
            if any(entry[3] for entry in node if len(entry) > 3):
                raise ConfigError(f"layer {name!r} is called with keyword arguments, which "
                                  "the functional forward pass does not support")
            steps.append(Step(name, op, tuple(tuple(entry[:3]) for entry in node),
                              (name, k, 0)))
    return input_key, output_key, _topological(steps, input_key, model.name)


def _topological(steps: list[Step], input_key: TensorKey, model: str) -> list[Step]:
    """``steps`` reordered so every step comes after the steps producing its inputs."""
    ready, ordered, pending = {input_key}, [], list(steps)
    while pending:
        runnable = [s for s in pending if all(key in ready for key in s.inputs)]
        if not runnable:
            raise ConfigError(f"model {model!r}: layers {[s.layer for s in pending][:5]} have "
                              "inputs no layer produces")
        ordered += runnable
        ready |= {s.output for s in runnable}
        pending = [s for s in pending if s.output not in ready]
    return ordered


class FunctionalForward:
    """Replays a flat Keras functional model with plain TensorFlow ops and given weights.

    Build it once from the model (this checks every layer); call it with any weights of
    the right shapes, e.g. the generalist's own or a specialist's ``W + delta``, inside
    or outside a ``tf.function``. It holds no variables and mutates nothing, so one
    instance serves any number of weight sets and concurrent calls.

    Args:
        model: A flat functional tf_keras model with one input and one output, made of
            :data:`SUPPORTED_LAYERS` only (e.g. any :func:`supersub_tf.models.create_model`
            architecture).

    Raises:
        ConfigError: Naming the layer, when a layer type or setting is unsupported.
    """

    def __init__(self, model: keras.Model) -> None:
        self.model_name = model.name
        self.input_key, self.output_key, self.steps = _steps(model)
        used = {s.layer for s in self.steps}
        self.weight_shapes = {layer.name: [tuple(int(d) for d in w.shape) for w in layer.weights]
                              for layer in model.layers if layer.name in used and layer.weights}

    def model_weights(self, model: keras.Model) -> dict[str, list[np.ndarray]]:
        """The current weights of ``model``'s layers with weights, as this pass takes them."""
        return {name: [w.numpy() for w in model.get_layer(name).weights]
                for name in self.weight_shapes}

    def __call__(self, inputs: tf.Tensor,
                 weights: Mapping[str, Sequence[tf.Tensor | tf.Variable | np.ndarray]]
                 ) -> tf.Tensor:
        """The model's output for ``inputs`` computed with ``weights``.

        Args:
            inputs: What the model's input takes (float32 ``[N, H, W, C]`` images).
            weights: Layer name -> that layer's weights in ``layer.weights`` order, for
                every layer with weights (a layer given here but not in the model is
                ignored).

        Raises:
            KeyError: When a layer with weights is missing from ``weights``.
        """
        tensors = self.run(self.steps, {self.input_key: inputs}, weights)
        return tensors[self.output_key]

    def run(self, steps: Sequence[Step], tensors: Mapping[TensorKey, tf.Tensor],
            weights: Mapping[str, Sequence[tf.Tensor | tf.Variable | np.ndarray]]
            ) -> dict[TensorKey, tf.Tensor]:
        """Runs ``steps`` (in order) from the given tensors; returns every tensor known."""
        tensors = dict(tensors)
        for step in steps:
            args = [tensors[key] for key in step.inputs]
            tensors[step.output] = step.op(args, weights[step.layer]
                                           if step.layer in self.weight_shapes else ())
        return tensors

    def split(self, changed: Collection[str]) -> tuple[list[Step], list[Step], list[TensorKey]]:
        """Splits the pass where weights that differ only in layers ``changed`` start to
        matter: ``(prefix, suffix, boundary)``. The prefix's steps compute the same for
        any such weights (they neither are a changed layer nor depend on one), the suffix
        is the rest, and ``boundary`` lists the tensors the suffix takes from the prefix
        (the input among them when a suffix step reads it)."""
        dependent: set[TensorKey] = set()
        prefix, suffix = [], []
        for step in self.steps:
            if step.layer in changed or any(key in dependent for key in step.inputs):
                suffix.append(step)
                dependent.add(step.output)
            else:
                prefix.append(step)
        produced = {self.input_key} | {step.output for step in prefix}
        boundary = sorted({key for step in suffix for key in step.inputs if key in produced})
        return prefix, suffix, boundary
