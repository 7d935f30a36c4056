"""Keras Applications backbones, optionally pretrained on ImageNet: MobileNetV2, ResNet50,
EfficientNetB0.

Each application is built on this package's ``"image"`` input tensor and its last feature
map is taken directly, so every layer joins one flat functional graph (tfmot's
``quantize_model`` rejects nested models); a GlobalAveragePooling2D ``"features"`` and a
float32 ``"logits"`` Dense follow, as for every registered backbone. Layer names stay
Keras' own, which :mod:`supersub_tf.models.stages` maps onto trunk stages for
``deltas.from_stage``.

``weights`` (``train.pretrained``) is None (random: He-normal convolutions, like the other
backbones), ``"imagenet"`` (Keras' download, cached in ``~/.keras``) or the path of a
Keras weights file of the application (an ``.h5`` as Keras downloads it, with or without
its top). ``head_classes`` starts ``"logits"`` from the pretrained top's rows of those
ImageNet class indices (``train.pretrained_head``): a pretrained classifier restricted to
the hierarchy's classes.

Each application has its own input preprocessing (:data:`APPLICATIONS`' ``preprocessing``,
a ``data.normalization`` mode): MobileNetV2 ``tf`` ([-1, 1]), ResNet50 ``caffe`` (the
ImageNet mean pixel subtracted on the 0-255 scale) and EfficientNet ``none`` (it normalises
inside the network). Keras' ResNet50 weights take BGR images; their first convolution's
input channels are reversed when they load, so that every path of this package feeds RGB
(the same function: ``conv(bgr - mean_bgr, W) == conv(rgb - mean_rgb, W[:, :, ::-1])``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from supersub_tf.errors import ConfigError
from supersub_tf.models import blocks
from supersub_tf.models.registry import register_model

if TYPE_CHECKING:
    import tf_keras as keras

#: The top Dense of every Keras application (what ``head_classes`` reads).
TOP_LAYER = "predictions"
IMAGENET_CLASSES = 1000
#: The ImageNet channel std Keras' EfficientNet divides by once more (its
#: ``IMAGENET_STDDEV_RGB``; see :func:`_copy_imagenet`).
EFFICIENTNET_STD = (0.229, 0.224, 0.225)
#: What ``train.pretrained`` spells "no pretrained weights" as.
NO_WEIGHTS = ("none", "")


@dataclasses.dataclass(frozen=True)
class Application:
    """One Keras application as a registered backbone.

    Attributes:
        name: The registry name.
        constructor: The ``tf_keras.applications`` function.
        preprocessing: The ``data.normalization`` mode its pretrained weights expect.
        widths: The width multipliers (``alpha``) it takes; ``(1.0,)`` when it has none.
        bgr_conv: The first convolution, whose input channels are reversed when Keras'
            BGR weights load; None for RGB weights.
        min_size: The smallest input side it builds for.
    """

    name: str
    constructor: str
    preprocessing: str
    widths: tuple[float, ...] = (1.0,)
    bgr_conv: str | None = None
    min_size: int = 32


#: MobileNetV2's published width multipliers (those with ImageNet checkpoints).
MOBILENETV2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)

APPLICATIONS: dict[str, Application] = {app.name: app for app in (
    Application("mobilenetv2", "MobileNetV2", "tf", widths=MOBILENETV2_ALPHAS),
    Application("keras_resnet50", "ResNet50", "caffe", bgr_conv="conv1_conv"),
    Application("efficientnetb0", "EfficientNetB0", "none"),
)}


def application_of(model: str) -> Application | None:
    """The Keras application registered as ``model``; None for the project's own backbones."""
    return APPLICATIONS.get(model)


def check_pretrained(model: str, pretrained: str, normalization: str) -> None:
    """ConfigError unless pretrained weights fit ``model`` and ``data.normalization``.

    Pretrained weights exist only for the Keras applications, and only work on inputs
    preprocessed as they were trained; without pretrained weights anything goes.
    """
    if str(pretrained).lower() in NO_WEIGHTS:
        return
    app = application_of(model)
    if app is None:
        raise ConfigError(f"train.pretrained={pretrained!r} needs a Keras Applications "
                          f"backbone ({', '.join(APPLICATIONS)}), got train.model={model!r}")
    if normalization != app.preprocessing:
        raise ConfigError(f"data.normalization must be {app.preprocessing!r} for pretrained "
                          f"{model} (its weights' preprocessing), got {normalization!r}")


def imagenet_head_classes(class_ids: Sequence[str]) -> list[int]:
    """The ImageNet-1k class indices (Keras' top order) of wnids ``class_ids``.

    Raises:
        ConfigError: Naming the class ids that are no ImageNet-1k class.
    """
    from supersub_tf.data.class_lists import imagenet1k_classes

    index = {wnid: i for i, wnid in enumerate(imagenet1k_classes())}
    missing = [c for c in class_ids if c not in index]
    if missing:
        raise ConfigError(f"train.pretrained_head: classes {missing[:5]} "
                          f"{'and more ' if len(missing) > 5 else ''}are no ImageNet-1k "
                          "classes, so the ImageNet head has no rows for them")
    return [index[c] for c in class_ids]


def _check_args(app: Application, input_shape: tuple[int, int, int], width: float) -> None:
    if not any(abs(width - w) < 1e-9 for w in app.widths):
        raise ConfigError(f"{app.name} width (alpha) must be one of {app.widths}, got {width}")
    if min(input_shape[:2]) < app.min_size:
        raise ConfigError(f"{app.name} needs inputs of at least {app.min_size}x{app.min_size}, "
                          f"got {input_shape}")


def top_classes(path: str | os.PathLike) -> int | None:
    """Outputs of the ``"predictions"`` top stored in a Keras ``.h5`` weights file; None
    when the file has no top (a ``_notop`` file) or is not HDF5 (a TF checkpoint)."""
    import h5py

    if Path(path).suffix.lower() not in (".h5", ".hdf5"):
        return None
    with h5py.File(path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else str(n)
                 for n in f.attrs.get("layer_names", [])]
        if TOP_LAYER not in names:
            return None
        group = f[TOP_LAYER]
        weight_names = [n.decode() if isinstance(n, bytes) else str(n)
                        for n in group.attrs["weight_names"]]
        return int(group[weight_names[0]].shape[-1])


def _weights_file(weights: str) -> Path:
    path = Path(os.path.expanduser(str(weights)))
    if not path.is_file():
        raise ConfigError(f"train.pretrained {str(weights)!r} is neither none, imagenet nor a "
                          "weights file")
    return path


def _reinitialise(model: keras.Model) -> None:
    """He-normal convolution kernels, as the project's other backbones (random start only).

    For depthwise kernels Keras's fan-in is ``9 * channels``, the scale of torchvision's
    fan-out initialisation.
    """
    import tf_keras as keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            layer.depthwise_initializer = keras.initializers.get(blocks.CONV_INITIALIZER)
            kernel = layer.depthwise_kernel
            kernel.assign(layer.depthwise_initializer(kernel.shape, kernel.dtype))
        elif isinstance(layer, keras.layers.Conv2D):
            layer.kernel_initializer = keras.initializers.get(blocks.CONV_INITIALIZER)
            layer.kernel.assign(layer.kernel_initializer(layer.kernel.shape, layer.kernel.dtype))


def imagenet_reference(app: Application, width: float, include_top: bool) -> keras.Model:
    """The application with Keras' ImageNet weights (downloaded once, cached in
    ``~/.keras``), at Keras' default size: the weights ``weights="imagenet"`` copies.

    Copied rather than loaded in place because Keras loads an ImageNet top only at
    224x224, and builds EfficientNet's ImageNet variant with an extra ``tf.math``
    multiply (a TFOpLambda layer, which neither tfmot nor the functional replay takes).
    """
    import tf_keras as keras

    kwargs = {"alpha": width} if len(app.widths) > 1 else {}
    if include_top:
        kwargs["classifier_activation"] = None
    return getattr(keras.applications, app.constructor)(
        include_top=include_top, weights="imagenet", **kwargs)


def _copy_imagenet(app: Application, backbone: keras.Model, width: float,
                   include_top: bool) -> None:
    """Copies :func:`imagenet_reference`'s weights into ``backbone``, layer by layer in
    order (the auto-named preprocessing layers get other names in another model)."""
    import tf_keras as keras

    reference = imagenet_reference(app, width, include_top)
    ours = [layer for layer in backbone.layers if layer.weights]
    theirs = [layer for layer in reference.layers if layer.weights]
    if [type(a) for a in ours] != [type(b) for b in theirs]:
        raise ConfigError(f"Keras' ImageNet {app.constructor} does not match the built one")
    for target, source in zip(ours, theirs):
        weights = source.get_weights()
        if isinstance(target, keras.layers.Normalization):
            # Keras' ImageNet EfficientNet divides by sqrt(variance) and then by
            # sqrt(std) in that extra multiply; one variance of variance * std does both.
            mean, variance, count = weights
            weights = [mean, variance * np.asarray(EFFICIENTNET_STD, np.float32), count]
        target.set_weights(weights)


def build_application(app: Application, num_classes: int, input_shape: tuple[int, int, int],
                      width: float = 1.0, *, model_name: str | None = None,
                      bn_momentum: float = blocks.BN_MOMENTUM, weights: str | None = None,
                      head_classes: Sequence[int] | None = None) -> keras.Model:
    """Builds ``app`` as a registered backbone (see the module docstring).

    Args:
        app: The application.
        num_classes: Size of the ``"logits"`` layer.
        input_shape: Input image shape.
        width: Width multiplier, one of ``app.widths``.
        model_name: Model name; defaults to ``app.name``.
        bn_momentum: Momentum of every BatchNormalization's running statistics.
        weights: None/``"none"``, ``"imagenet"`` or a Keras weights file of the application.
        head_classes: Indices of the pretrained top's outputs whose rows start the
            ``"logits"`` head (``num_classes`` of them); None: a fresh head.

    Returns:
        A flat functional model from ``"image"`` to float32 ``"logits"``.

    Raises:
        ConfigError: On a width or input size the application does not take, a weights
            value that is no file, ``head_classes`` without a pretrained top, or of
            another length than ``num_classes`` or beyond the top's outputs.
    """
    import tf_keras as keras

    _check_args(app, input_shape, width)
    weights = None if weights is None or str(weights).lower() in NO_WEIGHTS else str(weights)
    path = None if weights in (None, "imagenet") else _weights_file(weights)
    file_top = top_classes(path) if path is not None else None
    if head_classes is not None:
        head_classes = np.asarray(head_classes, np.int64)
        if weights is None or (path is not None and file_top is None):
            raise ConfigError(f"train.pretrained_head needs pretrained weights with their "
                              f"ImageNet top; {weights or 'none'} has none")
        if len(head_classes) != num_classes:
            raise ConfigError(f"{len(head_classes)} head classes for a {num_classes}-class head")
    with_top = file_top is not None or (weights == "imagenet" and head_classes is not None)
    kwargs = {"alpha": width} if len(app.widths) > 1 else {}
    if with_top:
        kwargs.update(classes=file_top or IMAGENET_CLASSES, classifier_activation=None)
    inputs = blocks.image_input(input_shape)
    backbone = getattr(keras.applications, app.constructor)(
        input_shape=input_shape, input_tensor=inputs, include_top=with_top,
        weights=None if path is None else str(path), **kwargs)
    if weights == "imagenet":
        _copy_imagenet(app, backbone, width, with_top)
    # The last feature map: the output without a top, the top's pooling input with one.
    features = [layer for layer in backbone.layers if layer.output.shape.rank == 4][-1].output
    model = keras.Model(inputs, blocks.classifier(features, num_classes),
                        name=model_name or app.name)
    if weights is None:
        _reinitialise(model)
    elif app.bgr_conv:
        conv = model.get_layer(app.bgr_conv)
        conv.kernel.assign(conv.kernel.numpy()[:, :, ::-1, :])
    if head_classes is not None:
        kernel, bias = backbone.get_layer(TOP_LAYER).get_weights()
        if head_classes.min() < 0 or head_classes.max() >= kernel.shape[1]:
            raise ConfigError(f"head class indices must lie in [0, {kernel.shape[1]}), got "
                              f"{int(head_classes.min())}..{int(head_classes.max())}")
        model.get_layer(blocks.LOGITS_LAYER).set_weights(
            [kernel[:, head_classes], bias[head_classes]])
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = bn_momentum
    return model


def _register(app: Application) -> None:
    def builder(num_classes: int, input_shape: tuple[int, int, int] = (224, 224, 3),
                width: float = 1.0, *, model_name: str | None = None,
                bn_momentum: float = blocks.BN_MOMENTUM, weights: str | None = None,
                head_classes: Sequence[int] | None = None) -> keras.Model:
        return build_application(app, num_classes, input_shape, width, model_name=model_name,
                                 bn_momentum=bn_momentum, weights=weights,
                                 head_classes=head_classes)

    builder.__name__ = app.name
    builder.__doc__ = f"Keras' {app.constructor} (see :func:`build_application`)."
    register_model(app.name)(builder)


for _app in APPLICATIONS.values():
    _register(_app)
