"""Consistency checks of a Super-Sub system before it is stored (and of a head when read).

:func:`~supersub_tf.deltas.storage.save_system` refuses a system that could not be loaded
back consistently: specialists that are not exactly the hierarchy's superclasses, delta
layers or shapes that differ between specialists or from the generalist's kernels, heads
of the wrong size, other bit widths than the settings say. Each check raises
:class:`~supersub_tf.errors.StorageError` naming the specialist and the layer.
:func:`trunk_fingerprint` identifies the trunk (the base network) a system's specialists
were trained on, so a specialist moved into another system is refused on load.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from supersub_tf.deltas.delta_set import DeltaSet
from supersub_tf.errors import StorageError
from supersub_tf.hierarchy import Hierarchy
from supersub_tf.models.blocks import LOGITS_LAYER

if TYPE_CHECKING:
    import tf_keras as keras


def kernel_shapes(generalist: keras.Model) -> dict[str, tuple[int, ...]]:
    """Layer name -> shape of its first weight (the kernel), for layers with weights."""
    return {layer.name: tuple(int(d) for d in layer.weights[0].shape)
            for layer in generalist.layers if layer.weights}


#: Hex digits kept of the trunk's sha256: 128 bits tell trunks apart and keep the
#: specialist files' headers small (the storage argument counts their bytes).
FINGERPRINT_DIGITS = 32


def trunk_fingerprint(trunk: keras.Model) -> str:
    """What identifies a trunk's weights: the sha256 of every weight array (shape, dtype
    and little-endian bytes, in the model's weight order), its first 32 hex digits.

    Weight arrays rather than the weights file, because the HDF5 file's bytes also hold
    layer names that differ between two builds of the same network. A delta specialist
    only means something on the exact trunk it was trained on, so the stored system
    records this in its manifest and in every specialist file, and refuses a mismatch.
    """
    digest = hashlib.sha256()
    for weight in trunk.get_weights():  # model.weights order: fixed by the architecture
        array = np.ascontiguousarray(weight)
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{array.dtype.str}{list(array.shape)};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:FINGERPRINT_DIGITS]


def delta_layout(generalist: keras.Model,
                 delta_sets: Mapping[str, DeltaSet]) -> list[tuple[str, tuple[int, ...]]]:
    """The delta layers (generalist order) and kernel shapes all specialists share.

    Raises:
        StorageError: When specialists differ in their delta layers or shapes, or a delta
            names a layer the generalist lacks or has another kernel shape.
    """
    kernels = kernel_shapes(generalist)
    first_name, first = next(iter(delta_sets.items()))
    layout = {name: tuple(q.shape) for name, q in first.deltas.items()}
    for name, delta_set in delta_sets.items():
        shapes = {layer: tuple(q.shape) for layer, q in delta_set.deltas.items()}
        if shapes != layout:
            raise StorageError(f"specialist {name!r} has delta layers/shapes {shapes}, but "
                            f"specialist {first_name!r} has {layout}; all must share them")
    for layer, shape in layout.items():
        if layer not in kernels:
            raise StorageError(f"delta layer {layer!r} is not a layer with weights of the "
                            "generalist")
        if kernels[layer] != shape:
            raise StorageError(f"delta of layer {layer!r} has shape {shape}, the generalist's "
                            f"kernel {kernels[layer]}")
    order = [layer.name for layer in generalist.layers]
    return sorted(layout.items(), key=lambda item: order.index(item[0]))


def stage_one_head(delta_settings: Mapping[str, Any]) -> str:
    """``fine`` for a system built on the vanilla network (``delta_settings["base"]``),
    ``superclass`` for the paper's generalist (also every system stored before the
    setting existed)."""
    return "fine" if delta_settings.get("base") == "vanilla" else "superclass"


def stage_one_outputs(hierarchy: Hierarchy, delta_settings: Mapping[str, Any]) -> int:
    """How many outputs the system's stage-1 network (its trunk's own head) has."""
    return (hierarchy.num_classes if stage_one_head(delta_settings) == "fine"
            else hierarchy.num_superclasses)


def check_inputs(generalist: keras.Model, delta_sets: Mapping[str, DeltaSet],
                 hierarchy: Hierarchy, backbone: Mapping[str, Any],
                 delta_settings: Mapping[str, Any]) -> None:
    """Rejects a system that could not be loaded back consistently.

    Raises:
        StorageError: On a missing backbone or delta setting, specialists that are not
            exactly the hierarchy's superclasses, a generalist or specialist head of the
            wrong size, or deltas of another bit width than ``delta_settings["bits"]``.
    """
    missing = [key for key in ("model", "width", "image_size") if key not in backbone]
    if missing:
        raise StorageError(f"backbone is missing {missing} (needs model, width, image_size)")
    if "bits" not in delta_settings:
        raise StorageError("delta_settings needs 'bits' (an int, or None for float deltas)")
    names = hierarchy.superclass_names
    if sorted(delta_sets) != sorted(names):
        raise StorageError(f"specialists {sorted(delta_sets)} do not match the hierarchy's "
                        f"superclasses {sorted(names)}")
    outputs, wanted = int(generalist.output_shape[-1]), stage_one_outputs(hierarchy,
                                                                          delta_settings)
    if outputs != wanted or backbone.get("num_classes", outputs) != outputs:
        what = ("fine classes (base: vanilla)" if stage_one_head(delta_settings) == "fine"
                else "superclasses")
        raise StorageError(f"the stage-1 network has {outputs} outputs and backbone "
                           f"num_classes {backbone.get('num_classes')}, the hierarchy "
                           f"{wanted} {what}")
    layers = {layer.name: len(layer.weights) for layer in generalist.layers}
    bits, catch_all = delta_settings["bits"], bool(delta_settings.get("catch_all", False))
    for name, delta_set in delta_sets.items():
        check_delta_set(name, delta_set, bits, layers)
        if delta_set.catch_all != catch_all:
            raise StorageError(f"specialist {name!r} has catch_all={delta_set.catch_all}, "
                            f"delta_settings says catch_all={catch_all}")
        check_head(f"specialist {name!r}", delta_set, hierarchy.num_subclasses(name))


def check_head(where: str, delta_set: DeltaSet, num_subclasses: int) -> None:
    """StorageError unless the head has one output per subclass (plus "other" for a
    catch-all specialist)."""
    head = delta_set.owned.get(LOGITS_LAYER)
    wanted = num_subclasses + int(delta_set.catch_all)
    if head is None or np.shape(head[0])[-1] != wanted:
        got = "no logits weights" if head is None else f"{np.shape(head[0])[-1]} outputs"
        raise StorageError(f"{where}: its head has {got}, expected {wanted} ({num_subclasses} "
                        f"subclasses{' + other' if delta_set.catch_all else ''})")


def check_delta_set(name: str, delta_set: DeltaSet, bits: int | None,
                    layers: Mapping[str, int]) -> None:
    """Checks one specialist's bit width, superclass and owned layers (see check_inputs)."""
    if delta_set.superclass != name:
        raise StorageError(f"delta set stored under {name!r} is for superclass "
                        f"{delta_set.superclass!r}")
    wrong = [layer for layer, q in delta_set.deltas.items() if q.bits != bits]
    if delta_set.bits != bits or wrong:
        raise StorageError(f"specialist {name!r} has {delta_set.bits}-bit deltas (layers "
                        f"{wrong} differ), delta_settings says {bits}")
    for layer, weights in delta_set.owned.items():
        if layers.get(layer) != len(weights):
            raise StorageError(f"specialist {name!r} owns layer {layer!r} with {len(weights)} "
                            f"arrays; the generalist's layer has {layers.get(layer)}")
