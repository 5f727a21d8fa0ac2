"""The service's typed requests and answers (pydantic; they make the OpenAPI document at
``/docs``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fusionrank.pipelines.recommend import PLACEMENT_DEPTH

MAX_K = PLACEMENT_DEPTH
"""The most items (or users) one answer may hold."""

MAX_NEW_ITEMS = 10_000
"""The most items one ``POST /items`` may add."""

FeatureValue = str | int | float


class RankedItem(BaseModel):
    """One item of an answer, best first."""

    item_id: str
    score: float
    rank: int = Field(ge=1)
    title: str | None = None
    """The item's title, when the dataset profile names a title column."""
    why: str | None = None
    """What placed it: the ranker's three largest feature contributions (``explain``), the
    content score of an added item, or the kind of neighbour (``/similar``)."""


class RankedUser(BaseModel):
    """One user of ``/audience``, best first."""

    user_id: str
    score: float
    rank: int = Field(ge=1)


class RecommendRequest(BaseModel):
    """``POST /recommend``: a user by id, by side features, or both."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, min_length=1, description="User id (external).")
    user_features: dict[str, FeatureValue] | None = Field(
        default=None,
        description="Side features of a user unknown to the run (the dataset profile's user columns).",
    )
    k: int = Field(default=10, ge=1, le=MAX_K)
    explain: bool = Field(default=False, description="The top features behind each item (LTR runs).")


class NewItem(BaseModel):
    """An item to add: its id and catalogue fields (those of the dataset's text template;
    ``title`` and ``genres`` stand for the profile's title and genres columns), optionally
    an image path under the service's image root."""

    model_config = ConfigDict(extra="allow")

    item_id: str = Field(min_length=1)
    title: str | None = None
    genres: str | list[str] | None = Field(
        default=None, description="Categories (a list, or space separated), where the dataset has genres."
    )
    image: str | None = Field(default=None, description="Image path, relative to the image root.")


class AddItemsRequest(BaseModel):
    """``POST /items``."""

    model_config = ConfigDict(extra="forbid")

    items: list[NewItem] = Field(min_length=1, max_length=MAX_NEW_ITEMS)


class AddItemsResponse(BaseModel):
    """What ``POST /items`` did: every item was added, or none."""

    added: int
    item_ids: list[str]
    total_added: int
    """Items added to the run so far (every request, this process's and others')."""
    seconds: float
    warnings: list[str] = Field(default_factory=list)
    """What the content model could not read from the items (e.g. ``items[0].genres``: no
    genres given, where it reads genres beside the text); the items were added all the same."""


class Health(BaseModel):
    """``GET /health``: the service is up and its run loaded (it answers only then)."""

    status: Literal["ok"] = "ok"
    run: str
    kind: Literal["run", "train"]
    users: int
    items: int
    added_items: int


class RunInfo(BaseModel):
    """``GET /run``: the run's metrics and settings, as its files hold them."""

    name: str
    kind: Literal["run", "train"]
    folder: str
    metrics: dict[str, Any]
    settings: dict[str, Any]


class ErrorAnswer(BaseModel):
    """Every 4xx and 5xx answer: one line, starting with the request field at fault."""

    detail: str
