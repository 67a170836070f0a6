"""Markdown pipe tables: the one renderer behind the tables of evaluation reports,
experiment results and benchmark output.

Cells are text: callers format their numbers first, since each table has its own
conventions (percent with one decimal, ``undefined``, ``—`` for a missing value).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

_RULES: Dict[str, str] = {"left": "---", "right": "---:"}
ALIGNMENTS = tuple(_RULES)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                   align: Optional[Sequence[str]] = None, pad: bool = False) -> List[str]:
    """The lines of a Markdown table: the header, the rule, then one line per row.

    ``align`` holds ``"left"`` or ``"right"`` per column (default: all left); a right
    column's rule ends in a colon (``| --- | ---: |``). ``pad=True`` widens every column
    to its longest cell and draws the rule across the whole width (``|------|-----:|``),
    so the table also lines up as plain text on a console.

    Raises ValueError when there are no columns, or when a row or ``align`` has a
    different number of entries than ``header``, or for an unknown alignment.
    """
    if not header:
        raise ValueError("a Markdown table needs at least one column")
    columns = len(header)
    align = list(align) if align is not None else ["left"] * columns
    if len(align) != columns:
        raise ValueError(f"align has {len(align)} entries but the header has {columns} "
                         f"columns: {list(header)}")
    unknown = [a for a in align if a not in ALIGNMENTS]
    if unknown:
        raise ValueError(f"unknown alignment {unknown[0]!r}; use one of {ALIGNMENTS}")
    for number, row in enumerate(rows, 1):
        if len(row) != columns:
            raise ValueError(f"row {number} has {len(row)} cells but the header has "
                             f"{columns} columns {list(header)}: {list(row)}")
    if not pad:
        return [_line(header), _line([_RULES[a] for a in align])] + [_line(r) for r in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(columns)]

    def padded(row: Sequence[str]) -> str:
        return _line([cell.rjust(w) if a == "right" else cell.ljust(w)
                      for cell, w, a in zip(row, widths, align)])

    # Dashes under the cell and its two spaces keep the rule as wide as the padded cells
    # (and as the tables already pasted into benchmarks/README.md).
    rule = "|" + "|".join("-" * (w + 1) + (":" if a == "right" else "-")
                          for w, a in zip(widths, align)) + "|"
    return [padded(header), rule] + [padded(row) for row in rows]


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
