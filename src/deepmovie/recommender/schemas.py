"""What a :class:`~deepmovie.recommender.Recommender` answers: plain Pydantic records in raw ids.

The same records are the Python API's results, the CLI's output and the REST API's response schemas.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

RawId = int | str


class Filters(BaseModel):
    """What a list may hold, and how varied it must be: the business rules of a recommendation page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    genres: tuple[str, ...] = Field((), description="only items of any of these genres")
    min_year: int | None = Field(None, description="only items released this year or later")
    max_year: int | None = Field(None, description="only items released this year or earlier")
    min_ratings: int = Field(0, ge=0, description="only items with at least this many training ratings")
    exclude: tuple[RawId, ...] = Field((), description="items never to show")
    max_per_genre: int | None = Field(None, ge=1, description="at most this many items of one genre")
    diversity: float | None = Field(
        None, ge=0, le=1, description="MMR: weight of dissimilarity to the items already listed (0: none)"
    )

    @field_validator("genres", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value


class Movie(BaseModel):
    item: RawId
    title: str | None
    year: int | None
    genres: list[str]


class Reason(BaseModel):
    """One of the user's own rated items that led to a recommendation."""

    item: RawId
    title: str | None
    weight: float  # its share of the recommendation's score (item-item weight, or factor similarity)


class Scored(Movie):
    score: float  # the ranker's score: what the list is ordered by
    rating: float | None  # predicted stars, clipped to the scale (the rater's); None without a rater
    because: list[Reason] = []  # the user's rated items that contributed most, strongest first


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
    method: str  # how the scores were computed: "factors", "fold-in (ridge)", "model scores", ...
    ranker: str  # the model whose scores order the list
    rater: str | None  # the model whose predicted stars are shown (None: no stars)
    excluded_seen: int  # rated items left out of the ranking
    offset: int  # the page's first position in the whole list (0: the top)
    items: list[Scored]


class SimilarItems(BaseModel):
    item: Movie
    method: str  # the model's item-item weights, shrunk item-factor cosine, or co-rating cosine
    items: list[Similar]
