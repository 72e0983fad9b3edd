"""Hyperparameter search (Optuna) on the validation rows, and the search space of each model."""

from deepmovie.tuning.spaces import SPACES, space
from deepmovie.tuning.study import tune

__all__ = ["SPACES", "space", "tune"]
