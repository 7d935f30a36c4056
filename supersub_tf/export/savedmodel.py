"""The whole Super-Sub system as one TensorFlow SavedModel: both stages in its graph.

:func:`export_savedmodel` writes a SavedModel with two signatures that return the same
outputs (:data:`OUTPUTS`): per image the superclass, the subclass (local index and
global fine label), their probabilities and names, ``p(superclass)``, the combined
``fine_probs`` (zero outside the routed superclass, for top-k lists) and ``valid``.

* ``serving_default`` takes ``images``: RGB pixels, ``uint8 [N, H, W, 3]`` at the
  system's size (any ``N``, including 0), already resized by the caller; ``valid`` is
  all True.
* ``image_bytes`` takes ``image_bytes``: a ``string [N]`` tensor of encoded files
  (what ``tf.io.decode_image`` reads: JPEG, PNG, GIF's first frame, BMP, WebP; any
  size up to :data:`MAX_PIXELS`), the form TF Serving's REST API and most serving
  stacks send (base64 ``{"b64": ...}`` in JSON); a scalar string is a batch of one,
  any other rank is refused with an error naming the shape expected. The graph decodes
  each file with training's decoder, turns it upright by its EXIF orientation (the
  same transposes as ``predict`` and the LiteRT runtime, which read it with Pillow)
  and resizes it to the system's size with the training
  pipeline's own resize (:func:`supersub_tf.data.pipeline.resize`: antialiased
  bilinear to a square, no crop). **One bad file never fails the batch**: a file that
  is not a valid image (empty, truncated, garbage, over :data:`MAX_PIXELS`) gets
  ``valid = False``, labels -1, zero probabilities and empty names
  (:data:`INVALID_ANSWER`), and every other file the answer it gets when sent alone
  (the same labels; probabilities to float rounding). The reader is
  :mod:`supersub_tf.export.image_bytes`.

A signature called with a wrong keyword fails with TensorFlow's binding error, which
prints the whole input; :func:`call_signature` names the inputs instead, and
``supersub_export.json`` records them (``signatures``).

Inside the graph:

1. the images are normalised as the training pipeline does (the system's
   ``normalization`` mode, :func:`supersub_tf.data.pipeline.normalize`);
2. stage 1 gives ``p(superclass)``: a generalist's softmax, or for a system built on the
   vanilla network (``base: vanilla``) its fine probabilities summed per superclass;
   each image goes to the specialists its routing picks, as
   ``SuperSubPipeline.predict`` routes it (:mod:`supersub_tf.supersub.routing`): its
   most likely superclass (``hard``), the ``k`` most likely (``topk``), every one
   (``soft``: ``p(fine) = p(s) * p(fine | s)``, S passes) or, below stage 1's
   confidence ``tau``, the ``k`` most likely and above it none (``gated``: the vanilla
   network's own answer); the routing, ``k`` and ``tau`` are chosen at export and
   recorded in ``supersub_export.json``;
3. a ``tf.while_loop`` over the superclasses takes, for each one that got images, its
   specialist's weights as tensors (``W + codes * scales`` for delta layers, its own
   head and batch norms), runs its images through the same layer graph and scatters
   the results back in order.

Why this design:

* **Small on disk.** The deltas travel in their stored form: each specialist's k-bit
  codes packed densely into bytes as in the system's ``.delta`` files
  (:func:`~supersub_tf.deltas.packing.pack_codes`, all its delta layers in one
  stream), unpacked in the graph with bitwise ops, plus float32 per-channel scales.
  The variables hold the float32 generalist once and per specialist only its codes,
  scales and owned weights, so the SavedModel is about the size of the system folder,
  not ``N + 1`` networks.
* **A graph that does not grow with N.** The weights are four variables, each
  specialist one row of the per-specialist ones, and stage 2 is one copy of the
  network inside a loop that picks row ``s``: the graph holds two copies of the
  network (stages 1 and 2) whatever the number of superclasses, and exporting takes
  seconds. (One copy per specialist, or one variable per weight, made the graph of a
  10-superclass ResNet-20 five times larger than its weights.)
* **Thread-safe serving.** Nothing is assigned: every weight a specialist uses is a
  tensor computed per call, and the layers are replayed by
  :class:`~supersub_tf.models.functional.FunctionalForward` (pure ``tf.nn`` ops), so
  concurrent requests never interfere.
* **Self-contained.** The graph needs only TensorFlow: ``tf.saved_model.load(path)
  .signatures["serving_default"]`` works where this package is not installed. Wrong
  dtypes are refused by the signature, wrong shapes by an in-graph check, both with
  an ``InvalidArgumentError`` that names the expected type or shape. A
  ``supersub_export.json`` in the SavedModel folder says what it is (hierarchy, image
  size, normalization, bits, variable layout, source system and the sha256 of its
  manifest, versions).
* **Atomic.** The folder is written beside the target, loaded back and run once, then
  swapped into place (:func:`~supersub_tf.atomic.atomic_directory`): a failed export
  leaves the previous one untouched, and an unrelated folder is never replaced.

Preprocessing is the training pipeline's evaluation preprocessing for images already at
the system's size; resizing is the caller's job (the signature takes only that size).
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from supersub_tf.atomic import atomic_directory
from supersub_tf.choices import SAVEDMODEL_ROUTINGS
from supersub_tf.data.pipeline import normalize
from supersub_tf.deltas.delta_set import DeltaSet, levels
from supersub_tf.deltas.packing import pack_codes, packed_size
from supersub_tf.deltas.storage import MANIFEST, SuperSubSystem, load_system
from supersub_tf.errors import ExportError
from supersub_tf.export.image_bytes import MAX_PIXELS, decode_batch
from supersub_tf.manifest_files import sha256_file
from supersub_tf.models import blocks
from supersub_tf.models.functional import FunctionalForward

FORMAT_NAME = "supersub-savedmodel"
FORMAT_VERSION = 1
MARKER = "saved_model.pb"
METADATA_FILE = "supersub_export.json"
SIGNATURE = "serving_default"
INPUT_NAME = "images"
BYTES_SIGNATURE = "image_bytes"
BYTES_INPUT_NAME = "image_bytes"
#: The routing modes this graph implements (:meth:`SuperSubModule._serve`): every
#: inference mode of ``supersub/routing.py`` (``oracle`` needs the truth). The names live
#: in :mod:`supersub_tf.choices` because the config validates ``export.savedmodel_routing``
#: below this layer. Tests run each mode against ``supersub/routing.py``.
EXPORT_ROUTINGS = SAVEDMODEL_ROUTINGS
# Output name -> (dtype, shape) for a batch of N images and S superclasses.
OUTPUTS = {
    "superclass": ("int32", ["N"]),
    "subclass": ("int32", ["N"]),
    "fine": ("int32", ["N"]),
    "superclass_prob": ("float32", ["N"]),
    "subclass_prob": ("float32", ["N"]),
    "fine_prob": ("float32", ["N"]),
    "superclass_probs": ("float32", ["N", "S"]),
    "fine_probs": ("float32", ["N", "C"]),
    "superclass_name": ("string", ["N"]),
    "fine_name": ("string", ["N"]),
    "fine_id": ("string", ["N"]),
    "valid": ("bool", ["N"]),
}
#: What a file that is not a valid image gets, per output dtype (``valid`` is False).
INVALID_ANSWER = {"int32": -1, "float32": 0.0, "string": "", "bool": False}
_CHECK_BATCH = 8


# --------------------------------------------------------------------------- bit unpacking
def unpack_codes_tf(packed: tf.Tensor, bits: int, shape: tuple[int, ...]) -> tf.Tensor:
    """In-graph inverse of :func:`~supersub_tf.deltas.packing.pack_codes`: int32 codes.

    The stream is little-endian, value ``i`` in bits ``i*k .. i*k + k - 1``; values
    come in whole-byte groups (``8 / gcd(k, 8)`` values in ``k / gcd(k, 8)`` bytes), so
    each group is read as one integer and every value is a shift and a mask away.

    Args:
        packed: ``uint8`` bytes, ``ceil(prod(shape) * bits / 8)`` of them.
        bits: Bits per code, 2 to 8.
        shape: The shape of the codes (static).

    Returns:
        ``int32`` codes of ``shape`` in ``[-(2^(k-1) - 1), 2^(k-1) - 1]``.
    """
    per_group = 8 // math.gcd(bits, 8)
    group_bytes = per_group * bits // 8
    count = int(np.prod(shape, dtype=np.int64))
    groups = -(-count // per_group)
    # Up to 3 bytes per group (k = 2, 4, 6, 8 and 3) fit int32; 5 and 7 bits need int64.
    dtype = tf.int32 if group_bytes <= 3 else tf.int64
    data = tf.cast(packed, dtype)
    data = tf.pad(data, [[0, groups * group_bytes - packed_size(count, bits)]])
    data = tf.reshape(data, [groups, group_bytes])
    byte_shifts = tf.constant([8 * j for j in range(group_bytes)], dtype)
    # The bytes' bits do not overlap, so their sum is their bitwise or.
    words = tf.reduce_sum(tf.bitwise.left_shift(data, byte_shifts), axis=1, keepdims=True)
    value_shifts = tf.constant([bits * i for i in range(per_group)], dtype)
    unsigned = tf.bitwise.bitwise_and(tf.bitwise.right_shift(words, value_shifts),
                                      tf.constant(2 ** bits - 1, dtype))
    unsigned = tf.reshape(unsigned, [-1])[:count]
    return tf.reshape(tf.cast(unsigned, tf.int32) - levels(bits), shape)


# --------------------------------------------------------------------------- flat layouts
Shapes = dict[str, list[tuple[int, ...]]]  # name -> shapes of its arrays, in flat order


def flatten(arrays: Mapping[str, list[np.ndarray]],
            dtype: Any = np.float32) -> tuple[np.ndarray, Shapes]:
    """Concatenates ``name -> [arrays]`` into one flat vector, and their shapes to undo it."""
    shapes = {name: [tuple(int(d) for d in np.shape(v)) for v in values]
              for name, values in arrays.items()}
    parts = [np.asarray(v).astype(dtype).reshape(-1) for values in arrays.values() for v in values]
    return (np.concatenate(parts) if parts else np.zeros(0, dtype)), shapes


def unflatten(flat: tf.Tensor, shapes: Shapes) -> dict[str, list[tf.Tensor]]:
    """Inverts :func:`flatten` in the graph (one split, then a reshape per array)."""
    flat_shapes = [shape for values in shapes.values() for shape in values]
    if not flat_shapes:
        return {name: [] for name in shapes}
    pieces = iter(tf.split(flat, [int(np.prod(shape, dtype=np.int64)) for shape in flat_shapes]))
    return {name: [tf.reshape(next(pieces), shape) for shape in values]
            for name, values in shapes.items()}


def call_signature(signature: Any, **inputs: Any) -> dict[str, tf.Tensor]:
    """Calls a loaded SavedModel signature, first checking its input names.

    TensorFlow answers a wrong keyword with a binding error that prints every input
    array; this raises one line naming the inputs the signature takes instead.

    Args:
        signature: ``tf.saved_model.load(path).signatures[name]``.
        **inputs: The tensors, by input name.

    Raises:
        ExportError: When the names differ from the signature's.
    """
    expected = signature.structured_input_signature[1]
    if set(inputs) != set(expected):
        takes = ", ".join(f"{name} ({spec.dtype.name}, shape {spec.shape})"
                          for name, spec in sorted(expected.items()))
        raise ExportError(f"the signature takes {takes}; got {', '.join(sorted(inputs))}")
    return signature(**inputs)


# --------------------------------------------------------------------------- the module
class SuperSubModule(tf.Module):
    """Both stages of a Super-Sub system as one ``tf.Module`` with a serving function.

    ``serve(images)`` is the ``serving_default`` signature of the exported SavedModel
    (see the module docstring); it can also be called directly, before exporting.

    The weights are four variables, so that the graph and the variable count do not grow
    with the number of superclasses ``S``:

    * ``generalist_weights``: float32 ``[P]``, every generalist weight, flattened;
    * ``delta_codes``: uint8 ``[S, B]``, each specialist's delta codes of all its delta
      layers, concatenated and packed (float32 ``[S, D]`` values for float deltas);
    * ``delta_scales``: float32 ``[S, C]``, their per-output-channel scales, concatenated
      (absent for float deltas);
    * ``owned_weights``: float32 ``[S, O]``, each specialist's owned layers (head columns
      padded to the largest superclass; the padding is masked out of the softmax).

    Stage 2 is one ``tf.while_loop`` over the superclasses with one copy of the network
    in its body, which picks row ``s`` of each variable and runs it once on every image
    routed to ``s`` (an image routed to no specialist, gated routing's confident ones,
    costs stage 1 only).

    Args:
        system: A loaded system (its generalist is read, not modified).
        routing: ``hard``, ``topk``, ``soft`` or ``gated`` (:data:`EXPORT_ROUTINGS`).
        k: Superclasses per image of ``topk`` and of ``gated``'s unsure images.
        tau: ``gated``'s threshold on stage 1's confidence (``max p(fine)`` of a vanilla
            stage 1, ``max p(superclass)`` of a generalist).

    Raises:
        ExportError: When a specialist's deltas or owned weights do not fit the generalist,
            the specialists' delta layers or bit widths differ, or a head does not
            match the hierarchy (an unknown normalization fails as the system loads:
            :class:`~supersub_tf.deltas.backbone.Backbone`).
        ConfigError: When the generalist has a layer the functional pass cannot replay.
    """

    def __init__(self, system: SuperSubSystem, routing: str = "hard", k: int = 2,
                 tau: float = 0.5) -> None:
        super().__init__(name="supersub")
        if routing not in EXPORT_ROUTINGS:
            raise ExportError(f"the SavedModel routes {', '.join(EXPORT_ROUTINGS)}, not "
                              f"{routing!r} (oracle needs the true superclass)")
        if int(k) < 1 or not 0.0 <= float(tau) <= 1.01:
            raise ExportError(f"the SavedModel's routing needs k >= 1 and tau in [0, 1.01], "
                              f"got k={k}, tau={tau}")
        self.routing, self.k, self.tau = routing, int(k), float(tau)
        hierarchy = system.hierarchy
        self.stage_one_head = system.stage_one_head
        self._fine_to_superclass = np.asarray(hierarchy.fine_to_superclass, np.int32)
        names = hierarchy.superclass_names
        delta_sets = [system.delta_sets[name] for name in names]
        self.image_size = system.backbone.image_size
        self.normalization = system.backbone.normalization
        self._forward = FunctionalForward(system.generalist)
        for s, delta_set in enumerate(delta_sets):
            _check_exportable(self._forward, delta_set, hierarchy.num_subclasses(s))
        self.bits, self.delta_layers = _shared_delta_layers(delta_sets)
        base = self._forward.model_weights(system.generalist)
        flat, self._generalist_shapes = flatten(base)
        self.generalist_weights = tf.Variable(flat, trainable=False, name="generalist_weights")
        self._init_deltas(delta_sets)
        self._init_owned(delta_sets, base, [hierarchy.num_subclasses(s) for s in range(len(names))])
        self._num_superclasses = len(names)
        self._stage_one_outputs = (hierarchy.num_classes if self.stage_one_head == "fine"
                                   else len(names))
        self._fine_offsets = [int(hierarchy.fine_labels_of(s)[0]) for s in range(len(names))]
        self._superclass_names = list(names)
        self._class_names = list(hierarchy.class_names)
        self._class_ids = list(hierarchy.class_ids)
        spec = tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.uint8,
                             name=INPUT_NAME)
        self.serve = tf.function(self._serve, input_signature=[spec])
        # Any rank, so that a scalar (one file) is a batch of one; higher ranks are
        # refused in the graph with a message naming the expected shape.
        self.serve_bytes = tf.function(self._serve_bytes, input_signature=[
            tf.TensorSpec(None, tf.string, name=BYTES_INPUT_NAME)])

    # ------------------------------------------------------------------ weights
    def _init_deltas(self, delta_sets: list[DeltaSet]) -> None:
        """The ``delta_codes`` (and ``delta_scales``) variables and their layout."""
        values = [{layer: [d.deltas[layer].codes] for layer in self.delta_layers}
                  for d in delta_sets]
        if self.bits is None:
            rows = [flatten(v)[0] for v in values]
        else:
            rows = [pack_codes(flatten(v, np.int8)[0], self.bits) for v in values]
            scales = [flatten({layer: [d.deltas[layer].scales] for layer in self.delta_layers})
                      for d in delta_sets]
            self._scale_shapes = scales[0][1]
            self.delta_scales = tf.Variable(np.stack([flat for flat, _ in scales]),
                                            trainable=False, name="delta_scales")
        self._delta_shapes = flatten(values[0])[1]
        self._delta_count = int(sum(np.prod(shape) for [shape] in self._delta_shapes.values()))
        self.delta_codes = tf.Variable(np.stack(rows), trainable=False, name="delta_codes")

    def _init_owned(self, delta_sets: list[DeltaSet], base: Mapping[str, list[np.ndarray]],
                    subclasses: list[int]) -> None:
        """The ``owned_weights`` variable (heads padded to ``max(subclasses)``), its layout
        and the mask of each head's real columns."""
        order = list(base)
        layers = sorted({layer for d in delta_sets for layer in d.owned}, key=order.index)
        widest = max(subclasses)
        rows = []
        for delta_set in delta_sets:
            owned = {layer: delta_set.owned.get(layer, base[layer]) for layer in layers}
            kernel, *bias = owned[blocks.LOGITS_LAYER]
            pad = widest - kernel.shape[1]
            owned[blocks.LOGITS_LAYER] = [np.pad(kernel, [(0, 0), (0, pad)]),
                                          *[np.pad(b, [(0, pad)]) for b in bias]]
            flat, self._owned_shapes = flatten(owned)
            rows.append(flat)
        self.owned_weights = tf.Variable(np.stack(rows), trainable=False, name="owned_weights")
        self._head_mask = np.arange(widest)[None, :] < np.array(subclasses)[:, None]
        offsets = np.concatenate([[0], np.cumsum(subclasses)[:-1]])
        self._placement = np.zeros((len(subclasses), widest, int(sum(subclasses))), np.float32)
        for s, (offset, count) in enumerate(zip(offsets, subclasses)):
            self._placement[s, np.arange(count), offset + np.arange(count)] = 1.0

    def _generalist(self) -> dict[str, list[tf.Tensor]]:
        """The generalist's weights by layer, sliced out of ``generalist_weights``."""
        return unflatten(self.generalist_weights, self._generalist_shapes)

    def _specialist(self, s: tf.Tensor, base: Mapping[str, list[tf.Tensor]]
                    ) -> dict[str, list[tf.Tensor]]:
        """Specialist ``s``'s weights: ``W + codes * scales`` kernels, its owned layers."""
        codes = tf.gather(self.delta_codes, s)
        if self.bits is not None:
            codes = tf.cast(unpack_codes_tf(codes, self.bits, (self._delta_count,)), tf.float32)
            scales = unflatten(tf.gather(self.delta_scales, s), self._scale_shapes)
        deltas = unflatten(codes, self._delta_shapes)
        weights = dict(base)
        for layer in self.delta_layers:
            delta = deltas[layer][0] if self.bits is None else deltas[layer][0] * scales[layer][0]
            weights[layer] = [base[layer][0] + delta, *base[layer][1:]]
        weights.update(unflatten(tf.gather(self.owned_weights, s), self._owned_shapes))
        return weights

    # ------------------------------------------------------------------ serving
    def _serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        # A loaded signature checks dtypes but not shapes: check them here, by name.
        images = tf.ensure_shape(images, [None, self.image_size, self.image_size, 3],
                                 name="check_images_shape")
        x = normalize(images, self.normalization)
        n, count = tf.shape(x)[0], self._num_superclasses
        base = self._generalist()
        classes = len(self._class_ids)
        fine_to_superclass = tf.constant(self._fine_to_superclass)
        # An empty batch skips the networks: some CPU convolution kernels mishandle N = 0.
        stage_one = tf.cond(n > 0, lambda: tf.nn.softmax(self._forward(x, base)),
                            lambda: tf.zeros([0, self._stage_one_outputs], tf.float32))
        if self.stage_one_head == "fine":  # the vanilla network: sum each superclass's mass
            superclass_probs = tf.matmul(stage_one, tf.one_hot(fine_to_superclass, count))
        else:
            superclass_probs = stage_one
        superclass = tf.argmax(superclass_probs, axis=1, output_type=tf.int32)
        superclass_prob = tf.reduce_max(superclass_probs, axis=1)
        hard = self.routing == "hard"
        routed = self._routed(superclass_probs, stage_one)

        def stage2(s, subclass, subclass_prob, sub_given):
            # Each specialist's pass covers exactly the images routed to it (one pass
            # per specialist per batch, however many specialists an image goes to).
            rows = tf.where(routed[:, s])
            sub, prob, placed = tf.cond(
                tf.shape(rows)[0] > 0, lambda: self._stage2(s, tf.gather_nd(x, rows), base),
                lambda: (tf.zeros([0], tf.int32), tf.zeros([0], tf.float32),
                         tf.zeros([0, classes], tf.float32)))
            return (s + 1, tf.tensor_scatter_nd_update(subclass, rows, sub),
                    tf.tensor_scatter_nd_update(subclass_prob, rows, prob),
                    # add: an image routed to several blocks gets its row one at a time
                    tf.tensor_scatter_nd_add(sub_given, rows, placed))

        _, subclass, subclass_prob, sub_given = tf.while_loop(
            lambda s, *_: s < count, stage2,
            (tf.constant(0), tf.zeros([n], tf.int32), tf.zeros([n], tf.float32),
             tf.zeros([n, classes], tf.float32)))
        if hard:
            fine_probs = superclass_prob[:, None] * sub_given
        else:  # p(fine) = p(s) * p(fine | s) over the routed blocks; the answer its argmax
            fine_probs = tf.gather(superclass_probs, fine_to_superclass, axis=1) * sub_given
            unrouted = tf.logical_not(tf.reduce_any(routed, axis=1))
            if self.stage_one_head == "fine":  # gated's confident images: stage 1's answer
                fine_probs = tf.where(unrouted[:, None], stage_one, fine_probs)
            fine = tf.argmax(fine_probs, axis=1, output_type=tf.int32)
            superclass = tf.gather(fine_to_superclass, fine)
            superclass_prob = tf.gather(superclass_probs, superclass, batch_dims=1)
            subclass = fine - tf.gather(tf.constant(self._fine_offsets, tf.int32), superclass)
            # stage 2's p(subclass | s), or for an image no specialist saw p(fine) / p(s)
            subclass_prob = tf.where(
                unrouted, tf.gather(fine_probs, fine, batch_dims=1)
                / tf.maximum(superclass_prob, 1e-12), tf.gather(sub_given, fine, batch_dims=1))
        fine = tf.gather(tf.constant(self._fine_offsets, tf.int32), superclass) + subclass
        return {
            "superclass": superclass,
            "subclass": subclass,
            "fine": fine,
            "superclass_prob": superclass_prob,
            "subclass_prob": subclass_prob,
            "fine_prob": superclass_prob * subclass_prob,
            "superclass_probs": superclass_probs,
            "fine_probs": fine_probs,
            "superclass_name": tf.gather(tf.constant(self._superclass_names), superclass),
            "fine_name": tf.gather(tf.constant(self._class_names), fine),
            "fine_id": tf.gather(tf.constant(self._class_ids), fine),
            "valid": tf.ones([n], tf.bool),  # pixels are always an image
        }

    def _routed(self, superclass_probs: tf.Tensor, stage_one: tf.Tensor) -> tf.Tensor:
        """``bool [N, S]``: which specialists see each image, as
        :func:`supersub_tf.supersub.routing.routes_for` routes them (ties to the lower
        superclass, as its stable sort and ``tf.math.top_k`` both break them)."""
        count = self._num_superclasses
        if self.routing == "soft":
            return tf.ones_like(superclass_probs, tf.bool)
        width = 1 if self.routing == "hard" else min(self.k, count)
        ranked = tf.math.top_k(superclass_probs, k=width).indices
        routed = tf.reduce_any(tf.one_hot(ranked, count, on_value=True, off_value=False,
                                          dtype=tf.bool), axis=1)
        if self.routing != "gated":
            return routed
        sure = tf.reduce_max(stage_one, axis=1) >= self.tau
        if self.stage_one_head == "fine":  # confident: the vanilla network's own answer
            return tf.logical_and(routed, tf.logical_not(sure)[:, None])
        top = tf.one_hot(ranked[:, 0], count, on_value=True, off_value=False, dtype=tf.bool)
        return tf.where(sure[:, None], top, routed)  # confident generalist: hard

    def _stage2(self, s: tf.Tensor, x: tf.Tensor, base: Mapping[str, list[tf.Tensor]]):
        """``(local subclass, p(subclass | superclass))`` of specialist ``s`` on ``x``."""
        logits = self._forward(x, self._specialist(s, base))
        mask = tf.gather(tf.constant(self._head_mask), s)
        probs = tf.nn.softmax(tf.where(mask, logits, -np.inf))
        # [m, widest head] -> [m, C]: each head column onto its global fine label.
        placed = tf.matmul(probs, tf.gather(tf.constant(self._placement), s))
        return (tf.argmax(probs, axis=1, output_type=tf.int32), tf.reduce_max(probs, axis=1),
                placed)

    def _serve_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        check = tf.debugging.assert_less_equal(
            tf.rank(image_bytes), 1, message=f"{BYTES_INPUT_NAME} must be a 1-D batch [N] of "
            "encoded images (or one scalar string: a batch of one)")
        with tf.control_dependencies([check]):
            files = tf.reshape(image_bytes, [-1])
        n = tf.shape(files)[0]
        kept, images = decode_batch(files, self.image_size)
        answers = self._serve(images)
        # Each file's row among the answers; invalid files get the row past the end,
        # which holds INVALID_ANSWER.
        m = tf.shape(kept)[0]
        row = tf.tensor_scatter_nd_update(tf.fill([n], m), kept[:, None], tf.range(m))
        outputs = {}
        for name, value in answers.items():
            fill = tf.fill(tf.concat([[1], tf.shape(value)[1:]], 0),
                           tf.constant(INVALID_ANSWER[OUTPUTS[name][0]], value.dtype))
            outputs[name] = tf.gather(tf.concat([value, fill], 0), row)
        outputs["valid"] = row < m
        return outputs

    def layout(self) -> dict[str, Any]:
        """The variables and which layers they hold (for ``supersub_export.json``)."""
        variables = {v.name.split(":")[0]: {"dtype": v.dtype.name, "shape": v.shape.as_list()}
                     for v in self.variables}
        return {"variables": variables, "delta_layers": list(self.delta_layers),
                "owned_layers": list(self._owned_shapes)}


def _shared_delta_layers(delta_sets: list[DeltaSet]) -> tuple[int | None, list[str]]:
    """``(bits, delta layers)`` all specialists share; ExportError when they differ."""
    first = delta_sets[0]
    layout = {layer: (q.bits, q.shape) for layer, q in first.deltas.items()}
    for delta_set in delta_sets:
        other = {layer: (q.bits, q.shape) for layer, q in delta_set.deltas.items()}
        if other != layout:
            raise ExportError(f"specialists {first.superclass!r} and {delta_set.superclass!r} "
                            "differ in their delta layers, shapes or bits; all must share them")
    bits = {q.bits for q in first.deltas.values()}
    if len(bits) > 1:
        raise ExportError(f"specialist {first.superclass!r} mixes delta bit widths {bits}")
    return (bits.pop() if bits else first.bits), list(layout)


def _check_exportable(forward: FunctionalForward, delta_set: DeltaSet, subclasses: int) -> None:
    """ExportError unless every delta and owned weight fits the generalist's layers."""
    shapes, who = forward.weight_shapes, f"specialist {delta_set.superclass!r}"
    for layer, q in delta_set.deltas.items():
        if layer not in shapes or shapes[layer][0] != q.shape:
            raise ExportError(f"{who}: delta of layer {layer!r} has shape {q.shape}, the "
                            f"generalist's kernel {shapes.get(layer, [None])[0]}")
        if q.bits is not None and (q.scales is None or np.shape(q.scales) != q.shape[-1:]):
            raise ExportError(f"{who}: delta of layer {layer!r} needs {q.shape[-1]} scales")
    if blocks.LOGITS_LAYER not in delta_set.owned:
        raise ExportError(f"{who}: has no {blocks.LOGITS_LAYER!r} head")
    for layer, weights in delta_set.owned.items():
        expected = list(shapes.get(layer, []))
        if layer == blocks.LOGITS_LAYER and expected:
            expected = [(expected[0][0], subclasses), (subclasses,)][:len(expected)]
        if [tuple(np.shape(w)) for w in weights] != expected:
            raise ExportError(f"{who}: owned layer {layer!r} has shapes "
                            f"{[np.shape(w) for w in weights]}, expected {expected}")


# --------------------------------------------------------------------------- export
def export_savedmodel(system: str | os.PathLike | SuperSubSystem, out_dir: str | os.PathLike,
                      *, check: bool = True, routing: str = "hard", k: int = 2,
                      tau: float = 0.5) -> Path:
    """Writes a Super-Sub system as one SavedModel running both stages (atomically).

    Args:
        system: A system directory (loaded and verified with
            :func:`~supersub_tf.deltas.storage.load_system`) or a loaded system.
        out_dir: The SavedModel folder to create, or to replace when it holds a
            previous SavedModel; a non-empty folder without ``saved_model.pb`` is refused.
        check: Before the folder is put in place, load it back and run a batch of
            random images through its signature, comparing with the in-memory module.
        routing: ``hard`` (one specialist pass per image), ``topk`` (``k``), ``soft``
            (every specialist, weighted by ``p(superclass)``) or ``gated`` (stage 1's
            own answer at confidence ``>= tau``, top-``k`` below), as
            :mod:`supersub_tf.supersub.routing` defines them; recorded with ``k`` and
            ``tau`` in ``supersub_export.json``.

    Returns:
        ``out_dir``. Load it with ``tf.saved_model.load(out_dir)`` and call
        ``.signatures["serving_default"](images=uint8 [N, H, W, 3])`` or
        ``.signatures["image_bytes"](image_bytes=string [N])`` (or through
        :func:`call_signature`); the outputs are described by :data:`OUTPUTS` and the
        module docstring.

    Raises:
        ExportError: When the system is invalid (see :func:`load_system` and
            :class:`SuperSubModule`) or ``out_dir`` is an unrelated folder or a file.
        ConfigError: When the generalist has a layer type the export cannot replay.
        RuntimeError: When ``check`` finds the reloaded SavedModel disagreeing.
    """
    if not isinstance(system, SuperSubSystem):
        system = load_system(system)
    if routing != "hard" and any(d.catch_all for d in system.delta_sets.values()):
        raise ExportError(f"{system.path}: catch-all specialists weigh {routing} routing by "
                          "p(other), which the SavedModel does not implement; export hard")
    system = system.for_hard_routing()  # hard routing's answers do not use p(other)
    module = SuperSubModule(system, routing, k, tau)
    with atomic_directory(out_dir, MARKER, "SavedModel") as work:
        tf.saved_model.save(module, str(work), signatures={SIGNATURE: module.serve,
                                                           BYTES_SIGNATURE: module.serve_bytes})
        metadata = export_metadata(system, module)
        (work / METADATA_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False)
                                          + "\n", encoding="utf-8")
        if check:
            check_export(work, module)
    return Path(out_dir)


def export_metadata(system: SuperSubSystem, module: SuperSubModule) -> dict[str, Any]:
    """The ``supersub_export.json`` record: what the SavedModel is and where it came from."""
    # The package root re-exports the public API, which sits above this module: its
    # version is read when the record is written, not when this module loads.
    from supersub_tf import __version__

    manifest = Path(system.path) / MANIFEST
    size = module.image_size
    bits = module.bits
    return {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "signature": {
            "name": SIGNATURE,
            "inputs": {INPUT_NAME: {"dtype": "uint8", "shape": ["N", size, size, 3]}},
            "outputs": {name: {"dtype": dtype, "shape": shape}
                        for name, (dtype, shape) in OUTPUTS.items()},
        },
        "signatures": {
            SIGNATURE: {"inputs": {INPUT_NAME: {"dtype": "uint8",
                                                "shape": ["N", size, size, 3]}}},
            BYTES_SIGNATURE: {"inputs": {BYTES_INPUT_NAME: {"dtype": "string", "shape": ["N"],
                                                            "scalar": "a batch of one"}}},
        },
        "input_contract": (
            f"{INPUT_NAME}: RGB uint8 pixels [N, {size}, {size}, 3], 0-255, not normalised "
            "(the graph normalises); resize an arbitrary photo to a square "
            f"{size}x{size} with antialiased bilinear filtering, no crop (tf.image.resize("
            "..., method='bilinear', antialias=True), rounded to uint8), after applying "
            f"its EXIF orientation. {BYTES_INPUT_NAME}: encoded JPEG/PNG/GIF/BMP/WebP files "
            f"[N] (a scalar: a batch of one) of up to {MAX_PIXELS} pixels; the graph decodes "
            "them (a GIF's first frame), applies their EXIF orientation and resizes them that "
            "way. valid: False for a file that is not a valid image, which gets labels -1, "
            "zero probabilities and empty names; the other files get the answers they get "
            "alone."),
        "routing": module.routing,
        "topk": module.k,
        "gate_tau": module.tau,
        "stage_one": module.stage_one_head,
        "image_size": size,
        "normalization": module.normalization,
        "delta_bits": bits,
        "delta_storage": "float32 values" if bits is None else
                         "packed little-endian k-bit codes (code + 2^(k-1) - 1), float32 scales",
        "backbone": system.backbone.to_dict(),
        "delta_settings": system.delta_settings,
        "hierarchy": system.hierarchy.to_dict(),
        **module.layout(),
        "source": {"path": str(Path(system.path).resolve()),
                   "manifest_sha256": sha256_file(manifest) if manifest.is_file() else None},
        "tensorflow_version": tf.__version__,
        "supersub_tf_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def check_export(path: str | os.PathLike, module: SuperSubModule) -> None:
    """Loads a SavedModel and compares both signatures with ``module`` on random images.

    Raises:
        RuntimeError: When an output is missing or differs (labels exactly, probabilities
            beyond 1e-5).
    """
    rng = np.random.default_rng(0)
    size = module.image_size
    images = tf.constant(rng.integers(0, 256, (_CHECK_BATCH, size, size, 3), np.uint8))
    loaded = tf.saved_model.load(str(path))
    expected = module.serve(images)
    # PNG is lossless and the resize of an image already at the size is exact, so the
    # bytes signature must give the pixels' outputs.
    encoded = tf.stack([tf.io.encode_png(image) for image in images])
    for signature, inputs in ((SIGNATURE, {INPUT_NAME: images}),
                              (BYTES_SIGNATURE, {BYTES_INPUT_NAME: encoded})):
        _compare_outputs(path, signature, loaded.signatures[signature](**inputs), expected)


def _compare_outputs(path: str | os.PathLike, signature: str, got: Mapping[str, tf.Tensor],
                     expected: Mapping[str, tf.Tensor]) -> None:
    for name in OUTPUTS:
        a, b = got.get(name), expected[name]
        if a is None:
            raise RuntimeError(f"{path}: the reloaded SavedModel's {signature} has no output "
                               f"{name!r}")
        a, b = a.numpy(), b.numpy()
        same = (np.allclose(a, b, rtol=0, atol=1e-5) if a.dtype.kind == "f"
                else np.array_equal(a, b))
        if not same:
            raise RuntimeError(f"{path}: the reloaded SavedModel's {signature} {name!r} "
                               f"differs from the exported module's ({a} vs {b})")
