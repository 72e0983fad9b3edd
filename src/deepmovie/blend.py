"""Blend trained runs: a linear combination of their predictions, fitted on the validation rows only.

Each member is a run directory of one model trained on the same data, split and seed (checked by the
split hash). The split is cut again from the run's config, each member's saved model predicts the
validation and test rows exactly as its run's evaluation did (same training rows prepared, same cold
fallback), ridge least squares with an intercept fits the weights on the validation rows, and the
test rows are scored once, for the blend and for every member.

A run trained with ``--refit`` has seen the validation rows, so its validation predictions would
flatter it: such runs are refused as members. They may instead be a member's *twin*: the same
config with ``refit: true``, whose test predictions replace the member's once the weights are fitted
on the member's validation predictions (the weights never see a row the twin trained on).

The output folder is a run directory of the ``blend`` model (:mod:`deepmovie.models.blend`), written
by :meth:`Recommender.save` as any run is, so ``deepmovie serve`` and ``deepmovie.load`` take it: its
``model.pt`` holds the served models' weights, the twins' where given (trained on train + valid, the
better models to serve), else the members'.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepmovie import machine
from deepmovie.config import RunConfig, build_config
from deepmovie.data.dataset import Dataset
from deepmovie.data.interactions import Interactions
from deepmovie.errors import DeepMovieError
from deepmovie.evaluation import ColdFallback, predict_ratings
from deepmovie.experiment import build_model, prepare
from deepmovie.files import write_text
from deepmovie.metrics import mae, rmse
from deepmovie.models import Model
from deepmovie.recommender import Recommender
from deepmovie.recommender.artifacts import Artifacts, read_config
from deepmovie.recommender.recommender import read_weights
from deepmovie.rundir import SUMMARY, WEIGHTS, claim, read_summary
from deepmovie.splits import Split

REPORT = "blend.md"
# Fields that decide which rows are train, validation and test: members must agree on all of them.
SAME_ROWS = ("data", "test_file", "split", "seed", "valid_fraction", "read")


@dataclass(frozen=True)
class Run:
    """A finished single-fold run directory: its config and summary."""

    path: Path
    config: RunConfig
    summary: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Run:
        summary = read_summary(path)
        if summary is None:
            raise DeepMovieError(f"{path}: no {SUMMARY}; not a finished run directory")
        if "folds" in summary:
            raise DeepMovieError(f"{path}: a run of {len(summary['folds'])} folds; blend runs of one split")
        if summary.get("task", "rating") != "rating":
            raise DeepMovieError(f"{path}: a {summary['task']!r} model; a blend combines rating predictions")
        config = read_config(path)
        if config.model == "blend":
            raise DeepMovieError(
                f"{path}: a blend, its weights fitted on the validation rows; blend its member runs instead"
            )
        return cls(path, config, summary)


def blend(
    members: list[Path],
    out: Path | None = None,
    *,
    twins: list[Path] | None = None,
    ridge: float = 1e-4,
    command: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fit blend weights on the validation rows of ``members``' shared split and score the test rows.

    ``twins`` (optional, one per member, in order) are refit runs of the members' configs whose test
    predictions are used (and whose weights are served) instead. ``ridge`` is the L2 penalty on the
    weights per validation row. ``out`` becomes a servable run directory of the blend with
    ``blend.md``; it is new, empty or an earlier blend's (rewritten); ``overwrite`` takes any folder.
    """
    runs = [Run.load(Path(p)) for p in members]
    twin_runs = [Run.load(Path(p)) for p in twins] if twins else None
    _check(runs, twin_runs)
    if ridge < 0:
        raise DeepMovieError(f"ridge {ridge:g}: must be at least 0")
    dataset, splits = prepare(runs[0].config)
    split = splits[0]
    if split.test_hash != runs[0].summary["split_hash"]:
        raise DeepMovieError(
            f"{runs[0].path}: its split no longer cuts the same rows (hash {split.test_hash} now, "
            f"{runs[0].summary['split_hash']} when trained): has {runs[0].config.data} changed?"
        )
    if out is not None:
        claim(out, (REPORT,), "a blend folder", overwrite=overwrite)
    scale = dataset.scale
    valid_columns, test_columns, served = [], [], []
    for run, twin in zip(runs, twin_runs or runs, strict=True):
        model, fallback = load_run(run, dataset, split)
        valid_columns.append(predict_ratings(model, fallback, split.valid.users, split.valid.items, scale)[0])
        if twin is not run:
            model, fallback = load_run(twin, dataset, split)
        test_columns.append(predict_ratings(model, fallback, split.test.users, split.test.items, scale)[0])
        served.append(model)
    valid, test = np.column_stack(valid_columns), np.column_stack(test_columns)
    weights, intercept = fit_weights(valid, split.valid.ratings, ridge)

    def combine(predictions: np.ndarray) -> np.ndarray:
        return np.clip(intercept + predictions @ weights, scale.low, scale.high)

    summary = {
        "model": "blend",
        "members": [
            {
                "run": str(r.path),
                "model": r.config.model,
                **({"twin": str(twin_runs[n].path)} if twin_runs else {}),
                "weight": float(weights[n]),
                "valid_rmse": rmse(valid[:, n], split.valid.ratings),
                "test_rmse": rmse(test[:, n], split.test.ratings),
                "test_mae": mae(test[:, n], split.test.ratings),
            }
            for n, r in enumerate(runs)
        ],
        "intercept": intercept,
        "ridge": ridge,
        "valid_rmse": rmse(combine(valid), split.valid.ratings),
        "test_rmse": rmse(combine(test), split.test.ratings),
        "test_mae": mae(combine(test), split.test.ratings),
        **{k: runs[0].summary[k] for k in ("data", "split", "seed", "split_hash")},
        "n_valid": len(split.valid),
        "n_test": len(split.test),
        "command": command,
        "machine": machine.describe(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if out is not None:  # the report first: it marks the folder as a blend's, to be rewritten
        write_text(out / REPORT, report(summary))
        sources = twin_runs or runs
        served_blend(runs[0].config, dataset, split, served, sources, weights, intercept, summary).save(
            out, overwrite=True
        )
    return summary


def served_blend(
    config: RunConfig,
    dataset: Dataset,
    split: Split,
    served: list[Model],
    sources: list[Run],
    weights: np.ndarray,
    intercept: float,
    summary: dict[str, Any],
) -> Recommender:
    """The ``blend`` model of the ``served`` models (read from the runs ``sources``) with the fitted
    weights, as a recommender on ``config``'s data, split and seed (``refit`` when they are twins)."""
    members = [
        {"model": m.name, "params": m.params.model_dump(), "weight": float(w)}
        for m, w in zip(served, weights, strict=True)
    ]
    blend_config = build_config(
        {
            **config.model_dump(),
            "model": "blend",
            "refit": any(r.summary["refit"] for r in sources),
            "params": {"members": members, "intercept": intercept},
        }
    )
    model = build_model(blend_config, dataset, split, torch.device("cpu"))
    state = {f"members.{n}.{k}": v for n, m in enumerate(served) for k, v in m.state_dict().items()}
    model.load_weights(state, ", ".join(str(r.path / WEIGHTS) for r in sources))
    return Recommender(model, blend_config, Artifacts.of(dataset, split), summary)


def fit_weights(predictions: np.ndarray, ratings: np.ndarray, ridge: float) -> tuple[np.ndarray, float]:
    """Ridge least squares with an unpenalized intercept: (weights, intercept) of ``predictions``."""
    x = predictions.astype(np.float64)
    y = ratings.astype(np.float64)
    x_mean, y_mean = x.mean(0), y.mean()
    centred = x - x_mean
    gram = centred.T @ centred + ridge * len(y) * np.eye(x.shape[1])
    weights = np.linalg.lstsq(gram, centred.T @ (y - y_mean), rcond=None)[0]
    return weights, float(y_mean - x_mean @ weights)


def _check(runs: list[Run], twins: list[Run] | None) -> None:
    """Refuse members that cannot be blended honestly, naming the run and the reason."""
    if len(runs) < 2:
        raise DeepMovieError("blend needs at least two run directories")
    first = runs[0]
    for run in runs:
        if run.summary.get("refit"):
            raise DeepMovieError(
                f"{run.path}: trained with --refit, so its model saw the validation rows the blend "
                "weights are fitted on; blend runs trained without --refit (a refit run may serve as "
                "a member's --twin)"
            )
        differs = [k for k in SAME_ROWS if getattr(run.config, k) != getattr(first.config, k)]
        if differs or run.summary["split_hash"] != first.summary["split_hash"]:
            raise DeepMovieError(
                f"{run.path} and {first.path} were trained on different rows "
                f"({', '.join(differs) or 'split hash'} differ); blend runs of one data, split and seed"
            )
    if twins is None:
        return
    if len(twins) != len(runs):
        raise DeepMovieError(f"{len(twins)} twin(s) for {len(runs)} members: give one per member, in order")
    for run, twin in zip(runs, twins, strict=True):
        same = run.config.model_dump(exclude={"refit"}) == twin.config.model_dump(exclude={"refit"})
        if not (
            twin.summary.get("refit") and same and twin.summary["split_hash"] == run.summary["split_hash"]
        ):
            raise DeepMovieError(
                f"{twin.path}: not a refit twin of {run.path} (it must be the same config and split, "
                "trained with --refit)"
            )


def run_predictions(run: Run, dataset: Dataset, split: Split, *rows: Interactions) -> list[np.ndarray]:
    """``run``'s clipped predictions of each of ``rows``, as its evaluation made them."""
    model, fallback = load_run(run, dataset, split)
    return [predict_ratings(model, fallback, r.users, r.items, dataset.scale)[0] for r in rows]


def load_run(run: Run, dataset: Dataset, split: Split) -> tuple[Model, ColdFallback]:
    """``run``'s saved model attached to the rows it trained on, and the baseline fitted on those rows
    that predicts its cold rows: what its evaluation predicted with."""
    trained_on = split.train.concat(split.valid) if run.summary["refit"] else split.train
    return _load_model(run, dataset, split, trained_on), ColdFallback.fit(trained_on)


def _load_model(run: Run, dataset: Dataset, split: Split, trained_on: Interactions) -> Model:
    model = build_model(run.config, dataset, split, torch.device("cpu"))
    model.load_weights(read_weights(run.path / WEIGHTS, run.config.model), str(run.path / WEIGHTS))
    model.attach(trained_on)  # the rows it trained on: what AutoRec reconstructs to predict
    return model.eval()


def report(summary: dict[str, Any]) -> str:
    """``blend.md``: how it was made and every member's figures next to the blend's."""
    twins = any("twin" in m for m in summary["members"])
    lines = [
        f"# Blend on {summary['data']} ({summary['split']}, seed {summary['seed']}, split hash "
        f"{summary['split_hash']})",
        "",
        f"- command: `{summary['command'] or 'deepmovie.blend.blend (Python API)'}`",
        f"- date: {summary['date']}",
        f"- machine: {summary['machine']}",
        f"- weights: ridge least squares (L2 {summary['ridge']:g} per row) with an intercept "
        f"({summary['intercept']:+.4f}), fitted on the {summary['n_valid']:,} validation rows only; "
        f"the {summary['n_test']:,} test rows scored once"
        + ("; test predictions from each member's refit twin" if twins else ""),
        "- served: this folder is a run directory of the `blend` model (`deepmovie serve`, "
        "`deepmovie.load`) holding "
        + ("each refit twin's weights (trained on train + valid)" if twins else "each member run's weights"),
        "",
        "| member | model | weight | valid RMSE | test RMSE | test MAE |",
        "|---|---|---|---|---|---|",
    ]
    for m in summary["members"]:
        run = m["run"] + (f" (test: {m['twin']})" if "twin" in m else "")
        lines.append(
            f"| `{run}` | {m['model']} | {m['weight']:+.4f} | {m['valid_rmse']:.4f} | {m['test_rmse']:.4f} "
            f"| {m['test_mae']:.4f} |"
        )
    lines.append(
        f"| **blend** | | | {summary['valid_rmse']:.4f} | **{summary['test_rmse']:.4f}** "
        f"| {summary['test_mae']:.4f} |"
    )
    return "\n".join(lines) + "\n"
