"""Layers and blocks shared by the architectures, written for quantization-aware training.

Everything here builds plain Keras layers into one flat functional graph, because
tensorflow-model-optimization's ``quantize_model`` supports nothing else: no nested
models, no ``Lambda``, no subclassed layers. Convolutions have no bias and are followed
by BatchNormalization (the pattern tfmot folds), kernels are He-normal (He et al. 2015,
matching the ResNet papers) and there are no kernel regularizers: weight decay is the
optimizer's job. Every model ends with :func:`classifier`: a GlobalAveragePooling2D named
``"features"`` and a float32 Dense named ``"logits"``, the contract the head helpers
(:mod:`supersub_tf.models.heads`) rely on to swap heads and reuse trunks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tf_keras as keras

# Keras's momentum is the weight of the old running statistic: 0.9 is PyTorch's 0.1.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
CONV_INITIALIZER = "he_normal"
FEATURES_LAYER = "features"
LOGITS_LAYER = "logits"
INPUT_NAME = "image"


def scale_channels(channels: int, width: float, divisor: int = 4) -> int:
    """``channels * width`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``).

    Multiples of 4 keep convolutions on vector-friendly sizes; the base channel counts
    (16/32/64, 64/128/256/512) are already multiples, so ``width=1`` changes nothing.
    """
    return max(divisor, int(round(channels * width / divisor)) * divisor)


def image_input(input_shape: tuple[int, int, int]):
    """The model's single input: normalised float images (no preprocessing layers)."""
    import tf_keras as keras

    return keras.Input(shape=input_shape, name=INPUT_NAME)


def conv(x, filters: int, kernel_size: int, strides: int = 1, *, name: str):
    """A bias-free 'same'-padded convolution with He-normal kernels."""
    import tf_keras as keras

    return keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                               use_bias=False, kernel_initializer=CONV_INITIALIZER,
                               name=name)(x)


def batch_norm(x, *, name: str, momentum: float = BN_MOMENTUM):
    """BatchNormalization over channels (epsilon 1e-5, as in the reference PyTorch ResNets)."""
    import tf_keras as keras

    return keras.layers.BatchNormalization(momentum=momentum, epsilon=BN_EPSILON, name=name)(x)


def relu(x, *, name: str):
    """A ReLU layer (a layer, not an activation argument, so tfmot sees Conv-BN-ReLU)."""
    import tf_keras as keras

    return keras.layers.ReLU(name=name)(x)


def conv_bn(x, filters: int, kernel_size: int, strides: int = 1, *, name: str,
            momentum: float = BN_MOMENTUM, activate: bool = True):
    """Conv -> BN (-> ReLU), the unit every ResNet is made of; layers ``{name}_conv`` etc."""
    x = conv(x, filters, kernel_size, strides, name=f"{name}_conv")
    x = batch_norm(x, name=f"{name}_bn", momentum=momentum)
    return relu(x, name=f"{name}_relu") if activate else x


def residual(x, shortcut, filters: int, strides: int, *, name: str, momentum: float):
    """Adds the (projected when its shape changes) ``shortcut`` to ``x`` and applies ReLU.

    The projection is a strided 1x1 Conv + BN ("option B" of He et al. 2016); the
    parameter-free zero-padding shortcut ("option A") would need a Lambda layer, which
    tfmot cannot quantize.
    """
    import tf_keras as keras

    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = conv(shortcut, filters, 1, strides, name=f"{name}_proj_conv")
        shortcut = batch_norm(shortcut, name=f"{name}_proj_bn", momentum=momentum)
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return relu(x, name=f"{name}_out")


def basic_block(x, filters: int, strides: int, *, name: str, momentum: float = BN_MOMENTUM):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34 and CIFAR ResNets)."""
    shortcut = x
    x = conv_bn(x, filters, 3, strides, name=f"{name}_1", momentum=momentum)
    x = conv_bn(x, filters, 3, name=f"{name}_2", momentum=momentum, activate=False)
    return residual(x, shortcut, filters, strides, name=name, momentum=momentum)


def bottleneck_block(x, filters: int, strides: int, *, name: str, expansion: int = 4,
                     momentum: float = BN_MOMENTUM):
    """1x1 reduce, 3x3 (strided, "ResNet v1.5" as in torchvision), 1x1 expand to ``4 * filters``."""
    shortcut = x
    x = conv_bn(x, filters, 1, name=f"{name}_1", momentum=momentum)
    x = conv_bn(x, filters, 3, strides, name=f"{name}_2", momentum=momentum)
    x = conv_bn(x, expansion * filters, 1, name=f"{name}_3", momentum=momentum, activate=False)
    return residual(x, shortcut, expansion * filters, strides, name=name, momentum=momentum)


def classifier(x, num_classes: int):
    """Global average pooling named ``"features"``, then float32 ``"logits"`` (no softmax).

    The Dense is float32 whatever the global mixed-precision policy, so losses and
    softmaxes computed from the logits stay numerically safe.
    """
    import tf_keras as keras

    x = keras.layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(x)
    return logits_head(x, num_classes)


def logits_head(features, num_classes: int, name: str = LOGITS_LAYER):
    """A fresh float32 Dense head on a features tensor (also used to swap heads)."""
    import tf_keras as keras

    return keras.layers.Dense(num_classes, dtype="float32", name=name)(features)
