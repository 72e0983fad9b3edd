"""What a :class:`~deepmovie.recommender.Recommender` answers: plain Pydantic records in raw ids.

The same records are the Python API's results, the CLI's output and the REST API's response schemas.
"""

from __future__ import annotations

from pydantic import BaseModel

RawId = int | str


class Movie(BaseModel):
    item: RawId
    title: str | None
    year: int | None
    genres: list[str]


class Scored(Movie):
    rating: float  # predicted, clipped to the rating scale (a score for ranking models)


class Rated(Movie):
    rating: float  # given by the user


class Similar(Movie):
    similarity: float


class History(BaseModel):
    user: RawId
    ratings: list[Rated]  # highest first


class Prediction(BaseModel):
    user: RawId
    item: Movie
    rating: float
    raw_score: float  # before clipping to the scale


class Recommendations(BaseModel):
    user: RawId | None  # None for a folded-in (cold-start) user
    cold_start: bool
    method: str  # how the scores were computed: "factors", "fold-in (ridge)", "model predict", ...
    excluded_seen: int  # rated items left out of the ranking
    items: list[Scored]


class SimilarItems(BaseModel):
    item: Movie
    method: str  # "item factors (cosine)" or "co-ratings (cosine)"
    items: list[Similar]
