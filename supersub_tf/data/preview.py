"""A PNG grid of sample images, one row per superclass, labelled with subclass names."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from supersub_tf.atomic import atomic_path
from supersub_tf.data.pipeline import resize
from supersub_tf.data.source import ImageSource


def sample_images(source: ImageSource, split: str = "train", per_superclass: int = 8
                  ) -> list[list[tuple[np.ndarray, str]]]:
    """Picks ``per_superclass`` images of each superclass, cycling through its subclasses.

    Images are resized to the configured size (what the networks see) and not
    augmented. Returns, per superclass, a list of ``(uint8 image, subclass name)``.
    """
    h = source.hierarchy
    size = source.config.image_size
    rows = []
    for k in range(h.num_superclasses):
        fine_labels = h.fine_labels_of(k)
        wanted = [fine_labels[i % len(fine_labels)] for i in range(per_superclass)]
        row = []
        for fine in dict.fromkeys(wanted):
            count = wanted.count(fine)
            ds = source.raw(split, np.array([fine])).take(count)
            for image, _ in ds.map(lambda im, f: (resize(im, size), f)).as_numpy_iterator():
                row.append((image, h.class_names[fine]))
        rows.append(row)
    return rows


def image_grid(rows: list[list[tuple[np.ndarray, str]]], row_labels: list[str] | None = None,
               columns: int | None = None, title: str = ""):
    """A matplotlib Figure showing ``rows`` of ``(uint8 image, caption)``.

    Built on ``matplotlib.figure.Figure`` (no pyplot), so it neither needs a display nor
    changes the backend of an interactive session; a notebook shows it by evaluating it.
    """
    from matplotlib.figure import Figure

    columns = columns or max(len(row) for row in rows)
    fig = Figure(figsize=(1.4 * columns + (1.2 if row_labels else 0.2), 1.5 * len(rows)))
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(row):
                image, caption = row[c]
                ax.imshow(image)
                ax.set_title(caption[:18], fontsize=6)
            else:
                ax.axis("off")
        if row_labels:
            axes[r][0].set_ylabel(row_labels[r], fontsize=8, rotation=0, ha="right",
                                  va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_preview(source: ImageSource, path: str | os.PathLike, split: str = "train",
                  per_superclass: int = 8) -> Path:
    """Writes the sample grid (one row per superclass) as a PNG, atomically."""
    fig = image_grid(sample_images(source, split, per_superclass),
                     source.hierarchy.superclass_names, per_superclass,
                     f"{source.hierarchy.name}: {split} samples")
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return out


__all__ = ["image_grid", "sample_images", "write_preview"]
