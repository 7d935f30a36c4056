"""Trunks and heads: reuse a network's feature extractor under new classifiers.

Every registered model ends in a ``"features"`` layer (the pooled trunk output) and a
``"logits"`` Dense. The Super-Sub framework builds specialists from a generalist by
replacing that head and reusing (or copying) the trunk, so these helpers work on that
contract:

* :func:`trunk`: the model up to ``"features"``, sharing its layers and weights;
* :func:`with_head`: the same trunk (shared weights) under a new ``"logits"`` Dense;
* :func:`copy_model`: an independent copy with its own weights;
* :func:`with_aux_head` / :func:`main_head`: a second head trained beside ``"logits"``
  (the generalist's auxiliary fine-class head), and the model without it again.

All return flat functional models, which tfmot can quantize.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from supersub_tf.errors import ConfigError
from supersub_tf.models import blocks
from supersub_tf.models.registry import check_num_classes

if TYPE_CHECKING:
    import tf_keras as keras


def features_output(model: keras.Model):
    """The output tensor of ``model``'s ``"features"`` layer.

    Raises:
        ConfigError: When the model has no ``"features"`` layer (not built by this package).
    """
    try:
        layer = model.get_layer(blocks.FEATURES_LAYER)
    except ValueError:
        raise ConfigError(f"model {model.name!r} has no {blocks.FEATURES_LAYER!r} layer; "
                          "build it with supersub_tf.models.create_model") from None
    return layer.output


def trunk(model: keras.Model, name: str | None = None) -> keras.Model:
    """The feature extractor of ``model``: its input to the ``"features"`` output.

    The trunk shares layers and weights with ``model``: training either trains both.
    """
    import tf_keras as keras

    return keras.Model(model.inputs, features_output(model), name=name or f"{model.name}_trunk")


def with_head(model: keras.Model, num_classes: int, name: str | None = None) -> keras.Model:
    """``model``'s trunk (shared layers and weights) under a new float32 ``"logits"`` Dense.

    Args:
        model: A model built by :func:`~supersub_tf.models.create_model` (or one of these
            helpers); its own head is left out, not modified.
        num_classes: Size of the new head.
        name: Name of the new model; defaults to ``model``'s name.

    Returns:
        A flat functional model whose trunk variables are ``model``'s own variables.
    """
    import tf_keras as keras

    outputs = blocks.logits_head(features_output(model), check_num_classes(num_classes))
    return keras.Model(model.inputs, outputs, name=name or model.name)


AUX_LOGITS_LAYER = "aux_fine_logits"


def with_aux_head(model: keras.Model, num_classes: int) -> keras.Model:
    """``model`` with a second float32 Dense head on its features, ``"aux_fine_logits"``.

    The two-output model shares every layer with ``model``; Keras trains it with one
    loss per output (named by these layer names).
    """
    import tf_keras as keras

    aux = blocks.logits_head(features_output(model), check_num_classes(num_classes),
                             name=AUX_LOGITS_LAYER)
    logits = model.get_layer(blocks.LOGITS_LAYER).output
    return keras.Model(model.inputs, [logits, aux], name=model.name)


def main_head(model: keras.Model, name: str | None = None) -> keras.Model:
    """``model`` up to its ``"logits"`` layer only (shared layers and weights): a
    two-head model as the one-head model every later stage expects."""
    import tf_keras as keras

    return keras.Model(model.inputs, model.get_layer(blocks.LOGITS_LAYER).output,
                       name=name or model.name)


def aux_head(model: keras.Model) -> keras.Model:
    """``model`` up to its ``"aux_fine_logits"`` layer (shared layers and weights)."""
    import tf_keras as keras

    return keras.Model(model.inputs, model.get_layer(AUX_LOGITS_LAYER).output,
                       name=f"{model.name}_aux")


def copy_model(model: keras.Model, name: str | None = None,
               custom_objects: dict[str, Any] | None = None) -> keras.Model:
    """An independent copy of ``model``: same architecture and weight values, own variables.

    Args:
        model: Any functional model.
        name: Name of the copy; defaults to ``model``'s name.
        custom_objects: Classes the clone needs to rebuild layers from their configs (e.g.
            tfmot's quantization wrappers when copying a quantized model).
    """
    import tf_keras as keras

    with keras.utils.custom_object_scope(custom_objects or {}):
        clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    if name:
        clone._name = name  # Keras models have no public setter for their name.
    return clone


def flatness_problems(model: keras.Model) -> list[str]:
    """Why tfmot's ``quantize_model`` would reject ``model``; empty when it is flat.

    Reports a subclassed (not functional) model, nested models and Lambda layers.
    """
    import tf_keras as keras

    problems = []
    if not getattr(model, "_is_graph_network", False):
        problems.append(f"{model.name} is not a functional model (subclassed?)")
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            problems.append(f"nested model {layer.name}")
        elif isinstance(layer, keras.layers.Lambda):
            problems.append(f"Lambda layer {layer.name}")
    return problems
