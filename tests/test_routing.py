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
