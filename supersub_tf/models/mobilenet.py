"""MobileNetV2 (Sandler et al. 2018) from ``tf_keras.applications``, as one flat model.

The application is built on our input tensor and its last activation is taken directly,
so every layer joins our graph once: calling the application model as a layer would
nest it, which tfmot's ``quantize_model`` rejects. Weights are never downloaded
(``weights=None``). After building, the architecture's initialisation and BN momentum
are brought in line with the other models: He-normal kernels (for depthwise kernels
Keras's fan-in is ``9 * channels``, the same scale as torchvision's fan-out
initialisation) and this project's BN momentum; its BN epsilon (1e-3) is kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supersub_tf.errors import ConfigError
from supersub_tf.models import blocks
from supersub_tf.models.registry import register_model

if TYPE_CHECKING:
    import tf_keras as keras

# The published width multipliers (those with ImageNet checkpoints in tf_keras).
ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
MIN_SIZE = 32


def check_mobilenet_args(input_shape: tuple[int, int, int], width: float) -> None:
    """Raises ConfigError unless ``width`` is a published alpha and the input is >= 32x32.

    With random weights tf_keras accepts any alpha, but only the published ones give
    the networks of the paper (and could load its checkpoints), so others are refused.
    """
    if not any(abs(width - alpha) < 1e-9 for alpha in ALPHAS):
        raise ConfigError(f"MobileNetV2 width (alpha) must be one of {ALPHAS}, got {width}")
    if min(input_shape[:2]) < MIN_SIZE:
        raise ConfigError(f"MobileNetV2 needs inputs of at least {MIN_SIZE}x{MIN_SIZE}, "
                          f"got {input_shape}")


def _reinitialise(model: keras.Model, bn_momentum: float) -> None:
    """He-normal convolution kernels and the project's BN momentum, in weights and config."""
    import tf_keras as keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            layer.depthwise_initializer = keras.initializers.get(blocks.CONV_INITIALIZER)
            kernel = layer.depthwise_kernel
            kernel.assign(layer.depthwise_initializer(kernel.shape, kernel.dtype))
        elif isinstance(layer, keras.layers.Conv2D):
            layer.kernel_initializer = keras.initializers.get(blocks.CONV_INITIALIZER)
            layer.kernel.assign(layer.kernel_initializer(layer.kernel.shape, layer.kernel.dtype))
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum


@register_model("mobilenetv2")
def mobilenetv2(num_classes: int, input_shape: tuple[int, int, int] = (224, 224, 3),
                width: float = 1.0, *, model_name: str | None = None,
                bn_momentum: float = blocks.BN_MOMENTUM) -> keras.Model:
    """Builds MobileNetV2 with width multiplier ``width`` and a fresh logits head.

    Args:
        num_classes: Size of the ``"logits"`` layer.
        input_shape: Input image shape, at least 32x32 (the last feature map is 1/32).
        width: The ``alpha`` width multiplier, one of :data:`ALPHAS`.
        model_name: Model name; defaults to ``"mobilenetv2"``.
        bn_momentum: Momentum of every BatchNormalization's running statistics.

    Returns:
        A flat functional model from ``"image"`` to float32 ``"logits"``.

    Raises:
        ConfigError: On an unpublished width or an input smaller than 32x32.
    """
    import tf_keras as keras

    check_mobilenet_args(input_shape, width)
    inputs = blocks.image_input(input_shape)
    backbone = keras.applications.MobileNetV2(input_shape=input_shape, input_tensor=inputs,
                                              alpha=width, include_top=False, weights=None)
    outputs = blocks.classifier(backbone.output, num_classes)
    model = keras.Model(inputs, outputs, name=model_name or "mobilenetv2")
    _reinitialise(model, bn_momentum)
    return model
