"""Saved predictions: a network's validation probabilities and labels, as ``.npz``.

Training writes them once; every analysis reads them back, so analysing or re-plotting
a run never needs the networks or TensorFlow.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from supersub_tf.atomic import atomic_write_bytes

PREDICTIONS = "val_predictions.npz"


def save_predictions(path: str | Path, probs: np.ndarray, labels: dict[str, np.ndarray]) -> None:
    """Writes probabilities ``[N, C]`` and label arrays (``fine``, ``superclass``, ...)
    as a compressed ``.npz``, atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, probs=probs, **labels)
    atomic_write_bytes(path, buffer.getvalue())


def load_predictions(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Reads :func:`save_predictions` output: ``(probs, {label name: array})``."""
    with np.load(path) as data:
        return data["probs"], {k: data[k] for k in data.files if k != "probs"}
