"""Routing variants on a hand-made two-superclass hierarchy whose answers are known."""

import numpy as np
import pytest

from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass
from supersub_tf.supersub.routing import (
    combine, gated_curve, routes_for, specialist_passes)

H = Hierarchy([Superclass("a", (Subclass("a0", "a0"), Subclass("a1", "a1"))),
               Superclass("b", (Subclass("b0", "b0"), Subclass("b1", "b1")))], name="ab")
# Image 0: stage 1 sure and right (a). Image 1: stage 1 unsure and wrong (says a, is b).
SUPER = np.array([[0.9, 0.1], [0.55, 0.45]], np.float32)
SUB = np.array([[0.8, 0.2, 0.5, 0.5],     # p(sub | a), p(sub | b) blocks
                [0.6, 0.4, 0.05, 0.95]], np.float32)
FINE = np.array([0, 3])


def top1(routing, **kw):
    routes = routes_for(SUPER, routing, 2, true_superclass=np.array([0, 1]), **kw)
    probs = combine(SUPER, SUB, routes, H, weighted=routing != "oracle")
    return (probs.argmax(1) == FINE).mean(), specialist_passes(routes)


def test_each_routing_on_known_answers():
    assert top1("hard") == (0.5, 1.0)         # image 1 goes to a: lost
    assert top1("topk") == (1.0, 2.0)         # 0.45 * 0.95 > 0.55 * 0.6: recovered
    assert top1("gated", tau=0.6) == (1.0, 1.5)   # only the unsure image pays for two
    assert top1("gated", tau=0.95) == (1.0, 2.0)
    assert top1("gated", tau=0.5) == (0.5, 1.0)
    assert top1("oracle") == (1.0, 1.0)
    with pytest.raises(ValueError, match="routing must be one of"):
        routes_for(SUPER, "soft")


def test_gated_curve_runs_from_hard_to_topk():
    curve = gated_curve(SUPER, SUB, FINE, H, k=2, taus=np.array([0.0, 0.6]))
    assert [(p["tau"], p["top1"], p["specialist_passes"]) for p in curve] == [
        (0.0, 0.5, 1.0), (0.6, 1.0, 1.5), (1.01, 1.0, 2.0)]


# Catch-all specialists: b's specialist says image 1 is its own (p(other) 0.1), a's that
# it is not (0.9); on image 0 both agree with stage 1.
OTHER = np.array([[0.05, 0.9], [0.9, 0.1]], np.float32)
# A case top-k alone gets wrong: stage 1 prefers a clearly, b's block is flat.
SUPER_CLEAR = np.array([[0.7, 0.3]], np.float32)
SUB_FLAT = np.array([[0.9, 0.1, 0.5, 0.5]], np.float32)


def test_catch_all_rejects_a_wrong_route():
    routes = routes_for(SUPER_CLEAR, "topk", 2)
    plain = combine(SUPER_CLEAR, SUB_FLAT, routes, H)
    assert plain.argmax(1).tolist() == [0]          # 0.7 * 0.9 wins: the wrong block
    other = np.array([[0.95, 0.05]], np.float32)     # a's specialist rejects the image
    caught = combine(SUPER_CLEAR, SUB_FLAT, routes, H, other_probs=other)
    assert caught.argmax(1).tolist() in ([2], [3])   # b's block now wins
    # p(fine) ∝ p(s) (1 - p_s(other)) p(sub | s, not other), renormalised over the routes.
    weights = np.array([0.7 * 0.05, 0.3 * 0.95])
    expected = np.array([0.9 * weights[0], 0.1 * weights[0], 0.5 * weights[1],
                         0.5 * weights[1]]) / weights.sum()
    np.testing.assert_allclose(caught[0], expected, rtol=1e-6)


def test_catch_all_with_each_routing():
    def top1(routing, **kw):
        routes = routes_for(SUPER, routing, 2, true_superclass=np.array([0, 1]), **kw)
        probs = combine(SUPER, SUB, routes, H, weighted=routing != "oracle",
                        other_probs=OTHER)
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)   # renormalised
        return (probs.argmax(1) == FINE).mean()

    # Hard routing never compares specialists: p(other) cannot change its answer.
    assert top1("hard") == 0.5 and top1("oracle") == 1.0
    assert top1("topk") == 1.0 and top1("gated", tau=0.6) == 1.0
    curve = gated_curve(SUPER, SUB, FINE, H, k=2, taus=np.array([0.0]), other_probs=OTHER)
    assert [p["top1"] for p in curve] == [0.5, 1.0]
