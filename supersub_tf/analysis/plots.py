"""PNG figures of the misclassification analysis and of training runs.

Every figure is built on ``matplotlib.figure.Figure`` without pyplot, so plotting needs
no display and never changes the backend or the current figure of an interactive
session. Each function writes its PNG atomically and returns the path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from supersub_tf.atomic import atomic_path
from supersub_tf.training.history import read_history

# Above this many classes a confusion matrix drops its tick labels.
MAX_LABELLED_CLASSES = 30
# Up to this many classes the cells of a confusion matrix carry their values.
MAX_ANNOTATED_CLASSES = 12


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches, without pyplot (no display, no current
    figure, the backend untouched): every plot of the package starts from one."""
    return Figure(figsize=(width, height))


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Writes ``fig`` to ``path`` as a PNG, atomically; returns the path."""
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return out


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


# ------------------------------------------------------------------------------ confusion


def row_normalize(matrix: Any) -> np.ndarray:
    """Divides each row by its sum (rows summing to 0 stay 0): per true class rates."""
    m = np.asarray(matrix, dtype=np.float64)
    totals = m.sum(axis=1, keepdims=True)
    return np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)


def plot_confusion(matrix: Any, names: Sequence[str], path: str | os.PathLike,
                   title: str = "Confusion matrix", normalize: bool = True,
                   block_sizes: Sequence[int] | None = None,
                   block_names: Sequence[str] | None = None) -> Path:
    """Heatmap of a confusion matrix (rows true, columns predicted).

    Args:
        matrix: ``[C, C]`` counts.
        names: Class names, used as tick labels up to ``MAX_LABELLED_CLASSES`` classes.
        path: The PNG to write.
        title: Figure title.
        normalize: Show row-normalised rates (each true class sums to 1) instead of
            counts, so classes with few images are as visible as large ones.
        block_sizes: Sizes of consecutive class blocks (subclasses per superclass); their
            boundaries are drawn as lines, which shows within- vs across-superclass
            confusion even when the matrix is too large for labels.
        block_names: One name per block (the superclasses), written at each block's
            middle along the top and right edges, so the blocks are named on both axes
            whether or not the classes are.
    """
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {m.shape}")
    c = m.shape[0]
    if len(names) != c:
        raise ValueError(f"{len(names)} names for a {c}x{c} confusion matrix")
    if block_sizes is not None and sum(block_sizes) != c:
        raise ValueError(f"block sizes sum to {sum(block_sizes)}, not {c}")
    if block_names is not None and (block_sizes is None or len(block_names) != len(block_sizes)):
        raise ValueError("block_names needs block_sizes, one name per block")
    values = row_normalize(m) if normalize else m.astype(np.float64)
    side = min(max(4.0, 0.32 * c + 2.5), 14.0)
    fig = new_figure(side + 1.2, side)
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Blues", interpolation="nearest",
                      vmin=0.0, vmax=1.0 if normalize else max(float(values.max()), 1.0))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="share of true class" if normalize else "images")
    if c <= MAX_LABELLED_CLASSES:
        short = [_shorten(n, 18) for n in names]
        ax.set_xticks(range(c), short, rotation=90, fontsize=7)
        ax.set_yticks(range(c), short, fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if c <= MAX_ANNOTATED_CLASSES:
        _annotate_cells(ax, values, normalize)
    if block_sizes is not None:
        for edge in np.cumsum(block_sizes)[:-1]:
            ax.axhline(edge - 0.5, color="tab:red", linewidth=0.8)
            ax.axvline(edge - 0.5, color="tab:red", linewidth=0.8)
    if block_names is not None:
        middles = np.cumsum(block_sizes) - np.asarray(block_sizes) / 2 - 0.5
        short = [_shorten(n, 16) for n in block_names]
        top = ax.secondary_xaxis("top")
        top.set_xticks(middles, short, rotation=90, fontsize=7, color="tab:red")
        right = ax.secondary_yaxis("right")
        right.set_yticks(middles, short, fontsize=7, color="tab:red")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _annotate_cells(ax, values: np.ndarray, normalize: bool) -> None:
    top = float(values.max()) or 1.0
    for (i, j), v in np.ndenumerate(values):
        if v:
            text = f"{v:.2f}" if normalize else f"{int(v)}"
            ax.text(j, i, text, ha="center", va="center", fontsize=6,
                    color="white" if v > 0.6 * top else "black")


# ------------------------------------------------------------------------------ images


def plot_misclassified(images: Sequence[np.ndarray] | np.ndarray, true_names: Sequence[str],
                       predicted_names: Sequence[str], path: str | os.PathLike,
                       columns: int = 8, title: str = "Misclassified images") -> Path:
    """A grid of uint8 images, each captioned with its true and predicted class.

    Captions read ``true -> predicted`` on two lines, so long class names stay legible.
    An empty list writes a figure saying there is nothing to show.
    """
    n = len(images)
    if not len(true_names) == len(predicted_names) == n:
        raise ValueError(f"{n} images but {len(true_names)} true and {len(predicted_names)} "
                         "predicted names")
    if columns < 1:
        raise ValueError(f"columns must be >= 1, got {columns}")
    columns = min(columns, max(n, 1))
    rows = max(math.ceil(n / columns), 1)
    fig = new_figure(1.5 * columns + 0.2, 1.75 * rows + (0.4 if title else 0.0))
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        image = np.asarray(images[i])
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.set_title(f"{_shorten(true_names[i], 20)}\n-> {_shorten(predicted_names[i], 20)}",
                     fontsize=6)
    if not n:
        axes[0][0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------------------ curves


def _metric_column(history: Mapping[str, np.ndarray], metric: str) -> str | None:
    """``metric`` if logged, else the first training column ending in it (e.g. fine_accuracy)."""
    if metric in history:
        return metric
    candidates = sorted(c for c in history if c.endswith(metric) and not c.startswith("val_"))
    return candidates[0] if candidates else None


def plot_training_curves(histories: Mapping[str, str | os.PathLike], path: str | os.PathLike,
                         title: str = "Training curves") -> Path:
    """Loss and accuracy per epoch of named runs, from their ``history.csv`` files.

    Each run gets one colour; training curves are dashed, validation curves solid. Runs
    without validation columns (or without accuracy) simply lack those lines.

    Args:
        histories: Run name -> path of its Keras CSVLogger file.
        path: The PNG to write.
        title: Figure title.
    """
    fig = new_figure(11.0, 4.2)
    loss_ax, acc_ax = fig.subplots(1, 2)
    colors = [f"C{i % 10}" for i in range(len(histories))]
    for color, (run, csv_path) in zip(colors, histories.items()):
        history = read_history(csv_path)
        epochs = history["epoch"] + 1  # Keras counts epochs from 0
        marker = "o" if len(epochs) <= 12 else None  # a one-epoch run is a point, not a line
        for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
            column = _metric_column(history, metric)
            if column is None:
                continue
            ax.plot(epochs, history[column], linestyle="--", marker=marker, color=color,
                    label=f"{run} train")
            if f"val_{column}" in history:
                ax.plot(epochs, history[f"val_{column}"], linestyle="-", marker=marker,
                        color=color, label=f"{run} val")

    for ax, metric in ((loss_ax, "loss"), (acc_ax, "accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------------------ specialists

_BARS = (("specialist", "specialist"),
         ("vanilla_restricted", "vanilla, restricted to superclass"),
         ("vanilla", "vanilla"))


def plot_specialists_vs_vanilla(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                                title: str = "Specialists vs vanilla network") -> Path:
    """Grouped bars per superclass: specialist, vanilla restricted and vanilla accuracy.

    The restricted vanilla accuracy (oracle superclass, choice among its subclasses) is
    the fair baseline for a specialist; the unrestricted one is what the vanilla network
    achieves on those images on its own. Missing (None) values leave a gap.

    Args:
        rows: Dicts with keys ``superclass``, ``specialist``, ``vanilla_restricted`` and
            ``vanilla`` (accuracies in [0, 1]).
        path: The PNG to write.
        title: Figure title.
    """
    names = [str(r["superclass"]) for r in rows]
    x = np.arange(len(rows))
    width = 0.8 / len(_BARS)
    fig = new_figure(max(5.0, 0.9 * len(rows) + 2.0), 4.2)
    ax = fig.subplots()
    for i, (key, label) in enumerate(_BARS):
        values = [math.nan if r.get(key) is None else float(r[key]) for r in rows]
        bars = ax.bar(x + (i - 1) * width, values, width, label=label, color=f"C{i}")
        if len(rows) <= 12:
            ax.bar_label(bars, labels=["" if math.isnan(v) else f"{v:.2f}" for v in values],
                         fontsize=6, padding=1)
    ax.set_xticks(x, [_shorten(n, 16) for n in names], rotation=45 if len(rows) > 6 else 0,
                  ha="right" if len(rows) > 6 else "center", fontsize=8)
    ax.set_ylim(0.0, 1.25)  # headroom above 1.0 for the legend
    ax.set_yticks(np.linspace(0.0, 1.0, 6))
    ax.set_ylabel("accuracy on the superclass's images")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper center", ncol=len(_BARS), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


__all__ = ["plot_confusion", "plot_misclassified", "plot_specialists_vs_vanilla",
           "plot_training_curves", "read_history", "row_normalize"]


# ------------------------------------------------------------------------------ storage
def plot_storage_vs_accuracy(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                             vanilla_top1: float | None = None, paper_a: float = 0.2) -> Path:
    """Super-Sub top-1 (hard routing) against the storage factor ``a`` of ``a * N + 1``.

    Args:
        rows: One per stored system: ``tag`` (its label), ``a`` and ``hard_top1``.
        path: The PNG to write.
        vanilla_top1: Drawn as a horizontal line (the network Super-Sub competes with).
        paper_a: The paper's storage factor, drawn as a vertical line.
    """
    fig = new_figure(6.0, 4.0)
    ax = fig.subplots()
    for row in sorted(rows, key=lambda r: r["a"]):
        ax.scatter(row["a"], 100 * row["hard_top1"], s=36, zorder=3,
                   label=f"{row['tag']} deltas: a = {row['a']:.3f}, "
                         f"{100 * row['hard_top1']:.1f}%")
    ax.plot([r["a"] for r in sorted(rows, key=lambda r: r["a"])],
            [100 * r["hard_top1"] for r in sorted(rows, key=lambda r: r["a"])],
            color="grey", linewidth=0.8, zorder=2)
    ax.axvline(paper_a, color="tab:red", linestyle="--", linewidth=0.9,
               label=f"the paper's a = {paper_a}")
    if vanilla_top1 is not None:
        ax.axhline(100 * vanilla_top1, color="black", linewidth=0.9,
                   label=f"vanilla network {100 * vanilla_top1:.1f}%")
    ax.set_xscale("log")
    ax.set_xlabel("storage per specialist, a (float32 generalists; log scale)")
    ax.set_ylabel("Super-Sub top-1, hard routing (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)
