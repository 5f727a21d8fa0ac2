"""Composing an item's text from catalogue fields."""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from typing import Any


def field_text(value: Any) -> str:
    """A catalogue cell as text: lists (RecBole token_seq) are joined with spaces; missing is ''."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and not isinstance(value, str)):
        items = value.tolist() if hasattr(value, "tolist") else value
        if isinstance(items, list):
            return " ".join(field_text(v) for v in items if field_text(v))
    return str(value).strip()


def compose_text(
    row: Mapping[str, Any], fields: Sequence[str] | None = None, template: str | None = None
) -> str:
    """Item text from ``template`` (``"{movie_title} ({release_year}) {class}"``) or from
    ``fields`` joined by spaces (e.g. ``title year genres``)."""
    if template:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
        return template.format(**{n: field_text(row.get(n)) for n in names}).strip()
    if not fields:
        raise ValueError("give the text fields (e.g. --fields movie_title,release_year,class) or a template")
    return " ".join(t for t in (field_text(row.get(f)) for f in fields) if t)
