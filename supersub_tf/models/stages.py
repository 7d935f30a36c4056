"""Which trunk stage a layer belongs to, from its name: what ``deltas.from_stage`` selects.

A stage is a run of blocks at one resolution; stages are numbered from 1 after the stem
(stem layers, the pooled ``"features"`` and the head have no stage). The project's
ResNets name their layers ``stage{t}_...``; Keras' applications have their own names,
mapped here onto the same four stages at 1/4, 1/8, 1/16 and 1/32 of the input:

* ResNet50 (Keras): ``conv2_...`` to ``conv5_...`` are stages 1 to 4 (``conv1_...``, the stem);
* MobileNetV2: ``block_1`` and ``block_2`` are stage 1, ``block_3`` to ``block_5`` stage 2,
  ``block_6`` to ``block_12`` stage 3, ``block_13`` to ``block_16`` and the last 1x1
  convolution (``Conv_1``) stage 4 (``Conv1`` and ``expanded_conv``, the stem);
* EfficientNet: ``block2*`` stage 1, ``block3*`` stage 2, ``block4*`` and ``block5*``
  stage 3, ``block6*``, ``block7*`` and ``top_*`` stage 4 (``stem_*`` and ``block1*``, the
  stem).

Names are distinct across these families, so one function serves every backbone.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable

#: MobileNetV2's first block of stages 1, 2, 3 and 4 (the stride-2 blocks).
MOBILENETV2_STAGE_STARTS = (1, 3, 6, 13)
#: EfficientNet's block group -> stage (group 1, at the stem's resolution, is the stem).
EFFICIENTNET_STAGES = {2: 1, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4}

_RULES: tuple[tuple[re.Pattern, Callable[[re.Match], int | None]], ...] = (
    (re.compile(r"stage(\d+)_"), lambda m: int(m.group(1))),
    (re.compile(r"conv([2-5])_block"), lambda m: int(m.group(1)) - 1),
    (re.compile(r"block_(\d+)_"),
     lambda m: bisect.bisect_right(MOBILENETV2_STAGE_STARTS, int(m.group(1))) or None),
    (re.compile(r"(Conv_1|Conv_1_bn|out_relu)$"), lambda m: 4),
    (re.compile(r"block(\d)[a-z]_"), lambda m: EFFICIENTNET_STAGES.get(int(m.group(1)))),
    (re.compile(r"top_(conv|bn|activation)$"), lambda m: 4),
)


def layer_stage(name: str) -> int | None:
    """The trunk stage of layer ``name`` (1 to 4 for the registered backbones); None for
    stem layers, pooling, heads and any name no backbone family uses."""
    for pattern, stage in _RULES:
        match = pattern.match(name)
        if match:
            return stage(match)
    return None
