"""Per-superclass image counts of a dataset, as rows and as a Markdown/plain table."""

from __future__ import annotations

from typing import Any

import numpy as np

from supersub_tf.data.source import ImageSource
from supersub_tf.hierarchy import Hierarchy
from supersub_tf.tables import markdown_table, text_table

NOT_AVAILABLE = "not available"


def split_counts(source: ImageSource) -> dict[str, Any]:
    """Counts images per superclass and split.

    Returns:
        ``{"hierarchy", "dataset", "splits", "rows", "totals"}`` where each row is
        ``{"superclass", "subclasses", <split>: count, ...}``.
    """
    h = source.hierarchy
    splits = list(source.splits())
    per_split = {}
    for split in splits:
        labels = source.labels(split)
        per_split[split] = np.bincount(h.fine_to_superclass[labels],
                                       minlength=h.num_superclasses)
    rows = []
    for k, sup in enumerate(h.superclasses):
        row: dict[str, Any] = {"superclass": sup.name, "subclasses": len(sup.subclasses)}
        row.update({split: int(per_split[split][k]) for split in splits})
        rows.append(row)
    totals: dict[str, Any] = {"superclass": "total", "subclasses": h.num_classes}
    totals.update({split: int(per_split[split].sum()) for split in splits})
    return {"hierarchy": h.name, "dataset": source.description, "splits": splits,
            "rows": rows, "totals": totals,
            "skipped": {split: list(names) for split, names in source.skipped.items() if names},
            "notes": list(source.notes),
            "note_names": {note: list(names) for note, names in source.note_names.items()}}


def hierarchy_counts(hierarchy: Hierarchy, reason: str) -> dict[str, Any]:
    """:func:`split_counts` of a hierarchy whose images are not on disk: the subclass
    counts, and image columns that say the images are not available (and why)."""
    rows = [{"superclass": sup.name, "subclasses": len(sup.subclasses), "train": NOT_AVAILABLE,
             "val": NOT_AVAILABLE} for sup in hierarchy.superclasses]
    totals = {"superclass": "total", "subclasses": hierarchy.num_classes,
              "train": NOT_AVAILABLE, "val": NOT_AVAILABLE}
    return {"hierarchy": hierarchy.name, "dataset": None, "splits": ["train", "val"],
            "rows": rows, "totals": totals, "skipped": {},
            "notes": [f"images not available: {reason}"]}


def format_gaps(summary: dict[str, Any], every_name: bool = True) -> str:
    """The files left out and the gaps accepted, one line each ("" when none).

    With ``every_name`` each note that names only some classes ("... and 60 more") is
    followed by all of them, one per line (``data_gaps.txt``, ``data summary``);
    without it the notes stay one line each (the run's console).
    """
    lines = []
    named = summary.get("note_names", {})
    for note in summary.get("notes", []):
        lines.append(note)
        if every_name and note in named:
            lines += [f"  {name}" for name in named[note]]
    for split, names in summary.get("skipped", {}).items():
        lines.append(f"{split}: {len(names)} undecodable file(s) skipped (data.skip_bad_images):")
        lines += [f"  {name}" for name in names]
    return "\n".join(lines)


def format_table(summary: dict[str, Any], markdown: bool = False) -> str:
    """Renders :func:`split_counts` output as an aligned plain-text or Markdown table
    (the totals last, under a rule in plain text)."""
    columns = ["superclass", "subclasses"] + summary["splits"]
    header = ["superclass", "subclasses"] + [f"{s} images" for s in summary["splits"]]
    body = [[r[c] for c in columns] for r in summary["rows"] + [summary["totals"]]]
    if markdown:
        return markdown_table(header, body)
    return text_table(header, body, rule_before_last=True)
