"""Small parsers shared by the CLI commands."""

from __future__ import annotations

from fusionrank.settings import SettingsError


def parse_pairs(text: str | None, option: str) -> dict[str, str]:
    """``"user=uid,item=sku"`` -> ``{"user": "uid", "item": "sku"}``.

    >>> parse_pairs("user=uid,item=sku", "--columns")
    {'user': 'uid', 'item': 'sku'}
    """
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SettingsError(f"{option}: expected KEY=VALUE pairs separated by commas, got {part!r}")
        out[key.strip()] = value.strip()
    return out


def parse_ks(text: str) -> tuple[int, ...]:
    """``"5,10,20"`` -> ``(5, 10, 20)``."""
    try:
        return tuple(int(k) for k in text.split(","))
    except ValueError as exc:
        raise SettingsError(f"--ks: expected comma-separated integers, got {text!r}") from exc
