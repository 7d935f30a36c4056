"""The model registry: every architecture is built by name through :func:`create_model`.

Architectures register a builder with :func:`register_model`; callers (configs, the CLI,
the generalist and specialist trainers) only ever name them. :func:`create_model` checks
the arguments a config can get wrong (unknown name, class count, input shape, width,
builder options) and raises :class:`~supersub_tf.errors.ConfigError` with the culprit
named, so a typo in a YAML file fails before any TensorFlow graph is built.

Listing models imports no TensorFlow: builders import ``tf_keras`` only when called.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from supersub_tf.errors import ConfigError

if TYPE_CHECKING:
    import tf_keras as keras

Builder = Callable[..., "keras.Model"]

_REGISTRY: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(num_classes, input_shape, width, **options)`` as ``name``.

    The builder receives validated arguments (``input_shape`` as a tuple of three ints,
    ``width`` as a positive float) and must return a flat functional ``keras.Model``
    ending in a ``"features"`` GlobalAveragePooling2D and a float32 ``"logits"`` Dense.

    Raises:
        ValueError: When ``name`` is already registered (a programming error).
    """
    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def _is_positive_int(value: Any) -> bool:
    """True for ints (numpy's included) above zero; False for bools and floats."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def check_num_classes(num_classes: Any) -> int:
    """``num_classes`` when it is a positive int; ConfigError otherwise."""
    if not _is_positive_int(num_classes):
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)


def _check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    """Accepts any length-3 sequence of positive ints (a YAML list included)."""
    ok = (isinstance(input_shape, Sequence) and not isinstance(input_shape, str)
          and len(input_shape) == 3
          and all(_is_positive_int(d) for d in input_shape))
    if not ok:
        raise ConfigError(f"input_shape must be (height, width, channels) positive integers, "
                          f"got {input_shape!r}")
    return tuple(int(d) for d in input_shape)


def _check_width(width: Any) -> float:
    if (isinstance(width, bool) or not isinstance(width, numbers.Real)
            or not math.isfinite(width) or width <= 0):
        raise ConfigError(f"width must be a positive number, got {width!r}")
    return float(width)


def _check_options(name: str, builder: Builder, args: tuple, options: dict[str, Any]) -> None:
    """Unknown builder options are a config error, not a TypeError deep inside Keras."""
    try:
        inspect.signature(builder).bind(*args, **options)
    except TypeError as error:
        raise ConfigError(f"invalid options for model {name!r} {sorted(options)}: "
                          f"{error}") from None


def check_model_name(name: str, setting: str = "train.model") -> None:
    """ConfigError naming ``setting`` unless ``name`` is a registered model."""
    if name not in _REGISTRY:
        raise ConfigError(f"{setting} {name!r} is not a registered backbone; choose one of "
                          f"{', '.join(list_models())}")


def create_model(name: str, num_classes: int, input_shape: Sequence[int] = (32, 32, 3),
                 width: float = 1.0, **kwargs: Any) -> keras.Model:
    """Builds a registered architecture with freshly initialised weights.

    Args:
        name: A name from :func:`list_models`, e.g. ``"resnet20"``.
        num_classes: Size of the ``"logits"`` layer.
        input_shape: ``(height, width, channels)`` of the normalised float input images.
        width: Channel multiplier (MobileNetV2's ``alpha``); 1.0 is the published network.
        **kwargs: Builder-specific options (all builders take ``model_name`` to name the
            model something else than ``name``, and ``bn_momentum``).

    Returns:
        A flat functional ``keras.Model`` mapping images to float32 logits (no softmax).

    Raises:
        ConfigError: On an unknown name (the message lists the registered ones), a bad
            ``num_classes``, ``input_shape`` or ``width``, an option the builder does not
            take, or a width or input size the architecture does not support.
    """
    check_model_name(name, "model")
    builder = _REGISTRY[name]
    args = (check_num_classes(num_classes), _check_input_shape(input_shape), _check_width(width))
    _check_options(name, builder, args, kwargs)
    return builder(*args, **kwargs)
