"""Image classifiers by name: CIFAR and ImageNet ResNets and Keras Applications (MobileNetV2,
ResNet50, EfficientNetB0, optionally pretrained), plus head helpers.

``create_model("resnet20", num_classes=10)`` builds a registered architecture;
:func:`list_models` names them all. Every model is a flat functional tf_keras model
(quantizable by tfmot) from an ``"image"`` input to float32 ``"logits"`` (no softmax),
with the pooled trunk output in a layer named ``"features"``; :func:`trunk`,
:func:`with_head` and :func:`copy_model` build on that to swap heads and reuse trunks.
Importing this package does not import TensorFlow.
"""

from supersub_tf.models.registry import (
    check_model_name, create_model, list_models, register_model)

# Importing the architecture modules registers their builders.
from supersub_tf.models import keras_applications, resnet_cifar, resnet_imagenet  # noqa: E402,F401,I001
from supersub_tf.models.heads import (  # noqa: E402
    AUX_LOGITS_LAYER, aux_head, copy_model, features_output, flatness_problems, main_head, trunk,
    with_aux_head, with_head)
from supersub_tf.models.keras_applications import application_of, check_pretrained  # noqa: E402
from supersub_tf.models.stages import layer_stage  # noqa: E402

__all__ = ["AUX_LOGITS_LAYER", "application_of", "aux_head", "check_model_name",
           "check_pretrained", "copy_model", "create_model", "features_output",
           "flatness_problems", "layer_stage", "list_models", "main_head", "register_model",
           "trunk", "with_aux_head", "with_head"]
