"""The errors of the service and its client (no FastAPI needed to import them)."""

from __future__ import annotations

from fusionrank.errors import FusionRankError


class BadRequestError(FusionRankError, ValueError):
    """A request the service refuses: ``status`` is the HTTP status (4xx) and ``field`` the
    request field at fault (``user``, ``k``, ``items[3].item_id`` ...); the message is one
    line that starts with the field. The client raises it for a 4xx answer."""

    def __init__(self, field: str | None, message: str, status: int = 422) -> None:
        self.field = field
        self.status = status
        super().__init__(f"{field}: {message}" if field else message)


class MissingExtraError(FusionRankError, ImportError):
    """A module of an optional extra is not installed (``pip install 'fusionrank[serve]'``)."""


def require_serve_extra(module: str) -> None:
    """Import ``module`` (fastapi, uvicorn, httpx) or say in one line which extra brings it."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module} is not installed; `fusionrank serve` and fr.ServeClient need the serve extra: "
            "pip install 'fusionrank[serve]'"
        ) from exc
