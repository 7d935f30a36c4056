"""Routing: which specialists see an image, and how their answers combine.

Pure numpy over stage 1's ``p(superclass)`` and stage 2's ``p(subclass | superclass)``,
so the pipeline, its evaluation and the exports share one definition. A route table is
``int [N, w]``: the superclasses each image is routed to, ``-1`` padding.

Stage 1 is either a generalist (a superclass head: ``p(superclass)`` is its softmax) or
the vanilla network itself (a fine-class head, ``deltas.base: vanilla``): then
``p(superclass)`` is the sum of its fine probabilities over each superclass's classes
(:func:`stage_one_probs`), and its own fine answer is a prediction stage 2 may keep.

Routing modes (:data:`MODES`, the registry every inference path, the evaluation, the
report and the command line read):

* ``hard``: the most likely superclass (one specialist pass per image);
* ``topk``: the ``k`` most likely; ``p(fine) = p(superclass) * p(subclass | superclass)``
  over those blocks (``k`` passes);
* ``soft``: the same sum over *every* superclass (HD-CNN's probabilistic averaging;
  ``S`` passes), the upper end of top-k;
* ``gated``: where stage 1 is confident (``max p >= tau``) one answer without top-k's
  extra passes: with a vanilla stage 1 (fine probabilities given) its own fine answer,
  *no* specialist pass at all; with a generalist, ``hard``. Below ``tau``, ``topk``. The
  confidence is ``max p(fine)`` for a vanilla stage 1, ``max p(superclass)`` otherwise;
* ``oracle``: the true superclass (analysis only: the best stage 2 can do).

A new mode is one :class:`RoutingMode` in :data:`MODES` (and its name in
``supersub_tf.choices.ROUTINGS``, which a test keeps equal): the evaluation, the
report, the ``predict`` command and the LiteRT runtime pick it up. The SavedModel's
graph implements its own ``hard`` and ``soft`` (``export/savedmodel.py``,
``EXPORT_ROUTINGS``), tested against this module.

A route table row of only ``-1`` means "no specialist": :func:`combine` then gives
stage 1's own fine probabilities for that image.

Catch-all specialists (``deltas.catch_all``) also say ``p(other)``, how sure each is
that the image is not of its superclass. :func:`combine` then gives block ``s`` the
weight ``p(s) * (1 - p_s(other))`` and renormalises over the routed blocks, so a route
the specialist rejects loses to the next one; ``p(subclass | s)`` is then
``p(subclass | s, not other)``.

This module is the one definition of routing and combination of the in-process pipeline,
its evaluation and the LiteRT runtime (the SavedModel's graph implements ``hard`` and
``soft`` in TensorFlow, and is tested against this module for each). It imports only
numpy and the standard library because the LiteRT export copies it, byte for byte, next
to its runtime (as ``supersub_routing.py``), which runs without ``supersub_tf``; a test
checks the copy is identical. A ``hierarchy`` here is anything with ``num_superclasses``,
``num_classes`` and ``fine_labels_of(s)`` (the package's
:class:`~supersub_tf.hierarchy.Hierarchy`, the runtime's own reader of the manifest).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: no package import at run time
    from supersub_tf.hierarchy import Hierarchy

#: What stage 1's head predicts: superclasses (a generalist) or fine classes (vanilla).
STAGE_ONE_HEADS = ("superclass", "fine")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, returned as float32 (the logits of any network)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def stage_one_probs(logits: np.ndarray, hierarchy: Hierarchy, head: str = "superclass"
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Stage 1's ``(p(superclass) [N, S], p(fine) [N, C] or None)`` from its logits.

    Args:
        logits: ``[N, S]`` of a generalist or ``[N, C]`` of a vanilla network.
        hierarchy: Block layout of the fine classes.
        head: ``superclass`` or ``fine`` (:data:`STAGE_ONE_HEADS`).
    """
    if head not in STAGE_ONE_HEADS:
        raise ValueError(f"stage-one head must be one of {STAGE_ONE_HEADS}, got {head!r}")
    probs = softmax(logits)
    expected = hierarchy.num_classes if head == "fine" else hierarchy.num_superclasses
    if probs.shape[1] != expected:
        raise ValueError(f"a {head} stage 1 must give {expected} outputs, got {probs.shape[1]}")
    if head == "superclass":
        return probs, None
    sums = np.stack([probs[:, hierarchy.fine_labels_of(s)].sum(1)
                     for s in range(hierarchy.num_superclasses)], axis=1)
    return sums.astype(np.float32), probs


def specialist_outputs(probs: np.ndarray, catch_all: bool
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """A specialist's softmax ``[N, n (+1)]`` as ``(p(subclass | s[, not other]), p(other))``.

    A plain specialist gives its probabilities and None; a catch-all one (last output:
    "not my superclass") gives the others renormalised and ``p(other)`` ``[N]``.
    """
    if not catch_all:
        return probs, None
    other = probs[:, -1]
    rest = np.maximum(1.0 - other, 1e-12)[:, None]
    return (probs[:, :-1] / rest).astype(np.float32), other


# ----------------------------------------------------------------------------- modes
#: A mode's route table from ``(superclass_probs [N, S], k, true_superclass [N] or None,
#: tau, stage_one_fine [N, C] or None)``, the arguments of :func:`routes_for`.
RouteTable = Callable[..., np.ndarray]


def _ranked(superclass_probs: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` most likely superclasses of each image, most likely first."""
    width = max(1, min(width, superclass_probs.shape[1]))
    return np.argsort(-superclass_probs, axis=1, kind="stable")[:, :width].copy()


def _hard(superclass_probs, k, true_superclass, tau, stage_one_fine) -> np.ndarray:
    return superclass_probs.argmax(1)[:, None]


def _topk(superclass_probs, k, true_superclass, tau, stage_one_fine) -> np.ndarray:
    return _ranked(superclass_probs, k)


def _soft(superclass_probs, k, true_superclass, tau, stage_one_fine) -> np.ndarray:
    return _ranked(superclass_probs, superclass_probs.shape[1])


def _gated(superclass_probs, k, true_superclass, tau, stage_one_fine) -> np.ndarray:
    routes = _ranked(superclass_probs, k)
    if stage_one_fine is not None:  # stage 1's own answer: no specialist at all
        routes[stage_one_fine.max(1) >= tau, :] = -1
    else:
        routes[superclass_probs.max(1) >= tau, 1:] = -1
    return routes


def _oracle(superclass_probs, k, true_superclass, tau, stage_one_fine) -> np.ndarray:
    if true_superclass is None:
        raise ValueError("oracle routing needs true_superclass")
    return np.asarray(true_superclass, np.int64).reshape(len(superclass_probs), 1)


@dataclasses.dataclass(frozen=True)
class RoutingMode:
    """One routing mode: how its route table is made and how its answers combine.

    Attributes:
        name: What settings, results and the command line call it (``topk``).
        label: Its name in tables and prose (``top-k``).
        summary: What it does, in one line (the command line's help).
        routes: Its route table (see :func:`routes_for`).
        weighted: :func:`combine` weighs each routed block by ``p(superclass)``
            (``oracle``, given the truth, does not).
        needs_truth: It needs the true superclass: evaluation only, never offered for
            classifying a user's images.
    """

    name: str
    label: str
    summary: str
    routes: RouteTable
    weighted: bool = True
    needs_truth: bool = False


#: The routing modes, by name, in the order tables list them.
MODES: dict[str, RoutingMode] = {mode.name: mode for mode in (
    RoutingMode("hard", "hard", "the most likely superclass's specialist (1 pass)", _hard),
    RoutingMode("topk", "top-k", "the k most likely superclasses' specialists, combined "
                "(k passes)", _topk),
    RoutingMode("soft", "soft", "every specialist, weighted by p(superclass) (S passes)",
                _soft),
    RoutingMode("gated", "gated", "stage 1's own answer when it is confident (max p >= "
                "tau), top-k below", _gated),
    RoutingMode("oracle", "oracle", "the true superclass's specialist (evaluation only)",
                _oracle, weighted=False, needs_truth=True),
)}
#: Every routing mode's name (``gated`` needs a threshold, ``oracle`` the truth).
ALL_ROUTINGS = tuple(MODES)
#: The modes that classify images without knowing their superclass (``predict`` offers
#: these).
INFERENCE_ROUTINGS = tuple(name for name, mode in MODES.items() if not mode.needs_truth)
#: The paper's three, the default of an evaluation: hard, top-k and oracle.
ROUTINGS = ("hard", "topk", "oracle")


def routing_mode(name: str) -> RoutingMode:
    """The registered mode called ``name``.

    Raises:
        ValueError: For an unknown name, listing the modes.
    """
    if name not in MODES:
        raise ValueError(f"routing must be one of {tuple(MODES)}, got {name!r}")
    return MODES[name]


def routes_for(superclass_probs: np.ndarray, routing: str, k: int = 2,
               true_superclass: np.ndarray | None = None, tau: float = 0.5,
               stage_one_fine: np.ndarray | None = None) -> np.ndarray:
    """The route table of one routing mode (:data:`MODES`).

    ``k``: superclasses per image of ``topk`` and uncertain ``gated`` images.
    ``true_superclass``: ``[N]``, for ``oracle``. ``tau``: ``gated``'s threshold.
    ``stage_one_fine``: a vanilla stage 1's ``p(fine)``; ``gated`` then sends the images
    on which it is confident (``max p(fine) >= tau``) to no specialist (all ``-1``).

    Raises:
        ValueError: For an unknown routing, or ``oracle`` without ``true_superclass``.
    """
    return routing_mode(routing).routes(superclass_probs, k, true_superclass, tau,
                                        stage_one_fine)


def specialist_passes(routes: np.ndarray) -> float:
    """Mean specialist passes per image of a route table (stage 1's pass not counted)."""
    return float((routes >= 0).sum(1).mean()) if len(routes) else 0.0


def combine(superclass_probs: np.ndarray, subclass_probs: np.ndarray, routes: np.ndarray,
            hierarchy: Hierarchy, weighted: bool = True,
            other_probs: np.ndarray | None = None,
            stage_one_fine: np.ndarray | None = None) -> np.ndarray:
    """``p(fine)`` ``[N, C]`` over the routed blocks (zero elsewhere).

    An image routed to no specialist (a row of ``-1``: gated routing's confident
    images) gets stage 1's own ``stage_one_fine``.

    Args:
        superclass_probs: ``[N, S]`` stage 1.
        subclass_probs: ``[N, C]``: in superclass ``s``'s block, ``p(subclass | s)`` for
            every image routed to ``s`` (other entries are ignored).
        routes: The route table.
        hierarchy: Block layout of the fine classes.
        weighted: Weight each block by ``p(superclass)`` (False for ``oracle``).
        other_probs: ``[N, S]`` catch-all specialists' ``p(other)`` (entry ``s`` for
            images routed to ``s``); None for plain specialists.
        stage_one_fine: ``[N, C]`` a vanilla stage 1's ``p(fine)``; required when a row
            of ``routes`` routes nowhere.
    """
    n = len(routes)
    fine_probs = np.zeros((n, hierarchy.num_classes), np.float32)
    for s in range(hierarchy.num_superclasses):
        rows = np.flatnonzero((routes == s).any(1))
        if not len(rows):
            continue
        block = hierarchy.fine_labels_of(s)
        weight = superclass_probs[rows, s:s + 1] if weighted else np.ones((len(rows), 1))
        if other_probs is not None:
            weight = weight * (1.0 - other_probs[rows, s:s + 1])
        fine_probs[np.ix_(rows, block)] = weight * subclass_probs[np.ix_(rows, block)]
    if other_probs is not None:  # renormalise over the routed blocks
        total = fine_probs.sum(1, keepdims=True)
        fine_probs = np.divide(fine_probs, total, out=fine_probs, where=total > 0)
    unrouted = np.flatnonzero((routes < 0).all(1))
    if len(unrouted):
        if stage_one_fine is None:
            raise ValueError("images routed to no specialist need stage_one_fine")
        fine_probs[unrouted] = stage_one_fine[unrouted]
    return fine_probs


def answer_subclass_probs(subclass_probs: np.ndarray, fine_probs: np.ndarray,
                          superclass_probs: np.ndarray, routes: np.ndarray,
                          fine: np.ndarray, fine_to_superclass: np.ndarray) -> np.ndarray:
    """``p(subclass | superclass)`` ``[N]`` of each image's answer ``fine``: stage 2's, or
    for an image no specialist saw (gated routing's confident ones) stage 1's own,
    ``p(fine) / p(superclass)``."""
    index = np.arange(len(fine))
    out = subclass_probs[index, fine].astype(np.float32)
    unrouted = (routes < 0).all(1)
    if unrouted.any():
        sup = superclass_probs[index, fine_to_superclass[fine]]
        out[unrouted] = fine_probs[index, fine][unrouted] / np.maximum(sup[unrouted], 1e-12)
    return out


def gated_curve(superclass_probs: np.ndarray, subclass_probs: np.ndarray,
                fine_labels: np.ndarray, hierarchy: Hierarchy, k: int,
                taus: np.ndarray | None = None,
                other_probs: np.ndarray | None = None,
                stage_one_fine: np.ndarray | None = None) -> list[dict[str, float]]:
    """Top-1 and specialist passes per image of ``gated`` routing over thresholds.

    ``subclass_probs`` must hold the top-``k`` blocks of every image (as
    :func:`~supersub_tf.supersub.evaluate.collect_predictions` computes them). The
    curve runs from ``tau = 0`` (hard routing: 1 pass; with a vanilla stage 1,
    ``stage_one_fine`` given: its own answer, 0 passes) to ``tau > 1`` (top-k: k passes).
    """
    taus = np.round(np.linspace(0.0, 1.0, 11), 2) if taus is None else taus
    curve = []
    for tau in [*map(float, taus), 1.01]:
        routes = routes_for(superclass_probs, "gated", k, tau=tau,
                            stage_one_fine=stage_one_fine)
        fine = combine(superclass_probs, subclass_probs, routes, hierarchy,
                       other_probs=other_probs, stage_one_fine=stage_one_fine).argmax(1)
        curve.append({"tau": tau, "top1": float((fine == fine_labels).mean()),
                      "specialist_passes": specialist_passes(routes)})
    return curve


def cheapest_within(curve: list[dict[str, float]], best_top1: float,
                    tolerance: float = 0.003) -> dict[str, float]:
    """The point of a :func:`gated_curve` that costs least while its top-1 stays within
    ``tolerance`` of ``best_top1`` (the best routing's): fewest specialist passes per
    image, then the lower threshold. With no point that close, the most accurate one.

    This is how the default ``deltas.gate_tau`` is chosen (on held-out images, never on
    the split it is reported on): the accuracy of the best routing within 0.3 points, at
    the lowest cost.
    """
    if not curve:
        raise ValueError("an empty gated curve has no point to choose")
    close = [p for p in curve if p["top1"] >= best_top1 - tolerance - 1e-9]
    if not close:
        return max(curve, key=lambda p: (p["top1"], -p["specialist_passes"]))
    return min(close, key=lambda p: (p["specialist_passes"], p["tau"]))
