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


def write_preview(source: ImageSource, path: str | os.PathLike, split: str = "train",
                  per_superclass: int = 8) -> Path:
    """Writes the sample grid as a PNG (atomically) and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sample_images(source, split, per_superclass)
    names = source.hierarchy.superclass_names
    fig, axes = plt.subplots(len(rows), per_superclass, squeeze=False,
                             figsize=(1.4 * per_superclass + 1.2, 1.5 * len(rows)))
    for r, row in enumerate(rows):
        for c in range(per_superclass):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(row):
                image, label = row[c]
                ax.imshow(image)
                ax.set_title(label[:18], fontsize=6)
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(names[r], fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(f"{source.hierarchy.name}: {split} samples", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


__all__ = ["sample_images", "write_preview"]
