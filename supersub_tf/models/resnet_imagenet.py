"""ImageNet ResNets (He et al. 2016): ResNet-18/34 with basic blocks, ResNet-50 with bottlenecks.

The torchvision layout: a 7x7 stride-2 stem convolution and a 3x3 stride-2 max-pool,
then four stages of 64/128/256/512 channels (times ``width``; bottleneck stages output
four times that), each but the first starting with a stride-2 block, and a projection
(1x1 conv + BN) shortcut wherever a block changes shape. At ``width=1`` the trainable
parameter counts equal torchvision's (11.69M, 21.80M and 25.56M with 1000 classes).

Padding is TensorFlow's 'same', which on stride-2 layers pads one more pixel at the
bottom/right instead of PyTorch's symmetric padding; the shapes are identical (224 ->
7x7 features) and any input size builds, 32x32 giving a 1x1 final feature map.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from supersub_tf.models import blocks
from supersub_tf.models.registry import register_model

if TYPE_CHECKING:
    import tf_keras as keras

STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
BOTTLENECK_DEPTHS = frozenset({50})


def imagenet_resnet(depth: int, num_classes: int,
                    input_shape: tuple[int, int, int] = (224, 224, 3), width: float = 1.0, *,
                    model_name: str | None = None,
                    bn_momentum: float = blocks.BN_MOMENTUM) -> keras.Model:
    """Builds ResNet-``depth`` (18, 34 or 50) with the ImageNet stem.

    Args:
        depth: 18, 34 or 50.
        num_classes: Size of the ``"logits"`` layer.
        input_shape: Input image shape; the last feature map is 1/32 of its size.
        width: Multiplier of the 64/128/256/512 stage channels (rounded to multiples of 4).
        model_name: Model name; defaults to ``f"resnet{depth}"``.
        bn_momentum: Momentum of every BatchNormalization's running statistics.

    Returns:
        A flat functional model from ``"image"`` to float32 ``"logits"``.
    """
    import tf_keras as keras

    inputs = blocks.image_input(input_shape)
    x = blocks.conv_bn(inputs, blocks.scale_channels(64, width), 7, 2, name="stem",
                       momentum=bn_momentum)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (base, count) in enumerate(zip(STAGE_CHANNELS, STAGE_BLOCKS[depth]), start=1):
        filters = blocks.scale_channels(base, width)
        for block in range(1, count + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            block_name = f"stage{stage}_block{block}"
            if depth in BOTTLENECK_DEPTHS:
                x = blocks.bottleneck_block(x, filters, strides, name=block_name,
                                            momentum=bn_momentum)
            else:
                x = blocks.basic_block(x, filters, strides, name=block_name,
                                       momentum=bn_momentum)
    outputs = blocks.classifier(x, num_classes)
    return keras.Model(inputs, outputs, name=model_name or f"resnet{depth}")


# ``resnet{depth}``: the family builder with its depth bound (the registry checks
# options against the partial's signature).
for _depth in sorted(STAGE_BLOCKS):
    register_model(f"resnet{_depth}")(functools.partial(imagenet_resnet, _depth))
