"""Rating-prediction errors. Callers clip predictions to the rating scale first (see evaluation)."""

from __future__ import annotations

import numpy as np


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    diff = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return float(np.sqrt(np.mean(diff * diff))) if len(diff) else float("nan")


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    diff = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return float(np.mean(np.abs(diff))) if len(diff) else float("nan")
