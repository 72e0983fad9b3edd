"""Accuracy (RMSE, MAE), "will like" metrics (AUC, log-loss) and top-N ranking metrics."""

from deepmovie.metrics.classification import auc, logloss
from deepmovie.metrics.ranking import ranking_metrics
from deepmovie.metrics.rating import mae, rmse

__all__ = ["auc", "logloss", "mae", "ranking_metrics", "rmse"]
