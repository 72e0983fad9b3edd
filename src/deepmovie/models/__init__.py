"""Model families. Importing this package registers every built-in model in ``MODELS``."""

from deepmovie.models import baselines  # noqa: F401  (registers global-mean, bias)
from deepmovie.models.autoencoders import autorec  # noqa: F401  (autorec)
from deepmovie.models.base import DataInfo, Model, ModelParams
from deepmovie.models.deep import deepmf  # noqa: F401  (deepmf)
from deepmovie.models.factorization import mf, pmf, svdpp  # noqa: F401  (mf, biased-mf, pmf, svdpp)
from deepmovie.models.registry import MODELS

__all__ = ["MODELS", "DataInfo", "Model", "ModelParams"]
