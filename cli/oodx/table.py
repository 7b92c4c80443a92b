"""Plain-text tables for the terminal (no dependencies)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    width: int | None = None,
    align_right: Sequence[int] = (),
) -> str:
    """Rows under headers with aligned columns.

    When ``width`` (default: the terminal's, or unlimited when not a terminal) is too narrow,
    the last column is shortened with an ellipsis, never below 12 characters.
    """
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    n = len(headers)
    widths = [max(len(row[i]) for row in cells) for i in range(n)]
    if width is None:
        width = shutil.get_terminal_size((10_000, 24)).columns
    used = sum(widths[:-1]) + 2 * (n - 1)
    last = max(width - used, 12)
    if widths[-1] > last:
        widths[-1] = last
        cells = [row[:-1] + [_fit(row[-1], last)] for row in cells]
    lines = []
    for k, row in enumerate(cells):
        parts = []
        for i, cell in enumerate(row):
            if i == n - 1 and i not in align_right:
                parts.append(cell)
            elif i in align_right:
                parts.append(cell.rjust(widths[i]))
            else:
                parts.append(cell.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
