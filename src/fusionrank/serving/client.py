"""A small client of ``fusionrank serve`` for notebooks: ``fr.ServeClient``.

>>> client = ServeClient("http://127.0.0.1:8000")  # nothing is sent yet
>>> client.url
'http://127.0.0.1:8000'
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from fusionrank.serving.errors import BadRequestError, require_serve_extra


class ServeClient:
    """Calls the routes of a running service and gives answers as DataFrames (``rank,
    item_id, score`` and ``title``/``why`` where known). A 4xx or 5xx answer raises
    :class:`~fusionrank.serving.errors.BadRequestError` with the service's one line and
    the status. Needs httpx (the ``serve`` extra)."""

    def __init__(self, url: str = "http://127.0.0.1:8000", timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http: Any = None

    def _client(self) -> Any:
        if self._http is None:
            require_serve_extra("httpx")
            import httpx

            self._http = httpx.Client(base_url=self.url, timeout=self.timeout)
        return self._http

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self._client().request(method, path, **kwargs)
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail", answer.text)
            except ValueError:
                detail = answer.text
            raise BadRequestError(None, f"{answer.status_code}: {detail}", answer.status_code)
        return answer.json()

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/health"))

    def run_info(self) -> dict[str, Any]:
        """The run's metrics and settings."""
        return dict(self._call("GET", "/run"))

    def recommend(
        self,
        user: str | None = None,
        k: int = 10,
        user_features: Mapping[str, Any] | None = None,
        explain: bool = False,
    ) -> pd.DataFrame:
        """Top-k for ``user`` (known to the run), or from ``user_features`` (unknown users)."""
        if user_features is None:
            rows = self._call("GET", "/recommend", params={"user": user, "k": k, "explain": explain})
        else:
            body = {"user": user, "user_features": dict(user_features), "k": k, "explain": explain}
            rows = self._call("POST", "/recommend", json=body)
        return _table(rows)

    def add_items(self, items: Sequence[Mapping[str, Any]] | pd.DataFrame) -> dict[str, Any]:
        """Add items (``item_id`` and catalogue fields); all or none. What the service could
        not read from them (``warnings`` of the answer, e.g. items without genres) is also
        raised as a :class:`UserWarning`, so a notebook shows it."""
        if isinstance(items, pd.DataFrame):
            records = [{str(k): v for k, v in r.items()} for r in items.to_dict("records")]
        else:
            records = [dict(r) for r in items]
        answer = dict(self._call("POST", "/items", json={"items": records}))
        for line in answer.get("warnings", []):
            warnings.warn(line, UserWarning, stacklevel=2)
        return answer

    def similar(self, item: str, k: int = 10, kind: str = "both") -> pd.DataFrame:
        """Content and collaborative neighbours (``why`` says which)."""
        return _table(self._call("GET", "/similar", params={"item": item, "k": k, "kind": kind}))

    def audience(self, item: str, k: int = 10) -> pd.DataFrame:
        """The users who should see ``item``."""
        return pd.DataFrame(self._call("GET", "/audience", params={"item": item, "k": k}))

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> ServeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    columns = ["rank", "item_id", "score", *[c for c in ("title", "why") if any(c in r for r in rows)]]
    return pd.DataFrame(rows, columns=columns)
