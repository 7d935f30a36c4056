"""Top-k accuracy of class probabilities, and the checks of their arrays.

One definition for every place that scores predictions: the trained networks' metrics
(``training/networks.py``), the misclassification analysis (``analysis/metrics.py``)
and the scaling study's records. It sits at the bottom of the package (numpy only) so
that the training layer can use it without importing the analysis above it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def as_labels(labels: Any, num_classes: int, what: str = "labels") -> np.ndarray:
    """``labels`` as int64 ``[N]``.

    Raises:
        ValueError: On a shape other than 1-D, a dtype other than integers, or a value
            outside ``0..num_classes - 1`` (naming ``what`` and the first bad value).
    """
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of class indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        raise ValueError(f"{what} contain {int(arr[bad][0])}, outside 0..{num_classes - 1}")
    return arr


def as_probs(probs: Any, num_classes: int | None = None) -> np.ndarray:
    """``probs`` as a float array ``[N, C]`` (float32 softmax outputs kept as they are).

    Raises:
        ValueError: On a shape other than 2-D, or ``C != num_classes`` when given.
    """
    arr = np.asarray(probs)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(f"probabilities must be [N, C], got shape {arr.shape}")
    if num_classes is not None and arr.shape[1] != num_classes:
        raise ValueError(f"probabilities have {arr.shape[1]} classes but the hierarchy has "
                         f"{num_classes}")
    return arr


def check_same_length(a: np.ndarray, b: np.ndarray, what: str) -> None:
    """Raises ValueError naming ``what`` unless ``a`` and ``b`` have the same, non-zero
    length."""
    if len(a) != len(b):
        raise ValueError(f"{what}: {len(a)} vs {len(b)} entries; they must match")
    if not len(a):
        raise ValueError(f"{what}: no images to evaluate")


def topk_accuracy(probs: Any, labels: Any, k: int = 1) -> float:
    """Fraction of images whose true class is among the ``k`` highest probabilities.

    Ties straddling the k-th place count as hits (as ``tf.math.in_top_k`` does): an image
    is a hit when fewer than ``k`` classes score strictly higher than its true class. A
    true class given probability zero is never a hit, however few classes score higher:
    a two-stage prediction is zero outside the superclasses it routed to, and those
    classes are not among its answers (hard routing to a superclass of 3 classes names
    3, not 5).

    Raises:
        ValueError: For ``k < 1`` or malformed arrays (see :func:`as_probs`,
            :func:`as_labels`, :func:`check_same_length`).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    p = as_probs(probs)
    y = as_labels(labels, p.shape[1])
    check_same_length(p, y, "probabilities and labels")
    true_score = p[np.arange(len(y)), y]
    higher = (p > true_score[:, None]).sum(axis=1)
    return float(np.mean((higher < k) & (true_score > 0)))
