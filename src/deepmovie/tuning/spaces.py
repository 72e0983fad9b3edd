"""Search spaces, one per model: ``trial -> params`` on top of the run's own params.

Ranges bracket the hand-tuned presets in ``configs/`` (and the defaults) so a modest number of
trials can find them or better. A space names only what it searches; every other parameter comes
from the config being tuned (``--config``, ``--set`` or the model's defaults).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from deepmovie.errors import DeepMovieError

Space = Callable[[optuna.Trial], dict[str, Any]]
SPACES: dict[str, Space] = {}


def space(*names: str) -> Callable[[Space], Space]:
    """Register a search space under one or more model names."""

    def decorator(function: Space) -> Space:
        for name in names:
            SPACES[name] = function
        return function

    return decorator


def get_space(model: str) -> Space:
    if model not in SPACES:
        raise DeepMovieError(f"no search space for model {model!r} (tunable: {', '.join(sorted(SPACES))})")
    return SPACES[model]


def _log(trial: optuna.Trial, name: str, low: float, high: float) -> float:
    return trial.suggest_float(name, low, high, log=True)


@space("bias")
def _bias(trial: optuna.Trial) -> dict[str, Any]:
    return {"reg_user": _log(trial, "reg_user", 0.1, 100.0), "reg_item": _log(trial, "reg_item", 0.1, 100.0)}


def _factors(trial: optuna.Trial, max_lr: float) -> dict[str, Any]:
    """Koren-style biased factors, shared by biased-mf and SVD++."""
    return {
        "factors": trial.suggest_categorical("factors", [32, 64, 128, 256]),
        "lr": _log(trial, "lr", 0.001, max_lr),
        "reg_user": _log(trial, "reg_user", 0.005, 0.2),
        "reg_item": _log(trial, "reg_item", 0.005, 0.2),
        "reg_bias": _log(trial, "reg_bias", 0.001, 0.1),
    }


@space("biased-mf")
def _biased_mf(trial: optuna.Trial) -> dict[str, Any]:
    return _factors(trial, max_lr=0.02)


@space("svdpp")
def _svdpp(trial: optuna.Trial) -> dict[str, Any]:
    # The implicit sum enlarges SGD steps: lr 0.0051..0.019 diverged (NaN loss) in 6 of 16 ML-100K
    # trials, and the default 0.005 on ml-latest-small; the presets train at 0.003.
    return {**_factors(trial, max_lr=0.004), "reg_implicit": _log(trial, "reg_implicit", 0.001, 0.2)}


@space("pmf")
def _pmf(trial: optuna.Trial) -> dict[str, Any]:
    biased = trial.suggest_categorical("biases", [False, True])
    return {
        "factors": trial.suggest_int("factors", 8, 128, log=True),
        "reg_user": _log(trial, "reg_user", 0.01, 1.0),
        "reg_item": _log(trial, "reg_item", 0.01, 1.0),
        **({"biases": True, "reg_bias": _log(trial, "reg_bias", 0.001, 1.0)} if biased else {}),
    }


@space("autorec")
def _autorec(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "hidden": trial.suggest_categorical("hidden", [250, 500, 1000]),
        "reg": _log(trial, "reg", 1.0, 1000.0),
        "lr": _log(trial, "lr", 1e-4, 1e-2),
    }


@space("sparse-fc", "glocal-k")
def _kernel_autoencoder(trial: optuna.Trial) -> dict[str, Any]:
    """The penalties the references set per data set (ML-100K 20 / 0.006, ML-1M 60..70 / 0.013..0.018)."""
    width = trial.suggest_categorical("hidden", [300, 500])
    return {
        "hidden": [width, width],
        "lambda_2": _log(trial, "lambda_2", 5.0, 200.0),
        "lambda_s": _log(trial, "lambda_s", 0.001, 0.05),
    }


@space("deepmf")
def _deepmf(trial: optuna.Trial) -> dict[str, Any]:
    width = trial.suggest_categorical("width", [32, 64, 128])
    layers = trial.suggest_int("layers", 1, 3)
    return {
        "user_dim": trial.suggest_categorical("user_dim", [16, 32, 64]),
        "item_dim": trial.suggest_categorical("item_dim", [16, 32, 64]),
        "hidden": [max(width >> n, 8) for n in range(layers)],  # a funnel: width, width/2, ...
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "lr": _log(trial, "lr", 1e-4, 1e-2),
        "reg": _log(trial, "reg", 0.01, 10.0),
    }


@space("fm")
def _fm(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "dim": trial.suggest_categorical("dim", [8, 16, 32, 64]),
        "reg": _log(trial, "reg", 0.001, 1.0),
        "reg_linear": _log(trial, "reg_linear", 1e-5, 0.1),
        "lr": _log(trial, "lr", 0.005, 0.2),
    }


# Ranking models: judged by validation NDCG@K. Each space also searches what counts as an interaction.
def _positive(trial: optuna.Trial) -> dict[str, Any]:
    return {"positive_rating": trial.suggest_categorical("positive_rating", [0.0, 3.0, 4.0])}


@space("ease")
def _ease(trial: optuna.Trial) -> dict[str, Any]:
    """Steck's EASE (binary input onto itself) and its graded form (ratings in, liked items out)."""
    return {
        "reg": _log(trial, "reg", 10.0, 20000.0),
        "input": trial.suggest_categorical("input", ["binary", "rating"]),
        "target_rating": trial.suggest_categorical("target_rating", [None, 3.0, 4.0]),
    }


@space("item-knn")
def _item_knn(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "neighbours": trial.suggest_int("neighbours", 10, 1000, log=True),
        "shrink": _log(trial, "shrink", 0.1, 1000.0),
        "normalize": trial.suggest_categorical("normalize", [False, True]),
        **_positive(trial),
    }


@space("ials")
def _ials(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "factors": trial.suggest_categorical("factors", [32, 64, 128, 256]),
        "alpha0": _log(trial, "alpha0", 0.001, 1.0),
        "reg": _log(trial, "reg", 1e-4, 0.1),
        "nu": trial.suggest_float("nu", 0.0, 1.0),
        **_positive(trial),
    }


@space("bpr")
def _bpr(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "factors": trial.suggest_categorical("factors", [32, 64, 128]),
        "lr": _log(trial, "lr", 1e-3, 0.05),
        "reg": _log(trial, "reg", 1e-6, 1e-2),
        "sampler": trial.suggest_categorical("sampler", ["uniform", "popularity"]),
        **_positive(trial),
    }


@space("multvae", "multdae")
def _multvae(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "hidden": trial.suggest_categorical("hidden", [200, 600]),
        "latent": trial.suggest_categorical("latent", [50, 100, 200]),
        "dropout": trial.suggest_float("dropout", 0.2, 0.7),
        "lr": _log(trial, "lr", 3e-4, 3e-3),
        **_positive(trial),
    }


@space("two-tower")
def _two_tower(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "dim": trial.suggest_categorical("dim", [32, 64, 128]),
        "temperature": _log(trial, "temperature", 0.02, 0.5),
        "lr": _log(trial, "lr", 3e-4, 1e-2),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        **_positive(trial),
    }
