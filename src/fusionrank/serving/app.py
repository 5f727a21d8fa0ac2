"""The routes of ``fusionrank serve`` and the server that runs them.

FastAPI builds the routes from typed functions (the pydantic models of
:mod:`~fusionrank.serving.schemas` validate requests, shape answers and make the OpenAPI
document at ``/docs``); uvicorn runs them (graceful shutdown: on SIGINT/SIGTERM it stops
accepting, finishes the requests in flight, then exits). The route functions are plain
``def``: FastAPI runs them in its thread pool, so adding items (embedding, seconds) never
stalls the other requests, and every answer comes from :class:`ServedRun`, whose readers
need no lock.

Every refusal is a 4xx with ``{"detail": "<field>: <what is wrong>"}`` in one line, and
anything unexpected a 500 with one line; the process keeps serving.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from fusionrank.columns import ITEM_ID, RANK, SCORE, USER_ID
from fusionrank.errors import FusionRankError, UnknownKeyError
from fusionrank.pipelines.recommend import SIDE_FEATURES_SOURCE, check_run_folder
from fusionrank.recommender import UnknownUserError
from fusionrank.serving.errors import BadRequestError
from fusionrank.serving.schemas import (
    MAX_K,
    AddItemsRequest,
    AddItemsResponse,
    ErrorAnswer,
    Health,
    RankedItem,
    RankedUser,
    RecommendRequest,
    RunInfo,
)
from fusionrank.serving.state import ServedRun

ANONYMOUS = "<anonymous>"
"""The user id of a ``POST /recommend`` that gives side features and no id."""

ENVIRONMENT = ("FUSIONRANK_SERVE_RUN", "FUSIONRANK_SERVE_ROOT", "FUSIONRANK_SERVE_IMAGE_ROOT")
"""Where each worker process of ``--workers N`` finds the run, data root and image root."""
THREADS_VARIABLE = "FUSIONRANK_SERVE_THREADS"
"""Where each worker process of ``--workers N`` finds ``--threads``."""

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorAnswer, "description": what}
    for status, what in (
        (404, "Unknown user or item"),
        (409, "An item id that exists already"),
        (422, "A request field at fault"),
    )
}


def create_app(state: ServedRun) -> FastAPI:
    """The service answering from ``state`` (a run opened and prepared once)."""
    app = FastAPI(
        title="fusionrank",
        summary=f"Recommendations from the run {state.folder.name}",
        description=(
            "Top-k for known users (the run's candidates, features and LightGBM ranker), for unknown "
            "users from side features, added items, similar items. Every refusal is one line naming "
            "the field at fault."
        ),
        version=_version(),
    )
    app.state.run = state
    _handle_errors(app)
    seen_fields = state.data.profile.user_features

    def current() -> ServedRun:
        state.sync()  # items another worker process added
        return state

    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> dict[str, Any]:
        """Up, with the run loaded (the service answers only once it is)."""
        run = current()
        return {
            "run": run.folder.name,
            "kind": "run" if run.ltr else "train",
            "users": run.split.n_users,
            "items": run.split.n_items,
            "added_items": len(run.added),
        }

    @app.get("/run", response_model=RunInfo, tags=["service"])
    async def run_info() -> dict[str, Any]:
        """The run's metrics (``metrics.json``) and settings (its config)."""
        return state.info()

    @app.get("/recommend", response_model=list[RankedItem], responses=ERRORS, tags=["recommend"])
    async def recommend_get(
        response: Response,
        user: str = Query(min_length=1, description="User id (external)."),
        k: int = Query(10, ge=1, le=MAX_K),
        explain: bool = Query(False, description="The top features behind each item (LTR runs)."),
    ) -> list[dict[str, Any]]:
        """Top-k for a user: by the ranker for a known user, else from the user's side
        features in the dataset's user table."""
        return _answer(current(), response, user, k, None, explain)

    @app.post("/recommend", response_model=list[RankedItem], responses=ERRORS, tags=["recommend"])
    async def recommend_post(response: Response, request: RecommendRequest = Body()) -> list[dict[str, Any]]:
        """Top-k for a user by id, or for an unknown user from ``user_features``."""
        if request.user is None and not request.user_features:
            raise BadRequestError("user", "give a user id, user_features, or both")
        if request.user_features:
            _check_features(request.user_features, seen_fields)
        user = request.user if request.user is not None else ANONYMOUS
        return _answer(current(), response, user, request.k, request.user_features, request.explain)

    @app.post("/items", response_model=AddItemsResponse, responses=ERRORS, tags=["items"])
    def add_items(request: AddItemsRequest = Body()) -> dict[str, Any]:
        """Add items (id and catalogue fields): embedded with the run's text encoder, scored by
        its content model, then recommendable at once. All or none; kept in the run's log."""
        rows = [item.model_dump(exclude_none=True) for item in request.items]
        return state.add_items(rows)

    @app.get("/similar", response_model=list[RankedItem], responses=ERRORS, tags=["items"])
    async def similar(
        item: str = Query(min_length=1, description="Item id (catalogue or added)."),
        k: int = Query(10, ge=1, le=MAX_K),
        kind: Literal["both", "content", "collaborative"] = Query("both"),
    ) -> list[dict[str, Any]]:
        """Content neighbours (cosine of content vectors) and collaborative neighbours (the
        item-item weights of the run's first model that has them); ``why`` says which."""
        run = current()
        if not run.is_item(item):
            raise BadRequestError("item", f"{item!r} is neither in the run's catalogue nor added to it", 404)
        content, collab = run.similar_top(item, k)  # arrays: the answer is built without pandas
        out = []
        if kind in ("both", "content"):
            out += run.records(*content, why="content")
        if kind in ("both", "collaborative"):
            weights = run.item_weights()
            source = f"collaborative ({weights[0]})" if weights is not None else "collaborative"
            out += run.records(*collab, why=source)
        return out

    @app.get("/audience", response_model=list[RankedUser], responses=ERRORS, tags=["items"])
    async def audience(
        item: str = Query(min_length=1, description="Item id (added, or in the catalogue)."),
        k: int = Query(10, ge=1, le=MAX_K),
    ) -> list[dict[str, Any]]:
        """Which users should see this item: those the content model scores highest for it
        (users who already saw a catalogue item are left out)."""
        run = current()
        if not run.is_item(item):
            raise BadRequestError("item", f"{item!r} is neither in the run's catalogue nor added to it", 404)
        table = run.audience(item, k)
        return [
            {USER_ID: str(u), SCORE: float(s), RANK: int(r)}
            for u, s, r in zip(table[USER_ID], table[SCORE], table[RANK])
        ]

    return app


def _answer(
    run: ServedRun,
    response: Response,
    user: str,
    k: int,
    features: Mapping[str, Any] | None,
    explain: bool,
) -> list[dict[str, Any]]:
    if explain and not run.ltr:
        raise BadRequestError(
            "explain", "needs a `fusionrank run` folder (a LightGBM ranker explains its scores)"
        )
    answer = None if explain else run.ranker_answer(user, k)  # the hot path, without pandas
    if answer is not None:
        records, source = answer
        response.headers["X-FusionRank-Source"] = source
        return records
    known = run.has_history(user)
    try:
        side = run.side_feature_records(user, features, k)  # an unknown user's path, without pandas
        if side is not None:
            response.headers["X-FusionRank-Source"] = SIDE_FEATURES_SOURCE
            return side
        table = run.recommend(user, k, features, explain=explain and known)
    except (UnknownUserError, ValueError) as exc:
        if known or not isinstance(exc, FusionRankError):
            raise
        columns = ", ".join(run.data.profile.user_features) or "none"
        raise BadRequestError(
            "user",
            f"{user!r} is unknown to the run and has no side features; POST /recommend with "
            f"user_features ({columns})",
            404,
        ) from exc
    response.headers["X-FusionRank-Source"] = str(table.attrs.get("source", ""))
    return _records(table)


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    columns = [c for c in ("title", "why") if c in table.columns]
    out = []
    for row in zip(table[ITEM_ID], table[SCORE], table[RANK], *(table[c] for c in columns)):
        record: dict[str, Any] = {ITEM_ID: str(row[0]), SCORE: float(row[1]), RANK: int(row[2])}
        for name, value in zip(columns, row[3:]):
            if isinstance(value, str) and value:
                record[name] = value
        out.append(record)
    return out


def _check_features(features: Mapping[str, Any], columns: tuple[str, ...]) -> None:
    unknown = [c for c in features if c not in columns]
    if unknown:
        raise BadRequestError(
            f"user_features.{unknown[0]}",
            f"not a side feature of the run (it has {', '.join(columns) or 'none'})",
        )


def _field(location: tuple[Any, ...]) -> str:
    """``("body", "items", 3, "item_id")`` -> ``items[3].item_id``."""
    parts = [p for p in location if p not in ("body", "query", "path")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _handle_errors(app: FastAPI) -> None:
    def answer(status: int, text: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": _one_line(text)})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = dict(exc.errors()[0]) if exc.errors() else {"msg": "invalid request"}
        if first.get("type") == "json_invalid":
            reason = dict(first.get("ctx") or {}).get("error", first["msg"])
            return answer(400, f"body: malformed JSON ({reason})")
        field = _field(tuple(first.get("loc", ("body",))))
        return answer(422, f"{field}: {first['msg']}")

    @app.exception_handler(BadRequestError)
    async def refused(request: Request, exc: BadRequestError) -> JSONResponse:
        return answer(exc.status, str(exc))

    @app.exception_handler(UnknownKeyError)
    async def unknown(request: Request, exc: UnknownKeyError) -> JSONResponse:
        return answer(404, str(exc))

    @app.exception_handler(FusionRankError)
    async def user_error(request: Request, exc: FusionRankError) -> JSONResponse:
        return answer(422, str(exc))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        return answer(500, f"internal error ({type(exc).__name__}: {exc}); the service goes on")


def app_from_environment() -> FastAPI:
    """The app of one worker process of ``fusionrank serve --workers N`` (uvicorn's factory):
    the run named by ``$FUSIONRANK_SERVE_RUN``, loaded in this process."""
    run, root, image_root = (os.environ.get(name) or None for name in ENVIRONMENT)
    if run is None:
        raise BadRequestError(
            None, "FUSIONRANK_SERVE_RUN is not set: start the service with fusionrank serve"
        )
    app = create_app(ServedRun.load(run, root, image_root))
    ready_to_answer(int(os.environ.get(THREADS_VARIABLE) or 1))
    return app


def ready_to_answer(threads: int) -> None:
    """What a worker does between loading the run and answering: :func:`answer_threads`,
    and the loaded objects (half a million: the libraries, the run) moved out of the
    garbage collector's sight (``gc.freeze``), so that a full collection, which would
    otherwise walk all of them and hold every in-flight request for about 0.1 s, only
    walks what requests allocate."""
    answer_threads(threads)
    gc.collect()
    gc.freeze()


def _check_threads(threads: int) -> None:
    if threads < 1:
        raise BadRequestError("--threads", f"must be >= 1, got {threads}")


def answer_threads(threads: int) -> None:
    """Let torch and the BLAS/OpenMP pools use ``threads`` threads from now on (after the
    run is loaded, which uses them all). A request's arithmetic is a few small products;
    with more threads, the pools' idle threads spin between requests and take a core from
    the event loop and the clients: on ml-100k one thread answers the mixed load 1.8×
    faster than two (`benchmarks/results/serve.md`). More cores: more ``--workers``."""
    _check_threads(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # numpy's BLAS keeps its own count (the serve extra installs threadpoolctl)
        return
    threadpool_limits(threads)


def serve(
    run: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    root: str | Path | None = None,
    image_root: str | Path | None = None,
    log_level: str = "warning",
    ready: Any = None,
    threads: int = 1,
) -> None:
    """Serve ``run`` until SIGINT/SIGTERM (in-flight requests finish first). One worker
    loads the run here, before the port opens (a bad folder fails in one line); ``workers``
    > 1 starts that many processes, each loading the run (memory × N), sharing the item
    log. ``ready`` (a callable) is called once the run is loaded. ``threads``: numeric
    threads per worker while answering (:func:`answer_threads`)."""
    import uvicorn

    if workers < 1:
        raise BadRequestError("--workers", f"must be >= 1, got {workers}")
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "timeout_graceful_shutdown": 30,
        "access_log": False,
    }
    _check_threads(threads)
    if workers == 1:
        app = create_app(ServedRun.load(run, root, image_root))
        ready_to_answer(threads)
        if ready is not None:
            ready()
        uvicorn.run(app, **options)
        return
    check_run_folder(Path(run))  # one line for a bad folder, before the workers start
    os.environ[THREADS_VARIABLE] = str(threads)
    for name, value in zip(ENVIRONMENT, (run, root, image_root)):
        if value is not None:
            os.environ[name] = str(Path(value).resolve()) if name != ENVIRONMENT[1] else str(value)
    uvicorn.run("fusionrank.serving.app:app_from_environment", factory=True, workers=workers, **options)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fusionrank")
    except PackageNotFoundError:
        return "0"
