"""Misclassification analysis and its plots, on hand-made predictions computed by hand.

The toy hierarchy has superclass ``animal`` = {a1, a2} (fine 0, 1) and ``vehicle`` =
{v1, v2, v3} (fine 2, 3, 4). The seven toy images below, with their argmax predictions:

===  =====  ====  ==========================================================
img  label  pred  what it tests
===  =====  ====  ==========================================================
0    0      0     correct
1    0      1     within-superclass error
2    1      2     across error; restricted to animal it is right (a2 > a1)
3    2      2     correct
4    3      4     within error
5    4      0     across by top-1, but vehicle wins by summed probabilities
6    2      3     within error
===  =====  ====  ==========================================================
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import matplotlib
import numpy as np
import pytest

import supersub_tf  # noqa: F401  (selects tf_keras before TensorFlow is imported)
from supersub_tf import Hierarchy, Subclass, Superclass
from supersub_tf.analysis import metrics, plots
from supersub_tf.errors import DataError
from supersub_tf.wordnet import WordNet

PROBS = np.array([
    [0.60, 0.10, 0.10, 0.10, 0.10],
    [0.30, 0.40, 0.10, 0.10, 0.10],
    [0.05, 0.20, 0.35, 0.25, 0.15],
    [0.10, 0.10, 0.50, 0.20, 0.10],
    [0.00, 0.10, 0.20, 0.30, 0.40],
    [0.40, 0.00, 0.20, 0.20, 0.20],
    [0.10, 0.10, 0.30, 0.40, 0.10],
])
LABELS = np.array([0, 0, 1, 2, 3, 4, 2])
PREDS = np.array([0, 1, 2, 2, 4, 0, 3])


@pytest.fixture
def toy() -> Hierarchy:
    return Hierarchy([
        Superclass("animal", (Subclass("a1", "Ant"), Subclass("a2", "Bee"))),
        Superclass("vehicle", (Subclass("v1", "Car"), Subclass("v2", "Van"),
                               Subclass("v3", "Bus"))),
    ], name="toy")


@pytest.fixture
def toy_wordnet() -> WordNet:
    """entity > {animal > {dog > a1, a2}, vehicle > {car > {v1, v2}, v3}}; v3 is also a dog.

    ``rock`` is a second root, unrelated to everything.
    """
    parents = {"animal": {"entity"}, "vehicle": {"entity"}, "dog": {"animal"}, "a1": {"dog"},
               "a2": {"animal"}, "car": {"vehicle"}, "v1": {"car"}, "v2": {"car"},
               "v3": {"vehicle", "dog"}}
    names = {w: w.upper() for w in ["entity", "rock", *parents]}
    return WordNet({k: frozenset(v) for k, v in parents.items()}, names, source="toy")


# ------------------------------------------------------------------------------ accuracy


def test_predictions_of_the_table():
    assert PROBS.argmax(axis=1).tolist() == PREDS.tolist()
    np.testing.assert_allclose(PROBS.sum(axis=1), 1.0)


def test_topk_accuracy():
    assert metrics.topk_accuracy(PROBS, LABELS, 1) == pytest.approx(2 / 7)
    # Only image 2 has its label third (0.35, 0.25 above 0.20); image 5's 0.20 ties
    # two others below 0.40, which counts as a top-2 hit.
    assert metrics.topk_accuracy(PROBS, LABELS, 2) == pytest.approx(6 / 7)
    assert metrics.topk_accuracy(PROBS, LABELS, 3) == 1.0
    assert metrics.topk_accuracy(PROBS, LABELS, 5) == 1.0


def test_top5_on_ten_classes_agrees_with_tensorflow():
    import tensorflow as tf

    probs = np.tile(np.linspace(1.0, 0.1, 10), (3, 1))  # class 0 best, class 9 worst
    labels = np.array([4, 5, 0])  # 5th (hit), 6th (miss), 1st (hit)
    assert metrics.topk_accuracy(probs, labels, 5) == pytest.approx(2 / 3)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=50)
    labels = rng.integers(0, 10, 50)
    for k in (1, 5):
        expected = tf.math.in_top_k(labels, probs.astype(np.float32), k).numpy().mean()
        assert metrics.topk_accuracy(probs, labels, k) == pytest.approx(expected)


def test_input_errors(toy):
    with pytest.raises(ValueError, match="outside 0..4"):
        metrics.confusion_matrix([0, 5], [0, 1], 5)
    with pytest.raises(ValueError, match="hierarchy has 5"):
        metrics.superclass_probs(np.ones((2, 4)), toy)
    with pytest.raises(ValueError, match="must match"):
        metrics.error_breakdown([0, 1], [0], toy)
    with pytest.raises(ValueError, match="k must be"):
        metrics.topk_accuracy(PROBS, LABELS, 0)


def test_confusion_matrix_and_superclass_aggregation(toy):
    conf = metrics.confusion_matrix(LABELS, PREDS, 5)
    assert conf.dtype == np.int64 and conf.shape == (5, 5)
    expected = np.zeros((5, 5), np.int64)
    for t, p in [(0, 0), (0, 1), (1, 2), (2, 2), (3, 4), (4, 0), (2, 3)]:
        expected[t, p] += 1
    np.testing.assert_array_equal(conf, expected)
    # animal->animal: (0,0), (0,1); animal->vehicle: (1,2); vehicle->animal: (4,0);
    # vehicle->vehicle: (2,2), (3,4), (2,3).
    np.testing.assert_array_equal(metrics.superclass_confusion(conf, toy), [[2, 1], [1, 3]])


def test_superclass_probs_and_accuracy_both_ways(toy):
    sup = metrics.superclass_probs(PROBS, toy)
    np.testing.assert_allclose(sup[5], [0.4, 0.6])
    np.testing.assert_allclose(sup.sum(axis=1), 1.0)
    acc = metrics.superclass_accuracy(PROBS, LABELS, toy)
    # Top-1 gets the superclass wrong on images 2 and 5; summed probabilities only on 2.
    assert acc == {"from_top1": pytest.approx(5 / 7), "from_summed_probs": pytest.approx(6 / 7)}


# ------------------------------------------------------------------------------ errors


def test_error_breakdown_and_chance(toy):
    result = metrics.error_breakdown(LABELS, PREDS, toy)
    assert result == {
        "images": 7, "errors": 5, "within": 3, "across": 2,
        "within_share": pytest.approx(0.6), "across_share": pytest.approx(0.4),
        # 3 animal images: (2-1)/(5-1) = 1/4; 4 vehicle images: (3-1)/(5-1) = 1/2.
        "chance_within_share": pytest.approx((3 * 0.25 + 4 * 0.5) / 7),
    }


def test_most_confused_pairs_ordering(toy):
    conf = np.array([[5, 3, 0, 0, 1],
                     [2, 4, 3, 0, 0],
                     [0, 0, 6, 1, 3],
                     [0, 0, 0, 7, 0],
                     [1, 0, 3, 0, 2]])
    pairs = metrics.most_confused_pairs(conf, toy, top=6)
    # Count 3 four times (tie broken by true, then predicted label), then 2, then 1s.
    assert [(p["true"], p["predicted"]) for p in pairs] == [
        (0, 1), (1, 2), (2, 4), (4, 2), (1, 0), (0, 4)]
    assert [p["count"] for p in pairs] == [3, 3, 3, 3, 2, 1]
    assert [p["share"] for p in pairs] == pytest.approx([3 / 9, 3 / 9, 3 / 10, 3 / 6, 2 / 9,
                                                         1 / 9])
    assert [p["same_superclass"] for p in pairs] == [True, False, True, True, True, False]
    assert pairs[1] == {
        "true": 1, "true_id": "a2", "true_name": "Bee", "predicted": 2, "predicted_id": "v1",
        "predicted_name": "Car", "true_superclass": "animal", "predicted_superclass": "vehicle",
        "count": 3, "share": pytest.approx(1 / 3), "same_superclass": False}
    assert len(metrics.most_confused_pairs(conf, toy, top=100)) == 8  # nonzero pairs only


def test_per_superclass_accuracy(toy):
    rows = metrics.per_superclass_accuracy(LABELS, PREDS, toy)
    assert rows == [
        {"superclass": "animal", "images": 3, "fine_accuracy": pytest.approx(1 / 3),
         "superclass_accuracy": pytest.approx(2 / 3), "within_errors": 1, "across_errors": 1},
        {"superclass": "vehicle", "images": 4, "fine_accuracy": pytest.approx(1 / 4),
         "superclass_accuracy": pytest.approx(3 / 4), "within_errors": 2, "across_errors": 1},
    ]


def test_restricted_accuracy(toy):
    # Image 2 alone: unrestricted it is a v1 (wrong), restricted to animal a2 (right).
    one = slice(2, 3)
    assert metrics.topk_accuracy(PROBS[one], LABELS[one]) == 0.0
    assert metrics.restricted_accuracy(PROBS[one], LABELS[one], toy, "animal") == 1.0
    # animal: images 0 (a1 0.6 > 0.1), 1 (a2 0.4 > a1 0.3: wrong), 2 (right) -> 2/3.
    assert metrics.restricted_accuracy(PROBS, LABELS, toy, "animal") == pytest.approx(2 / 3)
    # vehicle: image 3 right; 4 (v3 > v2), 5 (tie -> v1), 6 (v2 > v1) wrong -> 1/4.
    assert metrics.restricted_accuracy(PROBS, LABELS, toy, 1) == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="no images of superclass 'vehicle'"):
        metrics.restricted_accuracy(PROBS[:3], LABELS[:3], toy, "vehicle")


# ------------------------------------------------------------------------------ severity


@pytest.mark.parametrize("a, b, height", [
    ("a1", "a1", 0),
    ("v1", "v2", 1),     # siblings under car
    ("dog", "a1", 1),    # parent and child: the parent is the common ancestor
    ("a1", "a2", 2),     # animal: 2 steps from a1, 1 from a2
    ("a1", "v1", 3),     # only entity
    ("v1", "v3", 2),     # vehicle: max(2, 1)
    ("v3", "a1", 1),     # DAG: v3's second parent dog is a1's parent
    ("a2", "v3", 2),     # animal max(1, 2) = entity max(2, 2) = 2
])
def test_lca_height(toy_wordnet, a, b, height):
    assert metrics.lca_height(a, b, toy_wordnet) == height
    assert metrics.lca_height(b, a, toy_wordnet) == height


def test_lca_height_errors(toy_wordnet):
    with pytest.raises(DataError, match="share no ancestor"):
        metrics.lca_height("rock", "a1", toy_wordnet)
    with pytest.raises(DataError, match="'zz' is not in"):
        metrics.lca_height("a1", "zz", toy_wordnet)


def test_mistake_severity(toy, toy_wordnet):
    two_level = metrics.mistake_severity(LABELS, PREDS, toy)
    # 3 within errors (height 1) and 2 across (height 2).
    assert two_level["errors"] == 5
    assert two_level["mean_hierarchy_height"] == pytest.approx(7 / 5)
    assert two_level["mean_wordnet_height"] is None
    result = metrics.mistake_severity(LABELS, PREDS, toy, toy_wordnet)
    # Errors a1->a2: 2, a2->v1: 3, v2->v3: 2, v3->a1: 1, v1->v2: 1.
    assert result["mean_wordnet_height"] == pytest.approx(9 / 5)
    assert result["wordnet_height_counts"] == [{"height": 1, "count": 2},
                                               {"height": 2, "count": 2},
                                               {"height": 3, "count": 1}]
    assert result["wordnet_skipped"] is None


def test_mistake_severity_skips_wordnet_without_the_classes(toy):
    other = WordNet({"x": frozenset({"y"})}, {"x": "X", "y": "Y"}, source="other")
    result = metrics.mistake_severity(LABELS, PREDS, toy, other)
    assert result["mean_wordnet_height"] is None and result["wordnet_height_counts"] is None
    assert "5 class id(s) not in" in result["wordnet_skipped"]
    assert result["mean_hierarchy_height"] == pytest.approx(7 / 5)


def test_no_errors(toy, toy_wordnet):
    labels = np.array([0, 1, 2, 3, 4])
    probs = np.eye(5)
    breakdown = metrics.error_breakdown(labels, labels, toy)
    assert breakdown["errors"] == 0 and breakdown["within_share"] == 0.0
    assert breakdown["across_share"] == 0.0
    assert breakdown["chance_within_share"] == pytest.approx((2 * 0.25 + 3 * 0.5) / 5)
    severity = metrics.mistake_severity(labels, labels, toy, toy_wordnet)
    assert severity["mean_hierarchy_height"] is None and severity["mean_wordnet_height"] is None
    assert severity["wordnet_height_counts"] == []
    result = metrics.analyze(probs, labels, toy, toy_wordnet)
    assert result["top1"] == 1.0 and result["most_confused_pairs"] == []
    json.dumps(result)


# ------------------------------------------------------------------------------ analyze


def _only_builtins(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _only_builtins(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_only_builtins(v) for v in value)
    return value is None or type(value) in (bool, int, float, str)


def test_analyze_is_json_ready(toy, toy_wordnet):
    result = metrics.analyze(PROBS, LABELS, toy, toy_wordnet, top_pairs=3)
    assert _only_builtins(result)
    assert json.loads(json.dumps(result)) == result
    assert result["images"] == 7 and result["num_classes"] == 5
    assert result["top1"] == pytest.approx(2 / 7) and result["top5"] == 1.0
    assert result["superclass_accuracy"]["from_summed_probs"] == pytest.approx(6 / 7)
    assert result["errors"]["within"] == 3
    assert result["confusion"][0] == [1, 1, 0, 0, 0]
    assert result["superclass_confusion"] == [[2, 1], [1, 3]]
    assert [r["vanilla_restricted_accuracy"] for r in result["per_superclass"]] == \
        pytest.approx([2 / 3, 1 / 4])
    # All off-diagonal counts are 1: ties in (true, predicted) order.
    assert [(p["true"], p["predicted"]) for p in result["most_confused_pairs"]] == [
        (0, 1), (1, 2), (2, 3)]
    assert result["severity"]["mean_wordnet_height"] == pytest.approx(9 / 5)


# ------------------------------------------------------------------------------ plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    from PIL import Image

    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp.png")]


def write_history(path, with_val: bool = True, epochs: int = 3) -> None:
    header = "epoch,accuracy,loss,lr" + (",val_accuracy,val_loss" if with_val else "")
    lines = [header] + [f"{e},{0.3 + 0.1 * e},{2.0 - 0.3 * e},0.01"
                        + (f",{0.25 + 0.1 * e},{2.1 - 0.3 * e}" if with_val else "")
                        for e in range(epochs)]
    path.write_text("\n".join(lines) + "\n")


def test_plots_write_pngs_without_touching_pyplot(tmp_path, toy):
    backend = matplotlib.get_backend()
    conf = metrics.confusion_matrix(LABELS, PREDS, 5)
    out = plots.plot_confusion(conf, toy.class_names, tmp_path / "fine.png", "toy",
                               block_sizes=[2, 3])
    assert out == tmp_path / "fine.png"
    assert_png(out)
    assert_png(plots.plot_confusion(metrics.superclass_confusion(conf, toy),
                                    toy.superclass_names, tmp_path / "sup.png", "sup",
                                    normalize=False))
    rng = np.random.default_rng(0)
    big = rng.integers(0, 5, (40, 40))
    assert_png(plots.plot_confusion(big, [f"c{i}" for i in range(40)], tmp_path / "big.png",
                                    "big", block_sizes=[10, 10, 20]))
    images = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    assert_png(plots.plot_misclassified(images, ["Ant", "Bee", "a very long class name"],
                                        ["Bee", "Car", "Van"], tmp_path / "mis.png", columns=2))
    assert_png(plots.plot_misclassified([], [], [], tmp_path / "none.png"))
    write_history(tmp_path / "a.csv")
    write_history(tmp_path / "b.csv", with_val=False)
    assert_png(plots.plot_training_curves({"vanilla": tmp_path / "a.csv",
                                           "no-val": str(tmp_path / "b.csv")},
                                          tmp_path / "curves.png"))
    rows = [{"superclass": "animal", "specialist": 0.9, "vanilla_restricted": 0.8,
             "vanilla": 0.7},
            {"superclass": "vehicle", "specialist": 0.6, "vanilla_restricted": None,
             "vanilla": 0.5}]
    assert_png(plots.plot_specialists_vs_vanilla(rows, tmp_path / "spec.png"))
    assert matplotlib.get_backend() == backend


def test_confusion_names_the_superclass_blocks_on_both_axes(tmp_path, monkeypatch):
    saved = []
    real_save = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi=110: (
        saved.append(fig), real_save(fig, path))[1])
    big = np.random.default_rng(0).integers(0, 5, (40, 40))  # too big for class labels
    plots.plot_confusion(big, [f"c{i}" for i in range(40)], tmp_path / "big.png", "big",
                         block_sizes=[10, 10, 20], block_names=["dog", "bird", "vehicle"])
    axes = [child for ax in saved[0].axes for child in [ax, *ax.child_axes]]
    named = {axis for ax in axes for axis in ("x", "y")
             if [t.get_text() for t in getattr(ax, f"get_{axis}ticklabels")()]
             == ["dog", "bird", "vehicle"]}
    assert named == {"x", "y"}
    with pytest.raises(ValueError, match="one name per block"):
        plots.plot_confusion(big, [f"c{i}" for i in range(40)], tmp_path / "x.png", "x",
                             block_sizes=[20, 20], block_names=["a"])


def test_plot_input_errors(tmp_path):
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion(np.ones((2, 3)), ["a", "b"], tmp_path / "x.png", "x")
    with pytest.raises(ValueError, match="block sizes sum to 4"):
        plots.plot_confusion(np.ones((3, 3)), ["a", "b", "c"], tmp_path / "x.png", "x",
                             block_sizes=[2, 2])
    with pytest.raises(DataError, match="training history not found"):
        plots.plot_training_curves({"run": tmp_path / "missing.csv"}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_read_history(tmp_path):
    write_history(tmp_path / "h.csv", epochs=2)
    history = plots.read_history(tmp_path / "h.csv")
    assert history["epoch"].tolist() == [0.0, 1.0]
    assert history["val_accuracy"].tolist() == pytest.approx([0.25, 0.35])


def test_plotting_never_imports_pyplot(tmp_path):
    """In a fresh interpreter: plotting leaves pyplot unimported and the backend as it was."""
    code = textwrap.dedent(f"""
        import sys, matplotlib
        import supersub_tf
        from supersub_tf.analysis import plots
        before = matplotlib.get_backend(auto_select=False)
        plots.plot_confusion([[1, 0], [0, 1]], ["a", "b"], {str(tmp_path / "c.png")!r}, "c")
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        assert matplotlib.get_backend(auto_select=False) == before, "backend changed"
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert_png(tmp_path / "c.png")
