"""The REST API and the web page over one :class:`Recommender`: validated requests, JSON errors.

Bad input is a 4xx with a JSON ``detail``: 422 for a malformed request (FastAPI's validation), 404 for
an id the model does not know, 400 for a well-formed but impossible request (an unknown genre, a
rating off the scale). Endpoints are plain functions run in the server's thread pool; the recommender
they share is read-only, so concurrent requests need no locks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from deepmovie import __version__
from deepmovie.errors import DeepMovieError
from deepmovie.recommender import Recommender, UnknownIdError
from deepmovie.recommender.schemas import History, Movie, Prediction, Recommendations, SimilarItems

STATIC = Path(__file__).parent / "static"
RUN_ENV = "DEEPMOVIE_RUN"  # the run directory of each worker process (``serve --workers N``)
MAX_K = 100

IdText = Annotated[str, StringConstraints(min_length=1, max_length=64)]
UserId = Annotated[IdText, Query(description="a user id of the training data")]
ItemId = Annotated[IdText, Query(description="an item (movie) id of the training data")]
K = Annotated[int, Query(ge=1, le=MAX_K, description="how many items")]
Genre = Annotated[str | None, Query(max_length=64, description="only items of this genre")]
MinYear = Annotated[int | None, Query(ge=0, le=9999, description="only items released this year or later")]


class NewRating(BaseModel):
    item: IdText | int
    rating: float = Field(allow_inf_nan=False)


class ColdStart(BaseModel):
    """A new user's ratings: recommendations without retraining (fold-in)."""

    ratings: list[NewRating] = Field(min_length=1, max_length=1000)
    k: int = Field(10, ge=1, le=MAX_K)
    genre: str | None = Field(None, max_length=64)
    min_year: int | None = Field(None, ge=0, le=9999)


def create_app(recommender: Recommender) -> FastAPI:
    """The app serving ``recommender``; one intra-op thread, as concurrent requests are the parallelism."""
    torch.set_num_threads(1)  # small per-request ops: more threads only contend (10-40x slower here)
    app = FastAPI(
        title="DeepMovie",
        version=__version__,
        description=f"Recommendations from a trained {recommender.model_name!r} model.",
    )

    @app.exception_handler(DeepMovieError)
    def _bad_request(request: Request, exc: DeepMovieError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404 if isinstance(exc, UnknownIdError) else 400)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's own answer echoes the input, and a NaN in it made that answer a 500."""
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    async def answer(function: Callable[..., BaseModel], *args: object, **kwargs: object) -> Response:
        """Call the recommender and send its result as JSON (pydantic's own encoder: no second pass
        through FastAPI's). Factor models answer in well under a millisecond, so inline on the event
        loop, sparing a thread hop; other models' predict can take longer and goes to the thread pool."""
        if recommender.factors is not None:
            result = function(*args, **kwargs)
        else:
            result = await run_in_threadpool(function, *args, **kwargs)
        return Response(result.model_dump_json(), media_type="application/json")

    @app.get("/health")
    def health() -> dict[str, object]:
        """Liveness and what is being served."""
        return {"status": "ok", **recommender.describe()}

    @app.get("/predict", response_model=Prediction)
    async def predict(user: UserId, item: ItemId) -> Response:
        """The predicted rating of an item by a known user."""
        return await answer(recommender.predict, user, item)

    @app.get("/recommend", response_model=Recommendations)
    async def recommend(
        user: UserId, k: K = 10, genre: Genre = None, min_year: MinYear = None, include_seen: bool = False
    ) -> Response:
        """Top-k items for a known user; items they rated are left out unless ``include_seen``."""
        return await answer(
            recommender.recommend,
            user,
            k=k,
            genres=[genre] if genre else (),
            min_year=min_year,
            exclude_seen=not include_seen,
        )

    @app.post("/recommend", response_model=Recommendations)
    async def recommend_new(body: ColdStart) -> Response:
        """Top-k items for a new user given by a few ratings (cold start, no retraining)."""
        ratings: dict[int | str, float] = {}
        for entry in body.ratings:
            key = str(entry.item).strip()
            if key in ratings:
                raise DeepMovieError(f"ratings: item {key} is rated twice")
            ratings[key] = entry.rating
        return await answer(
            recommender.recommend_new,
            ratings,
            k=body.k,
            genres=[body.genre] if body.genre else (),
            min_year=body.min_year,
        )

    @app.get("/similar", response_model=SimilarItems)
    async def similar(item: ItemId, k: K = 10) -> Response:
        """Items most similar to an item."""
        return await answer(recommender.similar, item, k=k)

    @app.get("/users/{user}/ratings", response_model=History)
    async def user_ratings(user: IdText) -> Response:
        """The ratings the model saw from a user, highest first."""
        return await answer(recommender.history, user)

    @app.get("/items/search")
    def search(
        q: Annotated[str, Query(min_length=1, max_length=100, description="part of a title")],
        limit: Annotated[int, Query(ge=1, le=MAX_K)] = 20,
    ) -> list[Movie]:
        """Known items whose title contains ``q``, most rated first."""
        return recommender.search(q, limit)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def app_from_env() -> FastAPI:
    """The app factory each ``uvicorn`` worker process calls: the run directory comes by environment."""
    return create_app(Recommender.load(os.environ[RUN_ENV]))
