"""Hyperparameter search (Optuna) on the validation rows, and the search space of each model.

The pieces: :mod:`spaces` (what is searched), :mod:`study` (the search), :mod:`report` and
:mod:`plots` (what a finished study writes).
"""

from deepmovie.tuning.spaces import SPACES, space
from deepmovie.tuning.study import tune

__all__ = ["SPACES", "space", "tune"]
