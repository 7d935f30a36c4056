"""Top-k accuracy, the one scorer of the trained networks, the analysis and the studies."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from supersub_tf.accuracy import topk_accuracy
from supersub_tf.analysis import metrics

PACKAGE = Path(__file__).resolve().parents[1] / "supersub_tf"


def test_a_class_given_zero_probability_is_never_a_hit():
    """Hard routing's answer is zero outside the routed superclass: with 3 subclasses
    routed, a label elsewhere is no top-5 hit, though fewer than 5 classes beat it."""
    fine = np.zeros((3, 8), np.float32)
    fine[:, :3] = [0.6, 0.3, 0.1]         # routed to the superclass of classes 0-2
    labels = np.array([2, 1, 5])          # 5 lies outside the routed block
    assert topk_accuracy(fine, labels, 5) == pytest.approx(2 / 3)
    assert topk_accuracy(fine, labels, 1) == 0.0
    assert topk_accuracy(fine, np.array([0, 0, 0]), 1) == 1.0
    # Ties straddling the k-th place still count (tf.math.in_top_k's rule).
    tied = np.array([[0.4, 0.3, 0.3]])
    assert topk_accuracy(tied, [2], 2) == 1.0 and topk_accuracy(tied, [2], 1) == 0.0


def test_the_analysis_and_the_trainers_score_with_it():
    """One definition: the analysis re-exports it, and the network trainer and the
    scaling records import it instead of computing top-1/top-5 themselves."""
    assert metrics.topk_accuracy is topk_accuracy
    for module in ("training/networks.py", "studies/scaling_records.py"):
        source = (PACKAGE / module).read_text(encoding="utf-8")
        tree = ast.parse(source)
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and node.module == "supersub_tf.accuracy" for alias in node.names}
        assert imported == {"topk_accuracy"}, module
        assert "argsort" not in source, f"{module} ranks classes itself"
