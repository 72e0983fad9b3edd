"""Model families. Importing this package registers every built-in model in ``MODELS``."""

from deepmovie.models import baselines, blend  # noqa: F401  (registers global-mean, bias; blend)
from deepmovie.models.autoencoders import (  # noqa: F401  (autorec, cdae, deeprec, sparse-fc, glocal-k)
    autorec,
    cdae,
    deeprec,
    glocal_k,
    sparse_fc,
)
from deepmovie.models.base import DataInfo, Model, ModelParams
from deepmovie.models.deep import deepmf, ncf  # noqa: F401  (deepmf, gmf, ncf-mlp, neumf)
from deepmovie.models.factorization import mf, pmf, svdpp  # noqa: F401  (mf, biased-mf, pmf, svdpp)
from deepmovie.models.features import bayes_fm, dcn, dlrm, fm  # noqa: F401  (bayes-fm, fm, dlrm, dcn)
from deepmovie.models.hybrid import deepmovie  # noqa: F401  (hybrid)
from deepmovie.models.ranking import (  # noqa: F401  (one registered model each; multvae: multvae, multdae)
    bpr,
    ease,
    ials,
    item_knn,
    multvae,
    popularity,
    two_tower,
)
from deepmovie.models.registry import MODELS

__all__ = ["MODELS", "DataInfo", "Model", "ModelParams"]
