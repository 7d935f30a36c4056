"""Keras layers whose kernel is a frozen base plus a small trainable delta.

A specialist reuses the generalist's convolution kernels unchanged and learns only
``delta`` on top of each: ``W_specialist = W_generalist + delta``. :class:`DeltaConv2D`
holds both as its own weights:

* ``base_kernel``: non-trainable, copied from the generalist (never a variable shared
  with it: tfmot's ``quantize_apply`` clones models and breaks on shared variables);
* ``delta``: trainable, initialised to zero, so a fresh specialist computes exactly
  what the generalist computes;
* ``bias`` (only with ``use_bias``): non-trainable, copied from the generalist, since a
  delta specialist changes kernels only (the architectures here have no conv biases).

Both convolution kinds the backbones use get a delta variant: :class:`DeltaConv2D` and
:class:`DeltaDepthwiseConv2D` (MobileNetV2 and EfficientNet are mostly depthwise
convolutions). Heads are replaced outright rather than given deltas. A depthwise
kernel is ``[kh, kw, channels, multiplier]``, so its delta's per-output-channel
quantization (the last axis, as for every delta) has one scale per multiplier: one
scale per layer for the multiplier-1 networks here.

For quantization-aware training (:mod:`supersub_tf.deltas.quantization`), a
``QuantizeConfig`` hands the layer the fake-quantized delta through
:meth:`DeltaConv2D.use_quantized_delta` instead of overwriting the ``delta`` attribute
(which is what tfmot's built-in configs do with ``kernel``): overwriting a tracked
variable attribute makes Keras drop the variable from the layer's weight lists, which
breaks saving and reading the delta back.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

BASE_KERNEL = "base_kernel"
DELTA = "delta"


class _DeltaKernel:
    """What both delta layers add to their Keras convolution: the QAT hook's slot and
    :meth:`from_conv` (the convolution's own config, so any built one converts)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._quantized_delta = None

    @classmethod
    def from_conv(cls, conv: keras.layers.Layer, **overrides):
        """An unbuilt delta layer with ``conv``'s configuration (name included)."""
        config = conv.get_config()
        config.update(overrides)
        return cls.from_config(config)


@keras.saving.register_keras_serializable(package="supersub_tf")
class DeltaConv2D(_DeltaKernel, keras.layers.Conv2D):
    """A ``Conv2D`` computing with ``base_kernel + delta``; only ``delta`` is trainable.

    Takes exactly the arguments of ``keras.layers.Conv2D`` (its config is a Conv2D
    config), so :meth:`from_conv` turns any built Conv2D's config into a delta layer.
    ``kernel_initializer`` initialises the base kernel, which is normally overwritten
    with :meth:`set_base` right after building.
    """

    def build(self, input_shape) -> None:
        """Creates ``base_kernel`` (frozen), ``delta`` (trainable, zeros) and ``bias`` (frozen)."""
        input_shape = tf.TensorShape(input_shape)
        input_channel = self._get_input_channel(input_shape)
        if input_channel % self.groups:
            raise ValueError(f"{self.name}: {input_channel} input channels are not divisible "
                             f"by groups={self.groups}")
        kernel_shape = self.kernel_size + (input_channel // self.groups, self.filters)
        self.compute_output_shape(input_shape)  # validates the input shape
        self.base_kernel = self.add_weight(name=BASE_KERNEL, shape=kernel_shape,
                                           initializer=self.kernel_initializer,
                                           trainable=False, dtype=self.dtype)
        self.delta = self.add_weight(name=DELTA, shape=kernel_shape, initializer="zeros",
                                     regularizer=self.kernel_regularizer,
                                     constraint=self.kernel_constraint,
                                     trainable=True, dtype=self.dtype)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,),
                                     initializer=self.bias_initializer, trainable=False,
                                     dtype=self.dtype)
                     if self.use_bias else None)
        self.input_spec = keras.layers.InputSpec(
            min_ndim=self.rank + 2, axes={self._get_channel_axis(): input_channel})
        self.built = True

    def set_base(self, kernel: np.ndarray, bias: np.ndarray | None = None) -> None:
        """Copies the generalist's kernel (and bias) into the frozen base weights."""
        self.base_kernel.assign(kernel)
        if self.use_bias:
            if bias is None:
                raise ValueError(f"{self.name} has a bias but none was given")
            self.bias.assign(bias)

    def use_quantized_delta(self, delta) -> None:
        """Makes the next :meth:`call` use ``delta`` (the fake-quantized delta) instead
        of the ``delta`` variable; called by the QAT wrapper before every call."""
        self._quantized_delta = delta

    def effective_kernel(self):
        """``base_kernel + delta``: the kernel the layer convolves with."""
        delta = self.delta if self._quantized_delta is None else self._quantized_delta
        return self.base_kernel + tf.cast(delta, self.compute_dtype)

    def call(self, inputs):
        kernel = self.effective_kernel()
        if self.groups > 1:
            outputs = self._jit_compiled_convolution_op(inputs, tf.convert_to_tensor(kernel))
        else:
            outputs = self.convolution_op(inputs, kernel)
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias, data_format=self._tf_data_format)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


@keras.saving.register_keras_serializable(package="supersub_tf")
class DeltaDepthwiseConv2D(_DeltaKernel, keras.layers.DepthwiseConv2D):
    """A ``DepthwiseConv2D`` computing with ``base_kernel + delta``; only ``delta`` trains.

    The depthwise counterpart of :class:`DeltaConv2D` (same weights, same QAT hook):
    its config is a DepthwiseConv2D config, and ``base_kernel`` and ``delta`` have the
    depthwise kernel's shape ``[kh, kw, channels, multiplier]``.
    """

    def build(self, input_shape) -> None:
        """Creates ``base_kernel`` (frozen), ``delta`` (trainable, zeros) and ``bias`` (frozen)."""
        input_shape = tf.TensorShape(input_shape)
        channel_axis = self._get_channel_axis()
        if len(input_shape) != self.rank + 2 or input_shape.dims[channel_axis].value is None:
            raise ValueError(f"{self.name}: needs rank-{self.rank + 2} inputs with known "
                             f"channels, got {input_shape}")
        input_dim = int(input_shape[channel_axis])
        kernel_shape = self.kernel_size + (input_dim, self.depth_multiplier)
        self.base_kernel = self.add_weight(name=BASE_KERNEL, shape=kernel_shape,
                                           initializer=self.depthwise_initializer,
                                           trainable=False, dtype=self.dtype)
        self.delta = self.add_weight(name=DELTA, shape=kernel_shape, initializer="zeros",
                                     regularizer=self.depthwise_regularizer,
                                     constraint=self.depthwise_constraint,
                                     trainable=True, dtype=self.dtype)
        self.bias = (self.add_weight(name="bias", shape=(input_dim * self.depth_multiplier,),
                                     initializer=self.bias_initializer, trainable=False,
                                     dtype=self.dtype)
                     if self.use_bias else None)
        self.input_spec = keras.layers.InputSpec(min_ndim=self.rank + 2,
                                                 axes={channel_axis: input_dim})
        self.built = True

    set_base = DeltaConv2D.set_base
    use_quantized_delta = DeltaConv2D.use_quantized_delta
    effective_kernel = DeltaConv2D.effective_kernel

    def call(self, inputs):
        outputs = keras.backend.depthwise_conv2d(
            inputs, self.effective_kernel(), strides=self.strides, padding=self.padding,
            dilation_rate=self.dilation_rate, data_format=self.data_format)
        if self.use_bias:
            outputs = keras.backend.bias_add(outputs, self.bias, data_format=self.data_format)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


#: Every delta layer class, keyed by the exact class of the layer it replaces.
DELTA_LAYERS: dict[type, type] = {keras.layers.Conv2D: DeltaConv2D,
                                  keras.layers.DepthwiseConv2D: DeltaDepthwiseConv2D}


def is_delta_layer(layer: keras.layers.Layer) -> bool:
    """True for a :class:`DeltaConv2D` or :class:`DeltaDepthwiseConv2D`."""
    return isinstance(layer, tuple(DELTA_LAYERS.values()))


def delta_layer_for(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    """An unbuilt delta layer replacing ``layer`` (same config, trainable), or None when
    ``layer`` is not exactly a plain ``Conv2D`` or ``DepthwiseConv2D`` (a delta layer
    already, a transposed or separable convolution, ...)."""
    cls = DELTA_LAYERS.get(type(layer))
    return None if cls is None else cls.from_conv(layer, trainable=True)


def custom_objects() -> dict[str, type]:
    """The classes Keras needs to rebuild models containing delta layers."""
    return {"DeltaConv2D": DeltaConv2D, "DeltaDepthwiseConv2D": DeltaDepthwiseConv2D}
