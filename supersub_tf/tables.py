"""Tables and numbers as text: the one formatter of reports, notebooks and benchmarks.

Markdown for reports and notebooks (:func:`markdown_table`), aligned plain text for
terminals (:func:`text_table`), and the number formats both use: accuracies as
percentages (:func:`pct`), differences of accuracies in signed percentage points
(:func:`points`), and :func:`cell` for anything else; :func:`name_list` shortens a
list of names to one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def pct(value: float | None, digits: int = 1) -> str:
    """``0.259`` -> ``25.9%``; None -> ``-``."""
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def points(value: float | None, digits: int = 1) -> str:
    """A difference of two accuracies in percentage points, signed: ``+3.3``; None -> ``-``."""
    return "-" if value is None else f"{100 * value:+.{digits}f}"


def cell(value: Any) -> str:
    """A table cell: None -> ``-``, booleans yes/no, floats with 3 decimals, ints with
    thousands separators, anything else as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table of :func:`cell` values; the first column left-aligned, the
    others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
               align: str | None = None, rule_before_last: bool = False) -> str:
    """A plain-text table of :func:`cell` values, columns padded to their widest cell.

    Args:
        header: Column names.
        rows: One sequence of values per row, as many as ``header``.
        align: One letter per column, ``l`` or ``r``; by default the first column is
            left-aligned and the others right-aligned.
        rule_before_last: Draw a rule above the last row too (a totals row).

    Raises:
        ValueError: When ``align`` or a row does not have one entry per column.
    """
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"align {align!r} needs one letter per column ({len(header)})")
    cells = [[str(h) for h in header]] + [[cell(v) for v in row] for row in rows]
    for row in cells:
        if len(row) != len(header):
            raise ValueError(f"row {row} has {len(row)} cells, the header {len(header)}")
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(v.ljust(w) if a == "l" else v.rjust(w)
                         for v, w, a in zip(row, widths, align)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(row) for row in cells[1:]]
    if rule_before_last and body:
        body.insert(len(body) - 1, rule)
    return "\n".join([line(cells[0]), rule, *body])


def name_list(names: Sequence[str], limit: int = 5) -> str:
    """``a, b, c`` or, beyond ``limit`` names, ``a, b, c, d, e and 60 more``: a list in
    one line of a message (where the full list goes elsewhere, e.g. ``data_gaps.txt``)."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
