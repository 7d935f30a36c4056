"""Routing variants on a hand-made two-superclass hierarchy whose answers are known."""

import numpy as np
import pytest

from supersub_tf.hierarchy import Hierarchy, Subclass, Superclass
from supersub_tf.supersub.routing import (
    cheapest_within, combine, gated_curve, routes_for, specialist_passes, stage_one_probs)

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
    assert top1("soft") == (1.0, 2.0)          # every superclass: here top-2 is all
    with pytest.raises(ValueError, match="routing must be one of"):
        routes_for(SUPER, "mixed")


def test_gated_curve_runs_from_hard_to_topk():
    curve = gated_curve(SUPER, SUB, FINE, H, k=2, taus=np.array([0.0, 0.6]))
    assert [(p["tau"], p["top1"], p["specialist_passes"]) for p in curve] == [
        (0.0, 0.5, 1.0), (0.6, 1.0, 1.5), (1.01, 1.0, 2.0)]


def test_the_default_threshold_is_the_cheapest_within_a_tolerance_of_the_best():
    curve = [{"tau": 0.3, "top1": 0.430, "specialist_passes": 0.7},
             {"tau": 0.5, "top1": 0.451, "specialist_passes": 1.4},
             {"tau": 0.6, "top1": 0.453, "specialist_passes": 1.5},
             {"tau": 0.7, "top1": 0.453, "specialist_passes": 1.5},
             {"tau": 1.0, "top1": 0.455, "specialist_passes": 2.0}]
    assert cheapest_within(curve, 0.456)["tau"] == 0.6     # 0.453 >= 0.456 - 0.003
    assert cheapest_within(curve, 0.456, tolerance=0.006)["tau"] == 0.5
    assert cheapest_within(curve, 0.470)["tau"] == 1.0     # none close: the most accurate
    with pytest.raises(ValueError, match="empty"):
        cheapest_within([], 0.5)


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


# A vanilla stage 1: fine probabilities; p(superclass) is their sum over each block.
# Image 0: confident (0.7) and right; image 1: unsure (0.4 on a0), truly b1.
VANILLA_LOGITS = np.log(np.array([[0.7, 0.1, 0.1, 0.1], [0.4, 0.05, 0.2, 0.35]]))


def test_stage_one_from_a_vanilla_network_sums_fine_probabilities():
    sup, fine = stage_one_probs(VANILLA_LOGITS, H, "fine")
    np.testing.assert_allclose(fine, np.exp(VANILLA_LOGITS), rtol=1e-6)
    np.testing.assert_allclose(sup, [[0.8, 0.2], [0.45, 0.55]], rtol=1e-6)
    generalist_sup, none = stage_one_probs(np.log(SUPER), H, "superclass")
    assert none is None and np.allclose(generalist_sup, SUPER)
    with pytest.raises(ValueError, match="must give 2 outputs"):
        stage_one_probs(VANILLA_LOGITS, H, "superclass")


def test_soft_routing_is_the_probability_weighted_sum_over_every_superclass():
    sup = np.array([[0.5, 0.3, 0.2]], np.float32)
    h3 = Hierarchy([*H.superclasses, Superclass("c", (Subclass("c0", "c0"),))], name="abc")
    sub = np.array([[0.9, 0.1, 0.2, 0.8, 1.0]], np.float32)
    routes = routes_for(sup, "soft")
    assert routes.tolist() == [[0, 1, 2]] and specialist_passes(routes) == 3.0
    probs = combine(sup, sub, routes, h3)
    # p(fine) = p(s) * p(fine | s): HD-CNN's probabilistic averaging.
    np.testing.assert_allclose(probs, [[0.45, 0.05, 0.06, 0.24, 0.2]], rtol=1e-6)
    assert routes_for(sup, "topk", 2).tolist() == [[0, 1]]


def test_gated_keeps_stage_ones_answer_above_tau_and_asks_specialists_below():
    sup, fine = stage_one_probs(VANILLA_LOGITS, H, "fine")
    routes = routes_for(sup, "gated", 2, tau=0.5, stage_one_fine=fine)
    assert routes.tolist() == [[-1, -1], [1, 0]]    # confident image: no specialist pass
    assert specialist_passes(routes) == 1.0
    probs = combine(sup, SUB, routes, H, stage_one_fine=fine)
    np.testing.assert_allclose(probs[0], fine[0])   # stage 1's own answer, exactly
    expected = np.concatenate([0.45 * SUB[1, :2], 0.55 * SUB[1, 2:]])
    np.testing.assert_allclose(probs[1], expected, rtol=1e-6)   # the specialists' soft answer
    assert probs.argmax(1).tolist() == [0, 3]
    with pytest.raises(ValueError, match="stage_one_fine"):
        combine(sup, SUB, routes, H)
    # Over tau: 0 passes (vanilla alone) at tau 0, top-k on every image above 1.
    curve = gated_curve(sup, SUB, FINE, H, k=2, taus=np.array([0.0]), stage_one_fine=fine)
    assert [(p["top1"], p["specialist_passes"]) for p in curve] == [(0.5, 0.0), (1.0, 2.0)]


# ------------------------------------------------------------------------- the registry
def test_the_registry_is_the_one_list_of_modes():
    """Every mode is one RoutingMode; the tuples, the command line's choices and help,
    and the report's columns are read from it."""
    from supersub_tf.analysis.report import supersub_table
    from supersub_tf.cli import build_parser
    from supersub_tf.supersub import routing

    assert tuple(routing.MODES) == routing.ALL_ROUTINGS == ("hard", "topk", "soft", "gated",
                                                           "oracle")
    assert routing.INFERENCE_ROUTINGS == ("hard", "topk", "soft", "gated")
    assert routing.routing_mode("topk").label == "top-k"
    assert not routing.routing_mode("oracle").weighted
    with pytest.raises(ValueError, match=r"routing must be one of \('hard', 'topk', 'soft', "
                                         r"'gated', 'oracle'\), got 'mixed'"):
        routing.routing_mode("mixed")
    predict = build_parser()._subparsers._group_actions[0].choices["predict"]
    [option] = [a for a in predict._actions if a.dest == "routing"]
    assert tuple(option.choices) == routing.INFERENCE_ROUTINGS
    for name in routing.INFERENCE_ROUTINGS:
        assert f"{name}: {routing.MODES[name].summary}" in option.help
    result = {"routing": {name: {"top1": 0.5, "errors_from_stage1": 0.25}
                          for name in routing.MODES},
              "storage": {"a": 0.125, "a_n_plus_1": 1.5}}
    header = supersub_table({"4bit": result}, 0.4).splitlines()[0]
    assert header.split("|")[2:7] == [" top-1 hard ", " top-1 top-k ", " top-1 soft ",
                                      " top-1 gated ", " top-1 oracle "]


def test_each_mode_routes_through_its_registry_entry(monkeypatch):
    """routes_for dispatches to the mode's own function: a registered mode is all a new
    routing needs (here one that routes every image to superclass b)."""
    from supersub_tf.supersub import routing

    always_b = routing.RoutingMode("always_b", "always b", "superclass b",
                                   lambda sup, k, truth, tau, fine: np.ones((len(sup), 1), int))
    monkeypatch.setitem(routing.MODES, "always_b", always_b)
    assert routes_for(SUPER, "always_b").tolist() == [[1], [1]]
    for name, expected in (("hard", [[0], [0]]), ("topk", [[0, 1], [0, 1]]),
                           ("soft", [[0, 1], [0, 1]]), ("gated", [[0, -1], [0, 1]]),
                           ("oracle", [[0], [1]])):
        assert routes_for(SUPER, name, 2, np.array([0, 1]), tau=0.6).tolist() == expected


def test_the_main_job_logs_the_comparison_table_from_its_results(tmp_path, monkeypatch):
    """The main job logs the report's Super-Sub table built from the stage's results (no
    report.md is read back: here none is even written)."""
    import json
    from types import SimpleNamespace

    from supersub_tf.run import pipeline as run
    from supersub_tf.analysis.report import supersub_table
    from supersub_tf.config import load_config
    from supersub_tf.supersub.routing import MODES

    results = {"4bit": {"routing": {name: {"top1": 0.5 + i / 100, "errors_from_stage1": 0.2}
                                    for i, name in enumerate(MODES)},
                        "storage": {"a": 0.1, "a_n_plus_1": 1.4}}}
    source = SimpleNamespace(description="toy", hierarchy=SimpleNamespace(name="toy"))
    monkeypatch.setattr(run, "create_source", lambda data: source)
    monkeypatch.setattr(run, "data_stage", lambda *a, **k: None)
    monkeypatch.setattr(run, "train_stage", lambda *a, **k: {})
    monkeypatch.setattr(run, "supersub_stage", lambda *a, **k: results)
    monkeypatch.setattr(run, "analyze_run", lambda *a, **k: tmp_path / "no_report.md")
    config = load_config(None, [f"output_dir={tmp_path}", "name=toy", "export.enabled=false",
                                "data.preset=toy"])
    run_dir = tmp_path / "toy"
    (run_dir / "vanilla").mkdir(parents=True)
    (run_dir / "vanilla" / "metrics.json").write_text(json.dumps({"top1": 0.45}))
    lines = []
    run._run_all(config, run_dir, lines.append)
    table = supersub_table(results, 0.45)
    assert table in lines
    assert table.splitlines()[2:] == [
        "| vanilla network | 0.450 | - | - | - | - | - | - | - | - |",
        "| Super-Sub, 4bit deltas | 0.500 | 0.510 | 0.520 | 0.530 | 0.540 | 0.200 | 0.100 "
        "| 1.400 |"]
