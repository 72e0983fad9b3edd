"""Model families. Importing this package registers every built-in model in ``MODELS``."""

from deepmovie.models import baselines  # noqa: F401  (registers global-mean, bias)
from deepmovie.models.base import DataInfo, Model, ModelParams
from deepmovie.models.registry import MODELS

__all__ = ["MODELS", "DataInfo", "Model", "ModelParams"]
