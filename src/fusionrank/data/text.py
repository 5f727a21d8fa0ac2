"""Composing an item's text from catalogue fields (a template or a list of fields)."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

from fusionrank.errors import InvalidArgumentError

_SPACES = re.compile(r"\s+")


def field_text(value: Any) -> str:
    """A catalogue cell as text: lists (RecBole token_seq) are joined with spaces; missing is ''.

    >>> field_text(["Action", "Sci-Fi"]), field_text(None), field_text(float("nan"))
    ('Action Sci-Fi', '', '')
    """
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, list | tuple) or (hasattr(value, "tolist") and not isinstance(value, str)):
        items = value.tolist() if hasattr(value, "tolist") else value
        if isinstance(items, list):
            return " ".join(field_text(v) for v in items if field_text(v))
    return str(value).strip()


def template_fields(template: str) -> list[str]:
    """The column names a template reads, in order.

    >>> template_fields("{title}. {description}")
    ['title', 'description']
    """
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def compose_text(
    row: Mapping[str, Any], fields: Sequence[str] | None = None, template: str | None = None
) -> str:
    """Item text from ``template`` (``"{title}. {description}"``; runs of white space
    collapse, so an empty field leaves no gap, and a row whose fields are all empty has
    no text) or from ``fields`` joined by spaces.

    >>> compose_text({"title": "Heat", "year": None, "genres": ["Crime"]}, template="{title} {year} {genres}")
    'Heat Crime'
    >>> compose_text({"title": "Heat", "year": 1995}, fields=["title", "year"])
    'Heat 1995'
    """
    if template:
        values = {n: field_text(row.get(n)) for n in template_fields(template)}
        if not any(values.values()):  # nothing but the template's punctuation
            return ""
        return _SPACES.sub(" ", template.format(**values)).strip()
    if not fields:
        raise InvalidArgumentError("give the text fields (e.g. --fields title,genres) or a template")
    return " ".join(t for t in (field_text(row.get(f)) for f in fields) if t)
