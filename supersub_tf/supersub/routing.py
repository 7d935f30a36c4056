"""Routing: which specialists see an image, and how their answers combine.

Pure numpy over stage 1's ``p(superclass)`` and stage 2's ``p(subclass | superclass)``,
so the pipeline, its evaluation and the exports share one definition. A route table is
``int [N, w]``: the superclasses each image is routed to, ``-1`` padding.

Routing modes:

* ``hard``: the most likely superclass (one specialist pass per image);
* ``topk``: the ``k`` most likely; ``p(fine) = p(superclass) * p(subclass | superclass)``
  over those blocks (``k`` passes);
* ``gated``: ``hard`` where stage 1 is confident (``max p(superclass) >= tau``),
  ``topk`` below it: top-k's recovery of wrong routes, paid only for uncertain images;
* ``oracle``: the true superclass (analysis only: the best stage 2 can do).

Catch-all specialists (``deltas.catch_all``) also say ``p(other)``, how sure each is
that the image is not of its superclass. :func:`combine` then gives block ``s`` the
weight ``p(s) * (1 - p_s(other))`` and renormalises over the routed blocks, so a route
the specialist rejects loses to the next one; ``p(subclass | s)`` is then
``p(subclass | s, not other)``.

This module is the one definition of routing and combination for every inference path.
It imports only numpy because the LiteRT export copies it, byte for byte, next to its
runtime (as ``supersub_routing.py``), which runs without ``supersub_tf``; a test checks
the copy is identical. A ``hierarchy`` here is anything with ``num_superclasses``,
``num_classes`` and ``fine_labels_of(s)`` (the package's
:class:`~supersub_tf.hierarchy.Hierarchy`, the runtime's own reader of the manifest).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: no package import at run time
    from supersub_tf.hierarchy import Hierarchy

ROUTINGS = ("hard", "topk", "oracle")
#: Every routing :func:`routes_for` knows (``gated`` needs a threshold).
ALL_ROUTINGS = ("hard", "topk", "gated", "oracle")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, returned as float32 (the logits of any network)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


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


def routes_for(superclass_probs: np.ndarray, routing: str, k: int = 2,
               true_superclass: np.ndarray | None = None, tau: float = 0.5) -> np.ndarray:
    """The route table of one routing mode.

    Raises:
        ValueError: For an unknown routing, or ``oracle`` without ``true_superclass``.
    """
    if routing not in ALL_ROUTINGS:
        raise ValueError(f"routing must be one of {ALL_ROUTINGS}, got {routing!r}")
    n, num_superclasses = superclass_probs.shape
    if routing == "oracle":
        if true_superclass is None:
            raise ValueError("oracle routing needs true_superclass")
        return np.asarray(true_superclass, np.int64).reshape(n, 1)
    if routing == "hard":
        return superclass_probs.argmax(1)[:, None]
    routes = np.argsort(-superclass_probs, axis=1, kind="stable")[
        :, :max(1, min(k, num_superclasses))].copy()
    if routing == "gated":
        routes[superclass_probs.max(1) >= tau, 1:] = -1
    return routes


def specialist_passes(routes: np.ndarray) -> float:
    """Mean specialist passes per image of a route table (stage 1's pass not counted)."""
    return float((routes >= 0).sum(1).mean()) if len(routes) else 0.0


def combine(superclass_probs: np.ndarray, subclass_probs: np.ndarray, routes: np.ndarray,
            hierarchy: Hierarchy, weighted: bool = True,
            other_probs: np.ndarray | None = None) -> np.ndarray:
    """``p(fine)`` ``[N, C]`` over the routed blocks (zero elsewhere).

    Args:
        superclass_probs: ``[N, S]`` stage 1.
        subclass_probs: ``[N, C]``: in superclass ``s``'s block, ``p(subclass | s)`` for
            every image routed to ``s`` (other entries are ignored).
        routes: The route table.
        hierarchy: Block layout of the fine classes.
        weighted: Weight each block by ``p(superclass)`` (False for ``oracle``).
        other_probs: ``[N, S]`` catch-all specialists' ``p(other)`` (entry ``s`` for
            images routed to ``s``); None for plain specialists.
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
    return fine_probs


def gated_curve(superclass_probs: np.ndarray, subclass_probs: np.ndarray,
                fine_labels: np.ndarray, hierarchy: Hierarchy, k: int,
                taus: np.ndarray | None = None,
                other_probs: np.ndarray | None = None) -> list[dict[str, float]]:
    """Top-1 and specialist passes per image of ``gated`` routing over thresholds.

    ``subclass_probs`` must hold the top-``k`` blocks of every image (as
    :func:`~supersub_tf.supersub.evaluate.collect_predictions` computes them). The
    curve runs from ``tau = 0`` (hard routing: 1 pass) to ``tau > 1`` (top-k: k passes).
    """
    taus = np.round(np.linspace(0.0, 1.0, 11), 2) if taus is None else taus
    curve = []
    for tau in [*map(float, taus), 1.01]:
        routes = routes_for(superclass_probs, "gated", k, tau=tau)
        fine = combine(superclass_probs, subclass_probs, routes, hierarchy,
                       other_probs=other_probs).argmax(1)
        curve.append({"tau": tau, "top1": float((fine == fine_labels).mean()),
                      "specialist_passes": specialist_passes(routes)})
    return curve
