"""Plain-text tables for the terminal and Markdown tables for reports."""

from __future__ import annotations

from collections.abc import Sequence


def _fmt(value: object, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(
    rows: Sequence[dict], columns: Sequence[str], digits: int = 4, markdown: bool = False
) -> str:
    """Render ``rows`` (dicts) with the given columns; missing cells print as ``-``."""
    cells = [[_fmt(r.get(c, "-"), digits) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    if markdown:
        head = "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |"
        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        body = ["| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |" for row in cells]
        return "\n".join([head, rule, *body])
    head = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join([head, rule, *body])
