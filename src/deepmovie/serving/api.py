"""The REST API and the web page over one :class:`Recommender` (a ranker, optionally paired with a rater).

The list is ordered by the ranker's score; each item carries the rater's predicted stars (``rating``,
None without a rater) and the user's own rated items that led to it (``because``). Every filter of
:class:`~deepmovie.recommender.schemas.Filters` is a query parameter of ``GET /recommend`` and a field
of ``POST /recommend``, with ``offset`` for the next page and ``explain`` for the reasons.

Limits, each refused before any work: a request body over ``max_body`` bytes is a 413 (by its
Content-Length, and counted as it arrives whether declared or chunked, in :class:`BodyLimit`, before
FastAPI parses anything); more than ``max_ratings`` ratings or a ``k`` above ``max_k`` is a 422. Every
error is JSON ``{"detail": ...}``: 422 for a malformed request (a parameter or a field of the wrong type
or range), 404 for an id the model does not know or an unknown route, 405 for a wrong method (with
every method of the path in Allow), 413 for a body too large, 400 for a body that is not JSON (or one
past Python's nesting depth or integer size) or a well-formed but impossible request (an unknown genre,
a rating off the scale, a ranker that cannot fold a new user in).

Numbers are taken as numbers only: a JSON body's fields are strict (``true``, ``"10"`` or ``1.5`` for
an integer is a 422 naming the field), and a query's integers are plain decimal digits (not ``1.0``,
``1_000`` or ``true``). Every GET route answers HEAD too (:class:`HeadAsGet`).

Endpoints run in threads (at most one per core at a time), except a list that takes well under a
millisecond (a factor model's, iALS's with its reasons or without: timed at start), which is computed
on the event loop; the recommender they share is read-only, so concurrent requests need no locks. A
well-formed ``GET /recommend`` is answered before FastAPI's routing (:class:`QueryRoute`), from the
same query model the route declares.
"""

import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from types import UnionType
from typing import Annotated, Union, get_args, get_origin
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from deepmovie import __version__
from deepmovie.errors import DeepMovieError
from deepmovie.recommender import Recommender, UnknownIdError
from deepmovie.recommender.recommender import MAX_COLD_RATINGS
from deepmovie.recommender.schemas import History, Movie, Prediction, Recommendations, SimilarItems

STATIC = Path(__file__).parent / "static"
# What each worker process of ``serve --workers N`` reads: the runs and the limits.
RUN_ENV = "DEEPMOVIE_RUN"  # the ranker's run directory (or the one run served)
RATER_ENV = "DEEPMOVIE_RATER"  # the rater's run directory, when one is paired
MAX_BODY_ENV = "DEEPMOVIE_MAX_BODY"
MAX_K_ENV = "DEEPMOVIE_MAX_K"

MAX_BODY = 1_000_000  # bytes of a request body (1 MB)
MAX_K = 1000  # items in one answer
MAX_RATINGS = MAX_COLD_RATINGS  # ratings of a new user in one request
MAX_OFFSET = 1_000_000  # the deepest page
MAX_LISTED = 100  # genres or excluded items named in one GET query
BODY_SECONDS = 30.0  # for a request body to arrive whole

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]
DECIMAL = re.compile(r"-?[0-9]+")


def decimal_digits(value: object) -> object:
    """A query's integer as plain decimal digits: pydantic alone also reads '1.0', '1_000' and ' 10 '."""
    if isinstance(value, str) and not DECIMAL.fullmatch(value):
        raise PydanticCustomError("int_parsing", "Input should be an integer in plain decimal digits")
    return value


QueryInt = Annotated[int, BeforeValidator(decimal_digits)]

IdText = Annotated[str, StringConstraints(min_length=1, max_length=64)]
GenreText = Annotated[str, StringConstraints(min_length=1, max_length=64)]
UserId = Annotated[IdText, Query(description="a user id of the training data")]
ItemId = Annotated[IdText, Query(description="an item (movie) id of the training data")]
Offset = Annotated[QueryInt, Query(ge=0, le=MAX_OFFSET, description="the page's first position (0: the top)")]
Explain = Annotated[bool, Query(description="name the user's rated items behind each item (because)")]
Genres = Annotated[
    list[GenreText] | None,
    Query(max_length=MAX_LISTED, description="only items of any of these genres (repeatable)"),
]
Genre = Annotated[
    list[GenreText] | None, Query(max_length=MAX_LISTED, description="the same as genres (older name)")
]
MinYear = Annotated[
    QueryInt | None, Query(ge=0, le=9999, description="only items released this year or later")
]
MaxYear = Annotated[
    QueryInt | None, Query(ge=0, le=9999, description="only items released this year or earlier")
]
MinRatings = Annotated[
    QueryInt, Query(ge=0, le=2**31, description="only items with at least this many training ratings")
]
Exclude = Annotated[
    list[IdText] | None, Query(max_length=MAX_LISTED, description="items never to show (repeatable)")
]
MaxPerGenre = Annotated[
    QueryInt | None, Query(ge=1, le=MAX_OFFSET, description="at most this many items of one genre")
]
Diversity = Annotated[
    float | None, Query(ge=0, le=1, description="MMR: weight of dissimilarity to the items already listed")
]


class NewRating(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: true is no rating, "4" no number

    item: IdText | int
    rating: float = Field(allow_inf_nan=False)


class ColdStartFilters(BaseModel):
    """What ``POST /recommend`` takes beside the ratings: the page and the filters. Strict: a boolean,
    a string or a fraction where an integer belongs is refused, not read as 1, 10 or a page."""

    model_config = ConfigDict(extra="forbid", strict=True)

    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="the page's first position (0: the top)")
    explain: bool = Field(True, description="name the rated items behind each item (because)")
    genres: list[GenreText] | GenreText = Field(
        default_factory=list, description="only items of any of these genres"
    )
    genre: GenreText | None = Field(None, description="one genre (older name; added to genres)")
    min_year: int | None = Field(None, ge=0, le=9999)
    max_year: int | None = Field(None, ge=0, le=9999)
    min_ratings: int = Field(0, ge=0, le=2**31)
    exclude: list[IdText | int] = Field(default_factory=list, max_length=MAX_RATINGS)
    max_per_genre: int | None = Field(None, ge=1, le=MAX_OFFSET)
    diversity: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before the app reads any of
    it. A declared Content-Length over the limit is refused at once; every body, declared or chunked,
    is also counted as it arrives (a Content-Length is only the client's word) and held until complete
    (never past the limit), then handed to the app. A body still incomplete after ``seconds`` (one that
    declared more than it sends) is a 408, rather than a connection held open for good. An HTTP/1
    request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112, 6.3): it goes
    straight on, with nothing to count or wait for (a GET's own cost, not a body's)."""

    def __init__(self, app: ASGIApp, limit: int, seconds: float = BODY_SECONDS) -> None:
        self.app = app
        self.limit = limit
        self.seconds = seconds

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http" or bodiless(scope):
            await self.app(scope, receive, send)
            return
        declared = [value for name, value in scope["headers"] if name == b"content-length"]
        chunked = any(
            name == b"transfer-encoding" and b"chunked" in value.lower() for name, value in scope["headers"]
        )
        if declared and not chunked:
            try:
                length = int(declared[0])
            except ValueError:
                await reject(send, 400, "Content-Length: not a number of bytes")
                return
            if length > self.limit:
                await reject(send, 413, f"request body of {length:,} bytes: at most {self.limit:,}")
                return
        body, more = bytearray(), True
        with anyio.move_on_after(self.seconds):
            while more and len(body) <= self.limit:
                message = await receive()
                if message["type"] != "http.request":  # the client went away
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
        if len(body) > self.limit:
            await reject(send, 413, f"request body streamed past {self.limit:,} bytes: at most that")
            return
        if more:
            await reject(send, 408, f"request body incomplete after {self.seconds:g} s")
            return
        whole: dict | None = {"type": "http.request", "body": bytes(body), "more_body": False}

        async def replay() -> dict:
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()

        await self.app(scope, replay, send)


def bodiless(scope: dict) -> bool:
    """Whether an HTTP/1 request has no body by its framing: neither a length nor chunks declared."""
    return scope.get("http_version") in ("1.0", "1.1") and not any(
        name in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"]
    )


class HeadAsGet:
    """ASGI middleware: HEAD is answered as GET would be, same status and headers, without the body.
    FastAPI's GET routes answer HEAD with 405 (Starlette's own routes and static files take it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: dict) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


class QueryRoute:
    """ASGI middleware: ``GET path`` whose query ``model`` takes is answered by ``endpoint`` here,
    without FastAPI's routing and its per-request walk through the route's signature (which cost as
    much CPU as an iALS list itself). Everything else goes on to the app, which answers as the route
    always has: a query the model refuses (FastAPI's 422), or an error the endpoint raises (a 404 for
    an unknown user: raised again as the app calls the endpoint)."""

    def __init__(
        self, app: ASGIApp, path: str, model: type[BaseModel], endpoint: Callable[..., Awaitable[Response]]
    ) -> None:
        self.app = app
        self.path = path
        self.model = model
        self.endpoint = endpoint
        self.repeatable = frozenset(n for n, f in model.model_fields.items() if is_list(f.annotation))

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        try:
            query = self.model.model_validate(query_values(scope["query_string"], self.repeatable))
            response = await self.endpoint(query)
        except (ValidationError, DeepMovieError):
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


def query_values(query_string: bytes, repeatable: frozenset[str]) -> dict[str, object]:
    """A query's values as FastAPI reads them (through Starlette's ``QueryParams``): every value of a
    ``repeatable`` parameter, the last one of any other, blank values kept."""
    values: dict[str, object] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if name in repeatable:
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
    return values


def is_list(annotation: object) -> bool:
    """Whether a parameter of this type may repeat in a query (a list, or an optional one)."""
    if get_origin(annotation) in (Union, UnionType):
        return any(is_list(arg) for arg in get_args(annotation))
    return get_origin(annotation) in (list, tuple, set, frozenset)


async def reject(send: Callable, status: int, detail: str) -> None:
    """Answer ``{"detail": ...}`` with ``status`` and close the connection (the body is left unread)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


INLINE_SECONDS = 1e-3  # a list computed faster than this is computed on the event loop


def quick(recommender: Recommender, cold_start: bool) -> dict[str, bool]:
    """Which lists take under ``INLINE_SECONDS`` (the best of a few timed calls): a known user's and a
    new one's, each without and with explanations (``_explained``). A factor model's lists without
    explanations always do (one product); a new user's are timed only where one can be folded in."""
    factors = all(r.factors is not None for r in (recommender, recommender.rater) if r is not None)
    lists = {"known_user": factors, "new_user": factors}
    lists |= {"known_user_explained": False, "new_user_explained": False}
    users = np.flatnonzero(recommender.known_users)
    items = np.flatnonzero(recommender.known_items)
    if not len(users) or not len(items):
        return lists
    user = recommender.artifacts.user_ids.raw[users[0]].item()
    ratings = {recommender.artifacts.item_ids.raw[items[0]].item(): recommender.artifacts.scale.high}
    for explain, suffix in ((False, ""), (True, "_explained")):
        known = partial(recommender.recommend, user, k=10, explain=explain)
        new = partial(recommender.recommend_new, ratings, k=10, explain=explain)
        lists[f"known_user{suffix}"] = lists[f"known_user{suffix}"] or fast(known)
        lists[f"new_user{suffix}"] = lists[f"new_user{suffix}"] or (cold_start and fast(new))
    return lists


def fast(call: Callable[[], object]) -> bool:
    """Whether ``call`` takes under ``INLINE_SECONDS``: the best of five, after one to warm caches up."""
    call()
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - began)
    return best < INLINE_SECONDS


def load_recommender(ranker: Path | str, rater: Path | str | None = None) -> Recommender:
    """The run ``ranker`` (a ranking or a rating run), paired with the rating run ``rater`` if given
    (both trained on the same data: :meth:`Recommender.pair` refuses otherwise)."""
    recommender = Recommender.load(ranker)
    if rater is not None:
        recommender.pair(Recommender.load(rater))
    return recommender


def create_app(
    recommender: Recommender,
    *,
    max_body: int = MAX_BODY,
    max_k: int = MAX_K,
    max_ratings: int = MAX_RATINGS,
) -> FastAPI:
    """The app serving ``recommender``; one intra-op thread, as concurrent requests are the parallelism.

    ``max_body``: bytes of a request body (413 above); ``max_k``: items in one answer (422 above);
    ``max_ratings``: a new user's ratings in one request (422 above)."""
    for name, value in (("max_body", max_body), ("max_k", max_k), ("max_ratings", max_ratings)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DeepMovieError(f"{name}: {value!r} is not a positive number")
    torch.set_num_threads(1)  # small per-request ops: more threads only contend (10-40x slower here)
    rater = recommender.rater
    pair = f", stars from {rater.model_name!r}" if rater not in (None, recommender) else ""
    app = FastAPI(
        title="DeepMovie",
        version=__version__,
        description=f"Recommendations ranked by a trained {recommender.model_name!r} model{pair}.",
    )
    # A list that takes well under a millisecond (a factor model's one product; iALS's, with its
    # reasons or without) is computed on the event loop, sparing a thread hop; slower ones (a fold-in,
    # EASE's reasons) go to threads, at most one per core at a time: more only share the cores, so
    # every request of a burst would finish late instead of most finishing early.
    limiter = anyio.CapacityLimiter(max(1, os.cpu_count() or 1))
    described = recommender.describe()
    inline = quick(recommender, bool(described["cold_start"]))
    info = {
        "ranker": recommender.model_name,
        "rater": rater.model_name if rater is not None else None,
        "rater_cold_start": rater is not None and bool(rater.describe()["cold_start"]),
        "limits": {"max_body": max_body, "max_k": max_k, "max_ratings": max_ratings},
        "inline": inline,  # lists computed on the event loop
    }

    K = Annotated[QueryInt, Query(ge=1, le=max_k, description=f"how many items (at most {max_k})")]

    class KnownUser(BaseModel):
        """``GET /recommend``'s query. One definition for FastAPI (the docs, the errors) and for
        :class:`QueryRoute` (the answers), so both take the same queries."""

        user: UserId
        k: K = 10
        offset: Offset = 0
        explain: Explain = True
        include_seen: bool = False
        genres: Genres = None
        genre: Genre = None
        min_year: MinYear = None
        max_year: MaxYear = None
        min_ratings: MinRatings = 0
        exclude: Exclude = None
        max_per_genre: MaxPerGenre = None
        diversity: Diversity = None

    class ColdStart(ColdStartFilters):
        """A new user's ratings: recommendations without retraining (fold-in)."""

        ratings: list[NewRating] = Field(min_length=1, max_length=max_ratings)
        k: int = Field(10, ge=1, le=max_k)

    @app.exception_handler(DeepMovieError)
    def _bad_request(request: Request, exc: DeepMovieError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404 if isinstance(exc, UnknownIdError) else 400)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's own answer echoes the input, and a NaN in it made that answer a 500. A body that is
        not JSON is a 400, as one FastAPI cannot decode at all is (a 422 is JSON that does not fit)."""
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":
            where = errors[0]["loc"][-1]
            return JSONResponse(
                {"detail": f"request body: not JSON ({errors[0]['ctx']['error']} at character {where})"},
                status_code=400,
            )
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    def _http(request: Request, exc: HTTPException) -> JSONResponse:
        """Unknown routes (404), wrong methods (405, with Allow) and the like: JSON as every error is.
        A 405's Allow names every route of the path (the router names only the first one's methods)."""
        headers = exc.headers
        if exc.status_code == 405:
            allowed = {
                method
                for route in app.routes
                if isinstance(route, APIRoute) and route.matches(request.scope)[0] is Match.PARTIAL
                for method in route.methods
            }
            if "GET" in allowed:
                allowed.add("HEAD")  # answered by HeadAsGet
            if allowed:
                headers = {**(headers or {}), "Allow": ", ".join(sorted(allowed))}
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    def _crash(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    async def answer(
        function: Callable[..., BaseModel], *args: object, inline: bool = False, **kwargs: object
    ) -> Response:
        """Call the recommender and send its result as JSON (pydantic's own encoder: no second pass
        through FastAPI's), on the event loop when ``inline``, else in the thread pool."""
        if inline:
            result = function(*args, **kwargs)
        else:
            result = await anyio.to_thread.run_sync(partial(function, *args, **kwargs), limiter=limiter)
        return Response(result.model_dump_json(), media_type="application/json")

    @app.get("/health")
    def health() -> dict[str, object]:
        """Liveness and what is served: the ranker, the rater (whose stars are shown; None: no stars),
        whether a new user can be folded in (``cold_start``), the genres and the limits."""
        return {"status": "ok", **described, **info}

    @app.get("/predict", response_model=Prediction)
    async def predict(user: UserId, item: ItemId) -> Response:
        """The predicted rating of an item by a known user: the rater's where there is one, else the
        model's own score."""
        return await answer((rater or recommender).predict, user, item, inline=inline["known_user"])

    @app.get("/recommend", response_model=Recommendations)
    async def recommend(query: Annotated[KnownUser, Query()]) -> Response:
        """Top-k items for a known user from position ``offset``, ordered by the ranker's score; items
        they rated are left out unless ``include_seen``."""
        filters = {
            "genres": [*(query.genres or ()), *(query.genre or ())],
            "min_year": query.min_year,
            "max_year": query.max_year,
            "min_ratings": query.min_ratings,
            "exclude": query.exclude or (),
            "max_per_genre": query.max_per_genre,
            "diversity": query.diversity,
        }
        return await answer(
            recommender.recommend,
            query.user,
            k=query.k,
            offset=query.offset,
            explain=query.explain,
            exclude_seen=not query.include_seen,
            inline=inline["known_user_explained" if query.explain else "known_user"],
            **filters,
        )

    @app.post("/recommend", response_model=Recommendations)
    async def recommend_new(body: ColdStart) -> Response:
        """Top-k items for a new user given by a few ratings (cold start, no retraining), from position
        ``offset``; the rated items are left out."""
        ratings: dict[int | str, float] = {}
        for entry in body.ratings:
            key = str(entry.item).strip()
            if key in ratings:
                raise DeepMovieError(f"ratings: item {key} is rated twice")
            ratings[key] = entry.rating
        genres = [body.genres] if isinstance(body.genres, str) else list(body.genres)
        filters = {
            "genres": genres + ([body.genre] if body.genre else []),
            "min_year": body.min_year,
            "max_year": body.max_year,
            "min_ratings": body.min_ratings,
            "exclude": body.exclude,
            "max_per_genre": body.max_per_genre,
            "diversity": body.diversity,
        }
        return await answer(
            recommender.recommend_new,
            ratings,
            k=body.k,
            offset=body.offset,
            explain=body.explain,
            inline=inline["new_user_explained" if body.explain else "new_user"],
            **filters,
        )

    @app.get("/similar", response_model=SimilarItems)
    async def similar(item: ItemId, k: K = 10) -> Response:
        """Items most similar to an item (the ranker's item-item weights where it has them)."""
        return await answer(recommender.similar, item, k=k)

    @app.get("/users/{user}/ratings", response_model=History)
    async def user_ratings(user: IdText) -> Response:
        """The ratings the model saw from a user, highest first."""
        return await answer(recommender.history, user)

    @app.get("/items/search")
    def search(
        q: Annotated[str, Query(min_length=1, max_length=100, description="part of a title")],
        limit: Annotated[QueryInt, Query(ge=1, le=max_k)] = 20,
    ) -> list[Movie]:
        """Known items whose title contains ``q``, most rated first."""
        return recommender.search(q, limit)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(QueryRoute, path="/recommend", model=KnownUser, endpoint=recommend)
    app.add_middleware(HeadAsGet)  # outside QueryRoute: HEAD /recommend is answered as GET too
    app.add_middleware(BodyLimit, limit=max_body)  # the outermost: before anything reads the body
    return app


def app_from_env() -> FastAPI:
    """The app factory each ``uvicorn`` worker process calls: the runs and limits come by environment."""
    rater = os.environ.get(RATER_ENV) or None
    return create_app(
        load_recommender(os.environ[RUN_ENV], rater),
        max_body=int(os.environ.get(MAX_BODY_ENV, MAX_BODY)),
        max_k=int(os.environ.get(MAX_K_ENV, MAX_K)),
    )


def serve_env(ranker: Path, rater: Path | None, max_body: int, max_k: int) -> dict[str, str]:
    """The environment :func:`app_from_env` reads, for worker processes."""
    env = {RUN_ENV: str(Path(ranker).resolve()), MAX_BODY_ENV: str(max_body), MAX_K_ENV: str(max_k)}
    env[RATER_ENV] = str(Path(rater).resolve()) if rater is not None else ""
    return env
