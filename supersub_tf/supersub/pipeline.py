"""Two-stage inference with one network's weights resident on the device.

Stage 1 runs the base network: a generalist (trunk + superclass head) gives
``p(superclass)``; the vanilla network (trunk + fine head, ``deltas.base: vanilla``)
gives ``p(fine)``, summed per superclass into ``p(superclass)``
(:func:`~supersub_tf.supersub.routing.stage_one_probs`), and its own answer is what
gated routing keeps for confident images. "Generalist" below means either: the network
whose trunk every specialist adapts.
Stage 2 groups the batch by the superclass(es) each image is routed to; for each group
it replays the *same* trunk with that specialist's weights, built inside one compiled
function from the trunk's own variables and the specialist's host arrays: ``W + codes *
scales`` for layers with deltas, the specialist's own batch-norm weights
(:class:`~supersub_tf.models.functional.FunctionalForward`), then its head. Nothing is
written to the trunk's variables, so the generalist's weights stay exact whatever
happens. Device-resident weights are one network's variables; per group, one
specialist's codes, scales and owned weights are sent in, and its ``W + delta`` kernels
exist only while that group runs. The deltas live in host memory as k-bit codes.

:meth:`SuperSubPipeline.apply` / :meth:`~SuperSubPipeline.restore` still turn the trunk
into a specialist *in place* (for inspection, and as the reference the replay is tested
against); a failure half-way through ``apply`` restores the generalist.

Routing modes are :data:`supersub_tf.supersub.routing.MODES`: ``hard``, ``topk``,
``soft`` (every superclass), ``gated`` (stage 1's own answer, or hard routing for a
generalist, when stage 1 is confident; top-k below a threshold) and ``oracle``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from supersub_tf.deltas.delta_set import DeltaSet, touched_layers
from supersub_tf.hierarchy import Hierarchy
from supersub_tf.models import trunk
from supersub_tf.models.blocks import LOGITS_LAYER
from supersub_tf.models.functional import FunctionalForward
from supersub_tf.supersub.routing import (
    ALL_ROUTINGS, ROUTINGS, answer_subclass_probs, combine, routes_for, routing_mode, softmax,
    specialist_outputs, stage_one_probs)

__all__ = ["ALL_ROUTINGS", "Prediction", "ROUTINGS", "SuperSubPipeline"]


@dataclasses.dataclass
class Prediction:
    """Outputs of :meth:`SuperSubPipeline.predict` for a batch of ``N`` images.

    Attributes:
        superclass_probs: ``[N, S]`` stage-1 probabilities.
        fine_probs: ``[N, C]`` combined ``p(superclass) * p(subclass | superclass)``
            over the routed superclasses (zero elsewhere; renormalised after weighing
            by ``1 - p(other)`` for catch-all specialists).
        superclass: ``[N]`` superclass of the predicted fine label.
        subclass: ``[N]`` its local index inside that superclass.
        fine: ``[N]`` the predicted global fine label.
        fine_prob: ``[N]`` its combined probability.
        subclass_prob: ``[N]`` ``p(subclass | superclass)`` of the prediction.
    """

    superclass_probs: np.ndarray
    fine_probs: np.ndarray
    superclass: np.ndarray
    subclass: np.ndarray
    fine: np.ndarray
    fine_prob: np.ndarray
    subclass_prob: np.ndarray


class SuperSubPipeline:
    """A generalist plus specialists stored as deltas, run with one trunk in memory.

    Args:
        generalist: The trained generalist (a registry model: ``features`` + ``logits``).
        delta_sets: Superclass name -> its specialist's deltas.
        hierarchy: The hierarchy (superclass order = the generalist's outputs).
        stage_one_head: ``superclass`` (a generalist) or ``fine`` (the vanilla network:
            its head's outputs are the hierarchy's fine classes).
    """

    def __init__(self, generalist: keras.Model, delta_sets: dict[str, DeltaSet],
                 hierarchy: Hierarchy, stage_one_head: str = "superclass") -> None:
        missing = [s for s in hierarchy.superclass_names if s not in delta_sets]
        if missing:
            raise ValueError(f"no specialist deltas for superclass(es) {missing}")
        self.hierarchy = hierarchy
        self.delta_sets = delta_sets
        self.stage_one_head = stage_one_head
        self.trunk = trunk(generalist)
        # Stage 1's head is the network's own (its variables stay resident, as one network's
        # do); a specialist's head is sent in per call, like its deltas. Both heads run in
        # the compiled functions, not in NumPy: a NumPy matmul wakes OpenBLAS' threads,
        # which then spin beside TensorFlow's and nearly doubled stage 1's time at batch
        # 256 on 2 cores (benchmarks/supersub_pipeline.py).
        self._head = list(generalist.get_layer(LOGITS_LAYER).weights)
        self._layers = {layer.name: layer for layer in self.trunk.layers}
        touched = touched_layers(delta_sets.values())
        unknown = touched - set(self._layers)
        if unknown:
            raise ValueError(f"deltas name layers the generalist lacks: {sorted(unknown)}")
        self._touched = sorted(touched)
        # The trunk replayed on weights built per call, its variables only read. The steps
        # no specialist changes (the stages before ``deltas.from_stage``) run once per
        # batch, in stage 1; stage 2 starts from their outputs (the boundary tensors).
        self._forward = FunctionalForward(self.trunk)
        self._variables = {name: list(self._layers[name].weights)
                           for name in self._forward.weight_shapes}
        self._prefix, self._suffix, self._boundary = self._forward.split(touched)
        self._shared = tf.function(self._shared_tensors, reduce_retracing=True)
        # Stage 1 is one compiled call (the shared tensors and the logits): at batch 1 each
        # call's dispatch costs a fair part of a small network's time.
        self._stage_one = tf.function(self._stage_one_tensors, reduce_retracing=True)
        # Each specialist's weights as host tensors, converted once (not per call), and
        # one compiled replay per layout: the specialists of a system share one layout, so
        # one function, called with tensors only (a Python argument would be hashed to
        # find its trace on every call).
        self._host: dict[str, _HostSpecialist] = {}
        replays: dict[_Layout, Callable] = {}
        for name, delta_set in delta_sets.items():
            layout, codes, floats = _host_arrays(delta_set)
            if layout not in replays:
                replays[layout] = tf.function(functools.partial(self._replay, layout),
                                              reduce_retracing=True)
            with tf.device("/cpu:0"):
                self._host[name] = _HostSpecialist(
                    layout, replays[layout], tf.constant(codes), tf.constant(floats),
                    *(tf.constant(w) for w in delta_set.owned[LOGITS_LAYER]))
        # apply()/restore(): every touched variable written by one compiled call.
        self._touched_variables = [v for name in self._touched for v in self._layers[name].weights]
        self._write_specialist = tf.function(self._assign_specialist, reduce_retracing=True)
        self._write_base = tf.function(self._assign_base, reduce_retracing=True)

    @classmethod
    def from_system(cls, system) -> SuperSubPipeline:
        """The pipeline of a loaded :class:`~supersub_tf.deltas.storage.SuperSubSystem`
        (its trunk network, deltas, hierarchy and stage-1 kind)."""
        return cls(system.generalist, system.delta_sets, system.hierarchy,
                   stage_one_head=system.stage_one_head)

    # ------------------------------------------------------------------ weights
    @functools.cached_property
    def _base(self) -> dict[str, list[np.ndarray]]:
        """Host copies of every weight a specialist changes, taken on first use: only the
        in-place apply()/restore() need them (predictions never write the trunk)."""
        return {name: [w.numpy().copy() for w in self._layers[name].weights]
                for name in self._touched}

    @functools.cached_property
    def _base_flat(self) -> tf.Tensor:
        """:attr:`_base` as one float32 vector (what the compiled writes take), kept in
        host memory: on a GPU only the trunk's variables stay resident."""
        with tf.device("/cpu:0"):
            return tf.constant(np.concatenate([w.reshape(-1).astype(np.float32)
                                               for name in self._touched
                                               for w in self._base[name]]))

    def apply(self, superclass: str) -> None:
        """Turns the trunk into ``superclass``'s specialist, in place.

        One compiled call dequantizes the deltas on the device and writes every touched
        variable (``W + codes * scales``, the owned batch norms); its writes run only once
        the whole graph is built, so a delta that does not fit its kernel fails before
        anything is written. Should a write still fail, the generalist's weights are
        restored before the error propagates.
        """
        host = self._host[superclass]
        try:
            self._write_specialist(host.layout, host.codes, host.floats, self._base_flat)
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        """Writes the generalist's weights back exactly (from the host copies), in one
        compiled call."""
        self._write_base(self._base_flat)

    def _base_weights(self, base: tf.Tensor) -> dict[str, list[tf.Tensor]]:
        sizes = [_size(tuple(v.shape)) for v in self._touched_variables]
        flat = iter(tf.split(base, sizes))
        return {name: [tf.reshape(next(flat), tuple(v.shape)) for v in self._layers[name].weights]
                for name in self._touched}

    def _assign(self, weights: dict[str, list[tf.Tensor]]) -> None:
        for name in self._touched:
            for variable, value in zip(self._layers[name].weights, weights[name]):
                variable.assign(tf.cast(value, variable.dtype))

    def _assign_base(self, base: tf.Tensor) -> None:
        self._assign(self._base_weights(base))

    def _assign_specialist(self, layout: _Layout, codes, floats, base: tf.Tensor) -> None:
        weights = self._base_weights(base)
        deltas, owned = self._unpacked(layout, codes, floats)
        for name, delta in deltas.items():
            weights[name] = [weights[name][0] + delta, *weights[name][1:]]
        weights.update(owned)
        self._assign(weights)

    @property
    def resident_variables(self) -> list[tf.Variable]:
        """The variables inference keeps on the device: the trunk's and stage 1's head,
        one network's (each specialist's weights are tensors that live for one call)."""
        return [*self.trunk.weights, *self._head]

    def generalist_weights_equal(self) -> bool:
        """True if every weight a specialist touches is the generalist's, bit for bit."""
        return all(np.array_equal(v.numpy(), value)
                   for name, weights in self._base.items()
                   for v, value in zip(self._layers[name].weights, weights))

    # ------------------------------------------------------------------ inference
    def shared_tensors(self, images) -> list:
        """The boundary tensors of ``images``: what every specialist shares with the
        generalist (the trunk's output of the stages no specialist changes; the images
        themselves when ``from_stage`` is 0)."""
        return self._shared(tf.convert_to_tensor(images))

    def stage_one(self, images) -> tuple[np.ndarray, np.ndarray | None, list]:
        """Stage 1: ``p(superclass)``, a vanilla stage 1's ``p(fine)`` (None for a
        generalist), and the shared tensors stage 2 starts from (so the common stages run
        once per batch)."""
        shared, logits = self._stage_one(tf.convert_to_tensor(images))
        sup_probs, fine_probs = stage_one_probs(logits.numpy(), self.hierarchy,
                                                self.stage_one_head)
        return sup_probs, fine_probs, shared

    def superclass_probs(self, images) -> np.ndarray:
        """Stage 1: ``p(superclass)``."""
        return self.stage_one(images)[0]

    @property
    def catch_all(self) -> bool:
        """Whether the specialists are catch-all ones (a last "not my superclass" output)."""
        return any(d.catch_all for d in self.delta_sets.values())

    def specialist_probs(self, images, superclass: str, shared: list | None = None
                         ) -> tuple[np.ndarray, np.ndarray | None]:
        """Stage 2 for one superclass: ``p(subclass | superclass)`` of ``images`` and, for
        a catch-all specialist, ``p(other)`` ``[N]`` (the subclass probabilities are then
        ``p(subclass | superclass, not other)``); None otherwise. ``shared``: the images'
        :meth:`shared_tensors`, when stage 1 already computed them."""
        shared = self.shared_tensors(images) if shared is None else shared
        host = self._host[superclass]
        logits = host.replay(shared, host.codes, host.floats, host.head_kernel, host.head_bias)
        return specialist_outputs(softmax(logits.numpy()), self.delta_sets[superclass].catch_all)

    def subclass_probs(self, images, superclass: str) -> np.ndarray:
        """``p(subclass | superclass)`` of ``images`` (see :meth:`specialist_probs`)."""
        return self.specialist_probs(images, superclass)[0]

    def _shared_tensors(self, x) -> list:
        tensors = self._forward.run(self._prefix, {self._forward.input_key: x}, self._variables)
        return [tensors[key] for key in self._boundary]

    def _stage_one_tensors(self, x) -> tuple[list, tf.Tensor]:
        shared = self._shared_tensors(x)
        return shared, _dense(self._suffix_features(shared, self._variables), *self._head)

    def _suffix_features(self, shared, weights) -> tf.Tensor:
        tensors = self._forward.run(self._suffix, dict(zip(self._boundary, shared)), weights)
        return tensors[self._forward.output_key]

    @staticmethod
    def _unpacked(layout: _Layout, codes, floats
                  ) -> tuple[dict[str, tf.Tensor], dict[str, list[tf.Tensor]]]:
        """One specialist's dequantized deltas and owned trunk weights, as tensors, from
        its two flat host arrays."""
        codes = tf.split(tf.cast(codes, tf.float32), [_size(s) for _, s in layout.deltas])
        floats = iter(tf.split(floats, [_size(s) for s in layout.float_shapes()]))
        deltas = {}
        for (name, shape), code in zip(layout.deltas, codes):
            deltas[name] = tf.reshape(code, shape)
            if layout.scaled:
                deltas[name] = deltas[name] * next(floats)
        owned = {name: [tf.reshape(next(floats), shape) for shape in shapes]
                 for name, shapes in layout.owned}
        return deltas, owned

    def _replay(self, layout: _Layout, shared, codes, floats, head_kernel, head_bias):
        """One specialist's logits of the shared tensors: the trunk replayed with its
        weights, from its two flat host arrays, then its head."""
        deltas, owned = self._unpacked(layout, codes, floats)
        weights = dict(self._variables)
        for name, delta in deltas.items():
            base = self._variables[name]
            weights[name] = [base[0] + delta, *base[1:]]
        weights.update(owned)
        return _dense(self._suffix_features(shared, weights), head_kernel, head_bias)

    def routed_subclass_probs(self, images, routes: np.ndarray, shared: list | None = None
                              ) -> tuple[np.ndarray, np.ndarray | None]:
        """Stage 2 for a route table, each specialist run once, on the images routed to it.

        Returns:
            ``[N, C]`` with ``p(subclass | s)`` in superclass ``s``'s block for every image
            routed to ``s`` (zeros elsewhere), and for catch-all specialists ``[N, S]``
            ``p(other)`` of each routed specialist (None for plain ones).
        """
        shared = self.shared_tensors(images) if shared is None else shared
        h = self.hierarchy
        sub_given = np.zeros((len(routes), h.num_classes), np.float32)
        other = np.zeros((len(routes), h.num_superclasses), np.float32) if self.catch_all \
            else None
        for s in np.unique(routes[routes >= 0]):   # only the specialists with images routed
            rows = np.flatnonzero((routes == s).any(1))
            # every image routed here (always so at batch 1): no copy of the batch
            mine = shared if len(rows) == len(routes) else [tf.gather(t, rows) for t in shared]
            probs, other_s = self.specialist_probs(None, h.superclass_names[s], mine)
            sub_given[np.ix_(rows, h.fine_labels_of(s))] = probs
            if other is not None:
                other[rows, s] = other_s
        return sub_given, other

    def predict(self, images, routing: str = "hard", k: int = 2,
                true_superclass: np.ndarray | None = None, tau: float = 0.5) -> Prediction:
        """Runs both stages on a batch of preprocessed images.

        Args:
            images: ``float32 [N, H, W, 3]``, normalised as in training.
            routing: A mode of :data:`supersub_tf.supersub.routing.MODES`: ``hard``,
                ``topk``, ``soft``, ``gated`` or ``oracle``.
            k: Superclasses per image for ``topk`` and uncertain ``gated`` images.
            true_superclass: ``[N]`` true superclass indices, for ``oracle``.
            tau: ``gated``'s confidence threshold on ``max p(superclass)``.

        Raises:
            ValueError: For an unknown routing (naming the modes).
        """
        mode = routing_mode(routing)
        images = tf.convert_to_tensor(images)
        h = self.hierarchy
        sup_probs, stage_one_fine, shared = self.stage_one(images)
        routes = routes_for(sup_probs, routing, k, true_superclass, tau, stage_one_fine)
        sub_given, other = self.routed_subclass_probs(images, routes, shared)
        fine_probs = combine(sup_probs, sub_given, routes, h, weighted=mode.weighted,
                             other_probs=other, stage_one_fine=stage_one_fine)
        n = len(fine_probs)
        fine = fine_probs.argmax(1)
        return Prediction(sup_probs, fine_probs, h.fine_to_superclass[fine],
                          h.fine_to_subclass[fine], fine, fine_probs[np.arange(n), fine],
                          answer_subclass_probs(sub_given, fine_probs, sup_probs, routes, fine,
                                                h.fine_to_superclass))


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where one specialist's weights sit in its two flat host arrays (hashable: it keys
    the replay's trace). ``codes`` holds every delta's codes (or float values), in
    ``deltas`` order; ``floats`` the per-channel scales (when ``scaled``), then every
    owned trunk weight."""

    deltas: tuple[tuple[str, tuple[int, ...]], ...]
    scaled: bool
    scale_sizes: tuple[int, ...]
    owned: tuple[tuple[str, tuple[tuple[int, ...], ...]], ...]

    def float_shapes(self) -> list[tuple[int, ...]]:
        scales = [(n,) for n in self.scale_sizes] if self.scaled else []
        return scales + [shape for _, shapes in self.owned for shape in shapes]


def _dense(features, kernel, bias) -> tf.Tensor:
    """A head's logits (the replayed trunk's features are float32)."""
    return tf.matmul(features, tf.cast(kernel, tf.float32)) + tf.cast(bias, tf.float32)


class _HostSpecialist(NamedTuple):
    """One specialist as the replay takes it: host tensors (converted once) and the
    compiled replay of its layout."""

    layout: _Layout
    replay: Callable
    codes: tf.Tensor
    floats: tf.Tensor
    head_kernel: tf.Tensor
    head_bias: tf.Tensor


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _host_arrays(delta_set: DeltaSet) -> tuple[_Layout, np.ndarray, np.ndarray]:
    """``(layout, codes, floats)`` of one specialist as its replay takes them: int8 codes
    (float32 values for float deltas) of every delta layer in one vector, and its float32
    scales and owned trunk weights in another."""
    names = sorted(delta_set.deltas)
    deltas = [delta_set.deltas[n] for n in names]
    scaled = delta_set.bits is not None
    owned_names = sorted(n for n in delta_set.owned if n != LOGITS_LAYER)
    layout = _Layout(
        deltas=tuple((n, tuple(d.shape)) for n, d in zip(names, deltas)), scaled=scaled,
        scale_sizes=tuple(int(np.size(d.scales)) for d in deltas) if scaled else (),
        owned=tuple((n, tuple(tuple(np.shape(w)) for w in delta_set.owned[n]))
                    for n in owned_names))
    codes = np.concatenate([np.asarray(d.codes).reshape(-1) for d in deltas])
    floats = [np.asarray(d.scales, np.float32).reshape(-1) for d in deltas] if scaled else []
    floats += [np.asarray(w, np.float32).reshape(-1) for n in owned_names
               for w in delta_set.owned[n]]
    return layout, codes, (np.concatenate(floats) if floats else np.zeros(0, np.float32))
