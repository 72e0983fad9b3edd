"""DeepMovie: deep-learning movie recommenders on one data, training and evaluation pipeline.

The Python API, in five names (imported on first use, so ``deepmovie --help`` stays quick)::

    import deepmovie

    rec = deepmovie.fit("biased-mf", data="ml-latest-small", split="random:0.1", factors=128)
    rec.summary["test_rmse"], rec.predict(1, 260).rating, rec.recommend(1, k=10)
    rec.save("runs/bmf"); same = deepmovie.load("runs/bmf")
    data = deepmovie.Dataset.from_pandas(frame, user="userId", item="movieId", rating="rating")
    found = deepmovie.auto("ratings.csv", "runs/auto", budget="30m"); deepmovie.load("runs/auto/best")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Dataset", "Recommender", "auto", "fit", "load"]

if TYPE_CHECKING:
    from deepmovie.data.dataset import Dataset
    from deepmovie.experiment import fit
    from deepmovie.recommender import Recommender


def load(run_dir: str | Any) -> Recommender:
    """A saved recommender or trained run directory (``Recommender.load``)."""
    from deepmovie.recommender import Recommender

    return Recommender.load(run_dir)


def auto(
    data: str,
    out: str | Any,
    *,
    budget: str | float = "30m",
    task: str | None = None,
    jobs: int = 1,
    **config: Any,
) -> dict[str, Any]:
    """The best model for ``data`` found within ``budget`` (``"30m"`` or seconds), written to ``out``
    (``out/best`` is servable); ``config`` takes the run settings (``split``, ``test_file``, ``seed``,
    ``valid_fraction``, ``max_memory``...). Returns the summary (``deepmovie auto``)."""
    from pathlib import Path

    from deepmovie.auto import auto as run_auto
    from deepmovie.auto import parse_budget
    from deepmovie.config import build_config

    seconds = parse_budget(budget) if isinstance(budget, str) else float(budget)
    settings = build_config({"model": "bias", "data": data, **config})
    return run_auto(settings, Path(out), budget=seconds, task=task, jobs=jobs)


def __getattr__(name: str) -> Any:
    if name == "fit":
        from deepmovie.experiment import fit

        return fit
    if name == "Recommender":
        from deepmovie.recommender import Recommender

        return Recommender
    if name == "Dataset":
        from deepmovie.data.dataset import Dataset

        return Dataset
    raise AttributeError(f"module 'deepmovie' has no attribute {name!r}")
