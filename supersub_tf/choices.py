"""The closed sets of values that settings, stored systems and exports name.

Every layer reads these (the config validates against them, the deltas quantize to
them, the exports record them), so they sit at the bottom of the package and import
nothing from it: one home for each set, and one check of a bit width.

Routing mode names are here for the config, which sits below the routing module
(:mod:`supersub_tf.supersub.routing`, whose registry :data:`~supersub_tf.supersub.
routing.MODES` is the definition of each mode). ``routing.py`` cannot import this module:
it is copied byte for byte into every LiteRT export, where the package is absent. A test
keeps the two lists equal.
"""

from __future__ import annotations

from typing import Any

#: Bit widths of quantized deltas (tfmot's fake-quant limits); ``None`` (``float`` in
#: a config) means float32 deltas without quantization-aware training.
DELTA_BITS = (2, 3, 4, 5, 6, 7, 8)
#: How a config spells float32 deltas in ``deltas.bits`` (case-insensitive).
FLOAT_BITS_NAMES = ("float", "none", "fp32")

#: ``data.normalization``: ``imagenet`` (mean/std), ``unit`` ([0, 1]), ``none`` ([0, 255]),
#: and the preprocessing of Keras' pretrained applications: ``tf`` ([-1, 1], MobileNetV2)
#: and ``caffe`` (ImageNet's mean pixel subtracted on the 0-255 scale, ResNet50; the
#: BGR order of Keras' weights is folded into the first convolution when they load).
#: EfficientNet normalises inside the network and takes ``none``.
NORMALIZATIONS = ("imagenet", "unit", "none", "tf", "caffe")

#: Every routing mode, in the registry's order (``routing.MODES``; a test checks it).
ROUTINGS = ("hard", "topk", "soft", "gated", "oracle")
#: The modes the SavedModel's graph implements (``export/savedmodel.py``): every one
#: that needs no true superclass. Here, not in the export module, because
#: ``export.savedmodel_routing`` is validated by the config, which sits below the
#: exports; the export declares its modes as this tuple and a test runs each one against
#: ``routing.py``.
SAVEDMODEL_ROUTINGS = ("hard", "topk", "soft", "gated")


def check_bits(value: Any, error: type[Exception] = ValueError, what: str = "delta bits",
               also: str = "") -> int:
    """``value`` as an int when it is one of :data:`DELTA_BITS`.

    The one check of a bit width: the config, the quantizers, the delta sets and the
    code packing all call it, each with the exception its callers expect.

    Args:
        value: The bit width to check (an int; numpy integers pass, bools do not).
        error: The exception class to raise (``ConfigError`` for a setting).
        what: What the value is, for the message (``deltas.bits entries``).
        also: Other accepted values, for the message (``float or ``).

    Raises:
        error: ``"<what> must be <also>an integer from 2 to 8, got <value>"``.
    """
    try:
        ok = not isinstance(value, bool) and int(value) == value and int(value) in DELTA_BITS
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise error(f"{what} must be {also}an integer from {DELTA_BITS[0]} to "
                    f"{DELTA_BITS[-1]}, got {value!r}")
    return int(value)
