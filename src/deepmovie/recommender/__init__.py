"""A trained model as a recommender in raw ids: the Python API behind the CLI and the web service."""

from deepmovie.recommender.recommender import Recommender, UnknownIdError

__all__ = ["Recommender", "UnknownIdError"]
