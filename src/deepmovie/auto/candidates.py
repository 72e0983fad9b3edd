"""Which models ``deepmovie auto`` tries on a data set, with what starting settings, chosen from its profile.

Rules, not presets: every candidate starts from its defaults, adjusted only by what the profile says
(the rating scale's width for SGD steps, the data's size for what is affordable). Each rule that keeps
a model out says why in one line, and so does the memory check every candidate passes before any
trial runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from deepmovie.auto.profile import DataProfile, Task
from deepmovie.config import parse_params
from deepmovie.errors import DeepMovieError
from deepmovie.models import MODELS, DataInfo
from deepmovie.tuning.spaces import SPACES

# Past these sizes a model's epochs cost more than a budget of minutes can afford on a few cores.
MAX_ROWS_SVDPP = 3_000_000
MAX_ROWS_AUTOENCODER = 5_000_000
MAX_USERS_AUTOENCODER = 100_000
MAX_CELLS_KERNEL = 4_000_000  # glocal-k's full-batch L-BFGS reads the dense items x users matrix


@dataclass(frozen=True)
class Candidate:
    model: str
    params: dict[str, Any] = field(default_factory=dict)  # on top of the model's defaults
    why: str = ""
    lr_scale: float = 1.0  # SGD steps scaled to the rating scale: the search space's are multiplied alike

    @property
    def searchable(self) -> bool:
        """Whether it has a search space; a model without one is fitted once, with these settings."""
        return self.model in SPACES


Rule = Callable[[DataProfile], "tuple[dict[str, Any], str] | str"]


def _sgd(profile: DataProfile, lr: float) -> dict[str, Any]:
    """SGD steps scaled to the scale's width: errors on 1..100 are ~25x those on 1..5."""
    return {"lr": lr / profile.span} if profile.span != 1 else {}


RATING_RULES: dict[str, Rule] = {
    "bias": lambda p: ({}, "baseline; steadies a blend"),
    "biased-mf": lambda p: (_sgd(p, 0.005), "Koren's biased MF, compiled SGD"),
    "pmf": lambda p: ({}, "ALS, no learning rate"),
    "svdpp": lambda p: (
        (_sgd(p, 0.005), "implicit feedback of rated items")
        if p.rows <= MAX_ROWS_SVDPP
        else f"{p.rows:,} rows: its epochs cost too much past {MAX_ROWS_SVDPP:,}"
    ),
    "autorec": lambda p: (
        ({}, "I-AutoRec, strongest single model on MovieLens-sized data")
        if p.rows <= MAX_ROWS_AUTOENCODER and p.users <= MAX_USERS_AUTOENCODER
        else f"{p.rows:,} rows, {p.users:,} users: item rows too wide to train in the budget"
    ),
    "fm": lambda p: (
        ({}, "factorization machine over the side features")
        if p.item_documents or p.user_features
        else "no side features: it would be biased MF again"
    ),
    "bayes-fm": lambda p: ({}, "Bayesian FM by Gibbs sampling, nothing to tune"),
    "glocal-k": lambda p: (
        ({}, "kernel autoencoder fine-tuned with a global convolution")
        if p.users * p.items <= MAX_CELLS_KERNEL
        else f"dense {p.items:,} x {p.users:,} matrix: full-batch epochs too slow for the budget past "
        f"{MAX_CELLS_KERNEL:,} cells"
    ),
}
RANKING_RULES: dict[str, Rule] = {
    "popularity": lambda p: ({}, "baseline"),
    "ease": lambda p: ({}, "closed form, strongest on dense catalogues"),
    "item-knn": lambda p: ({}, "item-item cosine neighbours"),
    "ials": lambda p: ({}, "implicit ALS, conjugate gradient"),
    "multvae": lambda p: (
        ({}, "variational autoencoder of user rows")
        if p.rows <= MAX_ROWS_AUTOENCODER
        else f"{p.rows:,} rows: too slow for the budget"
    ),
    "bpr": lambda p: ({}, "pairwise ranking MF"),
}


def candidates(
    profile: DataProfile, task: Task, info: DataInfo, max_memory: int | None = None
) -> tuple[list[Candidate], list[str]]:
    """(the candidates to search, one line per model left out and why)."""
    rules = RATING_RULES if task == "rating" else RANKING_RULES
    chosen, skipped = [], []
    for model, rule in rules.items():
        if model not in MODELS:
            continue  # a model this installation does not have
        decided = rule(profile)
        if isinstance(decided, str):
            skipped.append(f"{model}: {decided}")
            continue
        params, why = decided
        try:
            MODELS.get(model).check_size(
                parse_params(model, params), info, device=torch.device("cpu"), max_memory=max_memory
            )
        except DeepMovieError as exc:
            skipped.append(f"{model}: {exc}")
            continue
        scaled = "lr" in params  # _sgd scaled its steps to the rating scale; its searched ones follow
        if scaled:
            why += f"; learning rates / {profile.span:g} for the {profile.low:g}..{profile.high:g} scale"
        chosen.append(Candidate(model, params, why, lr_scale=1 / profile.span if scaled else 1.0))
    return chosen, skipped
