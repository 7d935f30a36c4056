"""A network's training history: the per-epoch ``history.csv`` Keras' CSVLogger writes.

The engine (:mod:`supersub_tf.training.engine`) writes it and returns it read back;
the analysis plots it and the studies take their curves from it.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from supersub_tf.errors import DataError

#: A network folder's per-epoch history, as Keras' CSVLogger writes it.
HISTORY = "history.csv"


def read_history(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a Keras ``CSVLogger`` file into ``{column: float array}``.

    Empty or non-numeric cells become NaN (not plotted). A missing ``epoch`` column is
    replaced by the row number. A network with two heads (the generalist's auxiliary
    fine head) also gets its ``logits`` head's metrics under the plain names
    (``accuracy``, ``val_accuracy``). When an epoch appears twice (a run resumed from a backup
    taken before that epoch's row was written), its last row is kept.

    Raises:
        DataError: If the file does not exist or has no header.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"training history not found: {p}")
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise DataError(f"training history {p} is empty (expected a CSVLogger header)")
        rows = list(reader)
        columns = [c.strip() for c in reader.fieldnames]
    if "epoch" in columns:
        by_epoch = {row.get(reader.fieldnames[columns.index("epoch")]): row for row in rows}
        rows = list(by_epoch.values())
    history = {col: np.array([_to_float(row.get(raw)) for row in rows])
               for col, raw in zip(columns, reader.fieldnames)}
    if "epoch" not in history:
        history["epoch"] = np.arange(len(rows), dtype=np.float64)
    for prefix in ("", "val_"):  # a two-head network: its main head's under the plain names
        for metric in ("accuracy", "top5"):
            main = f"{prefix}logits_{metric}"
            if main in history and f"{prefix}{metric}" not in history:
                history[f"{prefix}{metric}"] = history[main]
    return history


def _to_float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan
