"""Delta specialists: the generalist's frozen weights plus small trained deltas.

The Super-Sub framework gives every superclass a specialist over its subclasses. As a
delta specialist it costs little: it keeps the generalist's architecture and weights,
and trains only

* a ``delta`` on each convolution kernel of its *delta region* (all convolutions, or
  those of stages ``from_stage`` and later), optionally quantization-aware to k bits;
* a new ``"logits"`` head over the superclass's subclasses;
* optionally the region's batch-norm parameters and statistics.

Everything else is frozen (``trainable=False``, so batch norms run in inference mode)
and stays bit-identical to the generalist. :func:`extract_delta_set` reads what was
trained back out as a :class:`~supersub_tf.deltas.delta_set.DeltaSet`, and
:func:`materialize` turns a generalist plus a delta set into an ordinary model, the
reference against which swapping deltas in place is checked.

The delta region is defined by layer names, mapped onto trunk stages by
:func:`supersub_tf.models.stages.layer_stage` (the project's ResNets' ``stage{t}_...`` and
Keras' applications' own names). Plain and depthwise convolutions both get deltas
(:mod:`supersub_tf.deltas.layers`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tf_keras as keras

from supersub_tf.deltas.delta_set import DeltaSet, QuantizedTensor
from supersub_tf.deltas.layers import delta_layer_for, is_delta_layer
from supersub_tf.deltas.quantization import (
    custom_objects, is_quantized_delta_layer, quantize_deltas, quantized_delta)
from supersub_tf.errors import ConfigError
from supersub_tf.models import blocks
from supersub_tf.models.registry import check_num_classes
from supersub_tf.models.stages import layer_stage


def in_delta_region(name: str, from_stage: int) -> bool:
    """Whether layer ``name`` is trained (or gets a delta) for a given ``from_stage``.

    ``from_stage=0`` is the whole network; ``s > 0`` is the layers of stages ``>= s``.
    The head is never part of the region: it is replaced, not adapted.
    """
    if name == blocks.LOGITS_LAYER:
        return False
    if from_stage == 0:
        return True
    stage = layer_stage(name)
    return stage is not None and stage >= from_stage


def _is_plain_conv(layer: keras.layers.Layer) -> bool:
    """A convolution that can get a delta: exactly a Conv2D or a DepthwiseConv2D (not a
    delta layer already, not a transposed or separable convolution)."""
    return delta_layer_for(layer) is not None


def _check_region(generalist: keras.Model, from_stage: int) -> None:
    """ConfigError unless ``from_stage`` leaves at least one convolution in the region."""
    if isinstance(from_stage, bool) or not isinstance(from_stage, int) or from_stage < 0:
        raise ConfigError(f"from_stage must be a non-negative integer, got {from_stage!r}")
    if not any(_is_plain_conv(layer) and in_delta_region(layer.name, from_stage)
               for layer in generalist.layers):
        stages = sorted({s for layer in generalist.layers
                         if (s := layer_stage(layer.name)) is not None})
        raise ConfigError(f"from_stage={from_stage} leaves no convolution of "
                          f"{generalist.name} to adapt (its stages: {stages or 'none'})")


def _clone_function(num_classes: int, from_stage: int, train_batchnorm: bool):
    """The clone_model function turning a generalist layer into its specialist layer."""
    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name == blocks.LOGITS_LAYER:
            return keras.layers.Dense(num_classes, dtype="float32", name=blocks.LOGITS_LAYER)
        config = layer.get_config()
        region = in_delta_region(layer.name, from_stage)
        if region and (delta := delta_layer_for(layer)) is not None:
            return delta
        if isinstance(layer, keras.layers.BatchNormalization) and region and train_batchnorm:
            config["trainable"] = True
        else:
            config["trainable"] = False
        return layer.__class__.from_config(config)

    return clone


def _copy_weights(specialist: keras.Model, generalist: keras.Model) -> None:
    """Copies every generalist weight into the specialist (bases of delta layers included),
    except the new head's."""
    for layer in specialist.layers:
        if layer.name == blocks.LOGITS_LAYER or not layer.weights:
            continue
        source = generalist.get_layer(layer.name)
        if is_delta_layer(layer):  # a convolution's weights: [kernel] or [kernel, bias]
            layer.set_base(*source.get_weights())
        else:
            layer.set_weights(source.get_weights())


def head_rows(model: keras.Model, classes) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel [F, n], bias [n])``: the columns of ``model``'s ``"logits"`` head for
    ``classes`` (e.g. the vanilla network's head restricted to one superclass's fine
    labels, the start of that superclass's specialist head)."""
    kernel, bias = model.get_layer(blocks.LOGITS_LAYER).get_weights()
    classes = np.asarray(classes, np.int64)
    return kernel[:, classes].copy(), bias[classes].copy()


def _init_head(head: keras.layers.Dense, kernel: np.ndarray, bias: np.ndarray) -> None:
    """Writes ``(kernel, bias)`` into the first columns of ``head`` (all of them, or all
    but a catch-all specialist's "other" output, which keeps its random start)."""
    current_kernel, current_bias = head.get_weights()
    n = kernel.shape[1]
    if kernel.shape[0] != current_kernel.shape[0] or n > current_kernel.shape[1]:
        raise ConfigError(f"head_init kernel {kernel.shape} does not fit the specialist "
                          f"head {current_kernel.shape}")
    current_kernel[:, :n], current_bias[:n] = kernel, bias
    head.set_weights([current_kernel, current_bias])


def build_delta_specialist(generalist: keras.Model, num_classes: int, *, from_stage: int = 0,
                           train_batchnorm: bool = True, bits: int | None = 8,
                           name: str | None = None,
                           head_init: tuple[np.ndarray, np.ndarray] | None = None
                           ) -> keras.Model:
    """A specialist that adapts ``generalist`` with per-kernel deltas and a new head.

    Args:
        generalist: A trained flat functional model from :mod:`supersub_tf.models`
            (layers ``"features"`` and ``"logits"``); it is not modified and shares no
            variable with the specialist.
        num_classes: Number of subclasses the new head predicts.
        from_stage: 0 gives every convolution (stem included) a delta; ``s > 0`` only
            those of stages ``s`` and later, freezing everything before.
        train_batchnorm: Train the region's batch norms (gamma, beta and moving
            statistics); otherwise they stay the generalist's, in inference mode.
        bits: Quantization-aware training of the deltas to this many bits per output
            channel (2 to 8); None trains float deltas.
        name: Model name; defaults to ``"<generalist>_specialist"``.
        head_init: ``(kernel, bias)`` the new head starts from (:func:`head_rows`; for a
            catch-all specialist, its first ``num_classes - 1`` outputs); random when None.
            With the vanilla network's rows of a superclass, the untrained specialist
            gives exactly the vanilla network's probabilities renormalised over it.

    Returns:
        A flat functional model computing exactly the generalist's features until
        trained: its trainable weights are the region's deltas, the head and (with
        ``train_batchnorm``) the region's batch-norm gamma and beta.

    Raises:
        ConfigError: When ``from_stage`` selects no convolution, or ``num_classes``
            is not a positive integer.
    """
    num_classes = check_num_classes(num_classes)
    _check_region(generalist, from_stage)
    with keras.utils.custom_object_scope(custom_objects()):
        specialist = keras.models.clone_model(
            generalist, clone_function=_clone_function(num_classes, from_stage,
                                                       train_batchnorm))
    _copy_weights(specialist, generalist)
    if head_init is not None:
        _init_head(specialist.get_layer(blocks.LOGITS_LAYER), *head_init)
    specialist._name = name or f"{generalist.name}_specialist"  # no public name setter
    return specialist if bits is None else quantize_deltas(specialist, bits)


def iter_delta_layers(model: keras.Model) -> Iterator[tuple[keras.layers.Layer,
                                                           keras.layers.Layer]]:
    """``(layer, delta layer)`` for each delta layer of ``model``: the layer itself, or a
    QAT wrapper and the delta layer (plain or depthwise) inside it."""
    for layer in model.layers:
        if is_delta_layer(layer):
            yield layer, layer
        elif is_quantized_delta_layer(layer):
            yield layer, layer.layer


def delta_layer_names(model: keras.Model) -> list[str]:
    """Names of ``model``'s delta layers, as in the generalist (without ``quant_``)."""
    return [inner.name for _, inner in iter_delta_layers(model)]


def _delta_of(layer: keras.layers.Layer, inner: keras.layers.Layer,
              bits: int | None) -> QuantizedTensor:
    """The delta a specialist layer computes with, stored at ``bits``.

    A float delta layer is quantized after training (or kept float for ``bits=None``);
    a QAT layer gives its own fake-quantized delta, which needs ``bits`` to match its
    training bits (``bits=None`` keeps that delta as float32).
    """
    if layer is inner:
        return QuantizedTensor.quantize(inner.delta.numpy(), bits)
    trained = quantized_delta(layer)
    if bits is None:
        return QuantizedTensor.quantize(trained.dequantize(), None)
    if bits != trained.bits:
        raise ValueError(f"{inner.name} was trained with {trained.bits}-bit deltas, "
                         f"cannot store them with {bits} bits")
    return trained


def _owned_weights(specialist: keras.Model) -> dict[str, list[np.ndarray]]:
    """The head and every other trainable non-delta layer with weights (the region's
    batch norms when they were trained), by layer name."""
    delta_layers = {id(layer) for layer, _ in iter_delta_layers(specialist)}
    return {layer.name: [np.array(w, np.float32) for w in layer.get_weights()]
            for layer in specialist.layers
            if id(layer) not in delta_layers and layer.trainable and layer.weights}


def extract_delta_set(specialist: keras.Model, superclass: str,
                      bits: int | None, catch_all: bool = False) -> DeltaSet:
    """Reads a trained delta specialist out as a :class:`DeltaSet`.

    Args:
        specialist: A model from :func:`build_delta_specialist` (trained).
        superclass: The superclass the specialist is for (recorded in the set).
        bits: Storage bits of the deltas. For a QAT specialist it must equal its
            training bits (the codes are exactly those the model computes with) or be
            None (the same deltas as float32); a float specialist is quantized after
            training (None keeps its float deltas).
        catch_all: Its head's last output is "not my superclass".

    Returns:
        Deltas keyed by the generalist's layer names, and ``owned`` weights: the
        ``"logits"`` head and the trained batch-norm layers (``get_weights()`` order:
        gamma, beta, moving mean, moving variance).
    """
    deltas = {inner.name: _delta_of(layer, inner, bits)
              for layer, inner in iter_delta_layers(specialist)}
    if not deltas:
        raise ValueError(f"model {specialist.name} has no delta layers")
    return DeltaSet(superclass=superclass, bits=bits, deltas=deltas,
                    owned=_owned_weights(specialist), catch_all=catch_all)


def materialize(generalist: keras.Model, delta_set: DeltaSet,
                name: str | None = None) -> keras.Model:
    """The specialist as a separate ordinary model: kernels ``W + delta``, owned weights.

    Args:
        generalist: The generalist the deltas were trained on (not modified).
        delta_set: The specialist's deltas and owned weights; its ``"logits"`` weights
            set the head size.
        name: Model name; defaults to ``"<generalist>_<superclass>"``.

    Returns:
        A plain model of the generalist's architecture (no delta layers, no
        quantization) with the specialist's head.

    Raises:
        ValueError: When the set names a layer the generalist lacks, gives a delta a
            shape other than its kernel's, or has no ``"logits"`` weights.
    """
    head = delta_set.owned.get(blocks.LOGITS_LAYER)
    if head is None:
        raise ValueError(f"delta set of {delta_set.superclass!r} has no "
                         f"{blocks.LOGITS_LAYER!r} weights")
    names = {layer.name for layer in generalist.layers}
    unknown = sorted((set(delta_set.deltas) | set(delta_set.owned)) - names)
    if unknown:
        raise ValueError(f"generalist {generalist.name} has no layers {unknown}")

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name == blocks.LOGITS_LAYER:
            return keras.layers.Dense(head[0].shape[-1], dtype="float32",
                                      name=blocks.LOGITS_LAYER)
        return layer.__class__.from_config(layer.get_config())

    model = keras.models.clone_model(generalist, clone_function=clone)
    for layer in model.layers:
        if layer.name in delta_set.owned:
            layer.set_weights(delta_set.owned[layer.name])
        elif layer.weights:
            layer.set_weights(_adapted_weights(generalist.get_layer(layer.name), delta_set))
    model._name = name or f"{generalist.name}_{delta_set.superclass}"  # no public setter
    return model


def _adapted_weights(layer: keras.layers.Layer, delta_set: DeltaSet) -> list[np.ndarray]:
    """``layer``'s weights, its kernel (the first weight of a plain or depthwise
    convolution) plus its delta when the set has one."""
    weights = layer.get_weights()
    delta = delta_set.deltas.get(layer.name)
    if delta is None:
        return weights
    if delta.shape != weights[0].shape:
        raise ValueError(f"delta of {layer.name} has shape {delta.shape}, "
                         f"its kernel {weights[0].shape}")
    weights[0] = weights[0] + delta.dequantize()
    return weights
