"""CIFAR-style ResNets (He et al. 2016, section 4.2): 6n+2 layers for 32x32 to 64x64 images.

A 3x3 stem convolution without downsampling, then three stages of ``n`` basic blocks
with 16, 32 and 64 channels (times ``width``); the first block of stages 2 and 3 halves
the resolution with a stride-2 convolution. Counting the stem, the ``6n`` block
convolutions and the classifier gives the depth: ResNet-20 is ``n = 3``. Where a block
changes shape the shortcut is a 1x1 convolution + BN ("option B"), which adds two
convolutions and about 1% parameters over the paper's parameter-free "option A" (0.27M
for ResNet-20 either way).

``resnet{depth}_s2`` is the same network with a stride-2 stem, for 64x64 inputs such as
Tiny ImageNet's native size: the trunk then runs at 32x32, so it costs the same as the
plain network on images resized to 32x32 (plus the stem at 64x64), but it sees the
detail the resize throws away.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from supersub_tf.errors import ConfigError
from supersub_tf.models import blocks
from supersub_tf.models.registry import register_model

if TYPE_CHECKING:
    import tf_keras as keras

DEPTHS = (8, 14, 20, 32, 44, 56, 110)
STAGE_CHANNELS = (16, 32, 64)


def blocks_per_stage(depth: int) -> int:
    """``n`` of a ``6n + 2``-layer network.

    Raises:
        ConfigError: When ``depth`` is not of the form ``6n + 2`` with ``n >= 1``.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"CIFAR ResNet depth must be 6n+2 (8, 14, 20, ...), got {depth}")
    return (depth - 2) // 6


def cifar_resnet(depth: int, num_classes: int, input_shape: tuple[int, int, int] = (32, 32, 3),
                 width: float = 1.0, *, model_name: str | None = None,
                 bn_momentum: float = blocks.BN_MOMENTUM, stem_stride: int = 1) -> keras.Model:
    """Builds a ``depth``-layer CIFAR ResNet.

    Args:
        depth: ``6n + 2`` total layers.
        num_classes: Size of the ``"logits"`` layer.
        input_shape: Input image shape; the last feature map is a quarter of its size.
        width: Multiplier of the 16/32/64 stage channels (rounded to multiples of 4).
        model_name: Model name; defaults to ``f"resnet{depth}"``.
        bn_momentum: Momentum of every BatchNormalization's running statistics.
        stem_stride: 2 halves the resolution in the stem (for 64x64 inputs).

    Returns:
        A flat functional model from ``"image"`` to float32 ``"logits"``.
    """
    import tf_keras as keras

    n = blocks_per_stage(depth)
    inputs = blocks.image_input(input_shape)
    x = blocks.conv_bn(inputs, blocks.scale_channels(STAGE_CHANNELS[0], width), 3,
                       stem_stride, name="stem", momentum=bn_momentum)
    for stage, base in enumerate(STAGE_CHANNELS, start=1):
        filters = blocks.scale_channels(base, width)
        for block in range(1, n + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = blocks.basic_block(x, filters, strides, name=f"stage{stage}_block{block}",
                                   momentum=bn_momentum)
    outputs = blocks.classifier(x, num_classes)
    return keras.Model(inputs, outputs, name=model_name or f"resnet{depth}")


# ``resnet{depth}``: the family builder with its depth bound (the registry checks
# options against the partial's signature).
for _depth in DEPTHS:
    register_model(f"resnet{_depth}")(functools.partial(cifar_resnet, _depth))
    register_model(f"resnet{_depth}_s2")(functools.partial(
        cifar_resnet, _depth, model_name=f"resnet{_depth}_s2", stem_stride=2))
