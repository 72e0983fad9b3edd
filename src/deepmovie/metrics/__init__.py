"""Accuracy (RMSE, MAE) and top-N ranking metrics."""

from deepmovie.metrics.ranking import ranking_metrics
from deepmovie.metrics.rating import mae, rmse

__all__ = ["mae", "ranking_metrics", "rmse"]
