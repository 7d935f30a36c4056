"""A PNG grid of sample images, one row per superclass, labelled with subclass names."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from supersub_tf.atomic import atomic_path
from supersub_tf.data.pipeline import resize
from supersub_tf.data.source import ImageSource
from supersub_tf.tables import name_list


def classes_without_images(source: ImageSource, split: str) -> list[int]:
    """Fine labels of the hierarchy's classes that have no image in ``split`` (e.g. the
    classes a partial validation set lacks, under ``data.partial_val``)."""
    present = set(np.unique(source.labels(split)).tolist())
    return [f for f in range(source.hierarchy.num_classes) if f not in present]


def preview_gaps(source: ImageSource, split: str) -> str:
    """One line naming the superclasses and classes a ``split`` preview cannot show
    ("" when every class has images in it)."""
    h = source.hierarchy
    empty = set(classes_without_images(source, split))
    if not empty:
        return ""
    whole = [h.superclass_names[k] for k in range(h.num_superclasses)
             if set(h.fine_labels_of(k).tolist()) <= empty]
    classes = [f"{h.class_ids[f]} ({h.class_names[f]})" for f in sorted(empty)]
    return (f"no {split} images for {len(classes)} of {h.num_classes} classes "
            f"({name_list(classes)})"
            + (f", so none for superclass(es) {', '.join(whole)}" if whole else "")
            + "; the preview shows the others")


def sample_images(source: ImageSource, split: str = "train", per_superclass: int = 8
                  ) -> list[list[tuple[np.ndarray, str]]]:
    """Picks ``per_superclass`` images of each superclass, cycling through its subclasses.

    Only subclasses with images in ``split`` are drawn (a partial validation set lacks
    some); a superclass with none gets an empty row. Images are resized to the
    configured size (what the networks see) and not augmented. Returns, per superclass,
    a list of ``(uint8 image, subclass name)``.
    """
    h = source.hierarchy
    size = source.config.image_size
    empty = set(classes_without_images(source, split))
    rows = []
    for k in range(h.num_superclasses):
        fine_labels = [f for f in h.fine_labels_of(k).tolist() if f not in empty]
        wanted = [fine_labels[i % len(fine_labels)] for i in range(per_superclass)
                  ] if fine_labels else []
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

    columns = columns or max(1, *(len(row) for row in rows))
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
            else:  # blank, but not axis("off"): that would hide an empty row's label too
                for spine in ax.spines.values():
                    spine.set_visible(False)
        if row_labels:
            axes[r][0].set_ylabel(row_labels[r], fontsize=8, rotation=0, ha="right",
                                  va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_preview(source: ImageSource, path: str | os.PathLike, split: str = "train",
                  per_superclass: int = 8) -> Path:
    """Writes the sample grid (one row per superclass) as a PNG, atomically.

    A superclass without images in ``split`` keeps its row, empty and labelled so
    (:func:`preview_gaps` says which in words).
    """
    rows = sample_images(source, split, per_superclass)
    labels = [name if row else f"{name}\n(no {split} images)"
              for name, row in zip(source.hierarchy.superclass_names, rows)]
    fig = image_grid(rows, labels, per_superclass, f"{source.hierarchy.name}: {split} samples")
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return out


__all__ = ["classes_without_images", "image_grid", "preview_gaps", "sample_images",
           "write_preview"]
