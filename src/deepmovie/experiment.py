"""The one straight path: data -> split -> model -> train -> evaluate -> recommender (and run directory).

:func:`fit` is the Python entry point: it trains in memory and returns a
:class:`~deepmovie.recommender.Recommender`; :func:`run` is what ``deepmovie train`` calls and returns
the summary. Under ``torchrun`` every rank walks this path (loads the data, trains its share,
evaluates), and only rank 0 writes the run directory.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepmovie import __version__, machine
from deepmovie.config import RunConfig, build_config, dump_yaml
from deepmovie.data.catalog import DEFAULT_DATASET
from deepmovie.data.dataset import Dataset, load_dataset
from deepmovie.data.interactions import Interactions
from deepmovie.engine import distributed
from deepmovie.errors import DeepMovieError
from deepmovie.evaluation import ColdFallback, Evaluator, cold_policy, rank, strong_generalization
from deepmovie.files import write_text
from deepmovie.models import MODELS, DataInfo, Model, ModelParams
from deepmovie.recommender import Recommender
from deepmovie.recommender.artifacts import Artifacts, read_config
from deepmovie.recommender.recommender import weights_file
from deepmovie.rundir import REFIT, SUMMARY, WEIGHTS, claim_run, differing
from deepmovie.splits import Split, make_splits
from deepmovie.training.checkpoint import save_atomic
from deepmovie.training.trainer import FitResult, Trainer

# Models whose training is not data-parallel, and why (a torchrun launch of these is refused).
NOT_DISTRIBUTED = {"hybrid": "its encoder epochs are not data-parallel; train it in one process"}


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeepMovieError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU here")
    return torch.device(name)


def prepare(config: RunConfig, dataset: Dataset | None = None) -> tuple[Dataset, list[Split]]:
    """Load the data (unless given) and cut the splits: everything that can fail on bad input, before
    any write."""
    config.model_params()
    if dataset is None:
        dataset = load_dataset(
            config.data,
            options=config.read.options(),
            test_file=config.test_file,
            item_docs=config.item_docs,
            item_docs_with_metadata=config.item_docs_with_metadata,
        )
    if config.rank_k > dataset.n_items:
        raise DeepMovieError(f"rank_k {config.rank_k:,}: more than the {dataset.n_items:,} items to rank")
    split = "file" if dataset.test_rows is not None else config.split
    return dataset, make_splits(dataset, split, config.seed, config.valid_fraction)


def build_model(config: RunConfig, dataset: Dataset, split: Split, device: torch.device) -> Model:
    """The model of ``config`` for ``split``, on ``device``, once its weights are known to fit."""
    model_class, params, info = _checked(config, dataset, split, device)
    torch.manual_seed(config.seed)
    model = model_class(params, info).to(device)
    model.memory_limit = config.max_memory  # what its working sets may take (Model.require_memory)
    return model


def _checked(
    config: RunConfig, dataset: Dataset, split: Split, device: torch.device
) -> tuple[type[Model], ModelParams, DataInfo]:
    """What builds ``config``'s model for ``split``, once its weights are known to fit on ``device``
    (:meth:`Model.check_size`: nothing is allocated until then)."""
    info = data_info(dataset, split)
    model_class, params = MODELS.get(config.model), config.model_params()
    model_class.check_size(params, info, device=device, max_memory=config.max_memory)
    return model_class, params, info


def data_info(dataset: Dataset, split: Split) -> DataInfo:
    """What a model of ``split`` may know when it is built: sizes, scale, side information and the
    training rows' mean."""
    mean = float(np.mean(split.train.ratings))
    return DataInfo(dataset.n_users, dataset.n_items, dataset.scale, mean, dataset.items, dataset.users)


def single_split(config: RunConfig, *, verb: str, noun: str) -> tuple[Dataset, Split]:
    """The data and the one split of ``config`` with validation rows: what a search judged on
    validation rows (``noun``: tuning, auto) needs; anything else is refused, naming the option."""
    if config.test_file and config.split != RunConfig.model_fields["split"].default:
        raise DeepMovieError("--split and --test-file are exclusive: the test file is the split")
    dataset, splits = prepare(config)
    if len(splits) != 1:
        raise DeepMovieError(f"split {config.split!r} has {len(splits)} folds; {verb} on one, e.g. kfold:5:1")
    if len(splits[0].valid) == 0:
        raise DeepMovieError(f"{noun} needs validation rows: set valid_fraction above 0")
    return dataset, splits[0]


def monitor(config: RunConfig, dataset: Dataset, split: Split) -> tuple[str, bool]:
    """(validation figure that picks ``config``'s best epoch, whether higher is better): a tuner's goal."""
    return _evaluator(config, dataset, split.train).monitor(
        build_model(config, dataset, split, torch.device("cpu"))
    )


def fit_valid(
    config: RunConfig,
    dataset: Dataset,
    split: Split,
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train on ``split.train``, early-stopped on ``split.valid``, writing nothing and never scoring
    ``split.test``: what a hyperparameter search may look at."""
    if len(split.valid) == 0:
        raise DeepMovieError("tuning needs validation rows: set valid_fraction above 0")
    model = build_model(config, dataset, split, device)
    judge = _evaluator(config, dataset, split.train)
    return Trainer(None, quiet=True).fit(
        model, split.train, split.valid, judge, config.seed, on_epoch=on_epoch
    )


@dataclass
class TrainedFold:
    split: Split
    model: Model
    record: dict[str, Any]  # the fold's figures, as in the summary


@dataclass
class Trained:
    """Everything a training run produced: the data, each fold's model and the combined summary."""

    config: RunConfig
    dataset: Dataset
    folds: list[TrainedFold]
    summary: dict[str, Any]

    def recommender(self, fold: int = 0) -> Recommender:
        """The model of one fold as a :class:`Recommender`, with the ratings it saw."""
        trained = self.folds[fold]
        return Recommender(
            trained.model, self.config, Artifacts.of(self.dataset, trained.split), self.summary
        )


def fit(
    model: str,
    data: str | Path | Dataset = DEFAULT_DATASET,
    *,
    split: str = "random:0.1",
    seed: int = 0,
    test_file: str | Path | None = None,
    valid_fraction: float = 0.1,
    refit: bool = False,
    rank_k: int = 0,
    device: str = "auto",
    config: dict[str, Any] | None = None,
    out: Path | str | None = None,
    overwrite: bool = False,
    quiet: bool = True,
    **params: Any,
) -> Recommender:
    """Train ``model`` on ``data`` in memory and return it as a :class:`Recommender` whose ``summary``
    holds the test figures; with ``out`` the run directory is written too (``overwrite``: in place of
    what is there).

    ``data`` is a built-in name, a folder, a ratings file or a :class:`Dataset` (``Dataset.from_pandas``
    and friends); ``params`` are the model's own settings (``deepmovie models`` lists them) on top of
    ``config`` (a run config as a dict, e.g. a preset's YAML loaded).
    """
    values = dict(config or {})
    values.update(
        model=model,
        data=data.name if isinstance(data, Dataset) else str(data),
        split=split,
        seed=seed,
        test_file=str(test_file) if test_file is not None else None,
        valid_fraction=valid_fraction,
        refit=refit,
        rank_k=rank_k,
        device=device,
        params={**values.get("params", {}), **params},
    )
    trained = train(
        build_config(values),
        Path(out) if out is not None else None,
        dataset=data if isinstance(data, Dataset) else None,
        overwrite=overwrite,
        quiet=quiet,
    )
    if len(trained.folds) != 1:
        raise DeepMovieError(
            f"split {split!r} has {len(trained.folds)} folds and fit returns one model: pick one fold "
            "(kfold:K:I), or train them all with deepmovie.experiment.run"
        )
    return trained.recommender()


def run(
    config: RunConfig,
    out: Path | None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    until: float | None = None,
) -> dict:
    """Train and evaluate ``config`` on every fold of its split; write the run directory; the summary.
    Past ``until`` (a ``time.time()``) no epoch starts: each fit keeps its best epoch so far."""
    return train(config, out, resume=resume, overwrite=overwrite, quiet=quiet, until=until).summary


def train(
    config: RunConfig,
    out: Path | None = None,
    *,
    dataset: Dataset | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    until: float | None = None,
) -> Trained:
    """Train and evaluate ``config`` on every fold of its split (on ``dataset`` when given), keeping the
    models; with ``out``, write the run directory (claimed as :func:`deepmovie.rundir.claim_run` says:
    ``resume`` continues the run there, ``overwrite`` replaces it)."""
    if config.test_file and config.split != RunConfig.model_fields["split"].default:
        raise DeepMovieError("--split and --test-file are exclusive: the test file is the split")
    if dataset is not None and config.test_file:
        raise DeepMovieError("test_file: give the test rows inside the Dataset, or load both from files")
    if distributed.active() and config.model in NOT_DISTRIBUTED:
        raise DeepMovieError(f"{config.model} cannot run under torchrun: {NOT_DISTRIBUTED[config.model]}")
    dataset, splits = prepare(config, dataset)
    device = distributed.local_device(select_device(config.device))
    _checked(config, dataset, splits[0], device)  # a model too big is refused before anything is written
    writes = out is not None and distributed.is_main()
    if writes:
        if resume:
            _same_run(out, config)
        claim_run(out, dump_yaml(config.resolved()), overwrite=overwrite, resume=resume)
    folds = []
    for split in splits:
        fold_dir = out if out is None or len(splits) == 1 else out / f"fold-{split.fold}"
        if writes:
            fold_dir.mkdir(parents=True, exist_ok=True)
        model, record = _run_fold(config, dataset, split, device, fold_dir, resume, quiet, until)
        folds.append(TrainedFold(split, model, record))
        if writes:
            Artifacts.of(dataset, split).write_seen(fold_dir)
    summary = _combine(config, dataset, [f.record for f in folds], device)
    if writes:
        Artifacts.of(dataset, splits[0]).write_shared(out)
        write_text(out / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return Trained(config, dataset, folds, summary)


def _same_run(out: Path, config: RunConfig) -> None:
    """A resumed run continues with the config it started with, never from another config's checkpoint."""
    differ = differing(read_config(out).resolved(), config.resolved())
    if differ:
        raise DeepMovieError(
            f"{out}: holds a run of another config ({', '.join(differ)} differ); resume it with its own "
            f"config: deepmovie train --resume {out}"
        )


def _run_fold(
    config: RunConfig,
    dataset: Dataset,
    split: Split,
    device: torch.device,
    fold_dir: Path | None,
    resume: bool,
    quiet: bool,
    until: float | None = None,
) -> tuple[Model, dict[str, Any]]:
    began = time.perf_counter()
    model = build_model(config, dataset, split, device)
    judge = _evaluator(config, dataset, split.train)
    fit = Trainer(fold_dir, quiet).fit(
        model, split.train, split.valid, judge, config.seed, resume, until=until
    )
    monitor = judge.monitor(model)[0]
    history = list(fit.history)
    # Every non-test row: the refit's data, and what rankings exclude (built once, only if needed).
    needs_seen = config.refit or config.rank_k or model.task == "implicit"
    seen = split.train.concat(split.valid) if needs_seen and len(split.valid) else split.train

    def score(model: Model, ranking: bool = True) -> dict[str, Any]:
        if split.strong:
            return strong_generalization(model, split.fold_in, split.test, judge)
        scores = judge(model, split.test, seen)
        if ranking and config.rank_k and model.task != "implicit":
            scores["ranking"] = rank(model, judge.fallback, seen, split.test, judge.k, judge.relevant_rating)
        return scores

    before_refit = None
    if config.refit and len(split.valid):
        # The validation-stopped model is scored too, so one run gives both figures (its twin's and
        # its own) instead of training it twice.
        if model.task != "implicit":
            before_refit = score(model, ranking=False).get("rmse")
        # Epoch count chosen on validation; now use those rows too, as peers that train on all of
        # the training part do. The test rows are still untouched.
        refit_config = config.model_copy(
            update={"params": {**config.params, "epochs": fit.best_epoch, "patience": 0, "tol": 0.0}}
        )
        model = build_model(refit_config, dataset, split, device)
        judge = _evaluator(config, dataset, seen)
        refit_dir = fold_dir / REFIT if fold_dir is not None else None
        if refit_dir is not None and distributed.is_main():
            refit_dir.mkdir(exist_ok=True)
        empty = split.valid.subset(np.zeros(0, dtype=np.int64))
        refit = Trainer(refit_dir, quiet).fit(model, seen, empty, judge, config.seed, resume, until=until)
        history += [{**h, "phase": "refit"} for h in refit.history]
    fit_seconds = time.perf_counter() - began
    if model.task == "implicit":
        model.attach(seen)  # rankings are made from all a model may know of a user, as when served
    test = score(model)
    if fold_dir is not None:
        state = distributed.gather_state(model, model.state_dict())
        if distributed.is_main():
            save_atomic(weights_file(model, state), fold_dir / WEIGHTS)
    epoch_seconds = [h["seconds"] for h in history]
    trained_rows = sum(
        len(split.train) if "phase" not in h else len(split.train) + len(split.valid) for h in history
    )
    return model, {
        **split.record(),
        "n_train": len(split.train),
        "n_valid": len(split.valid),
        "n_test": len(split.test),
        "refit": bool(config.refit and len(split.valid)),
        "task": model.task,
        "cold_test_rows": test.pop("cold_rows", 0),
        **({"ranking": test.pop("ranking")} if "ranking" in test else {}),
        "test_rmse": test.pop("rmse", None),
        "test_mae": test.pop("mae", None),
        **({"test_rmse_before_refit": before_refit} if before_refit is not None else {}),
        **{f"test_{name}": value for name, value in test.items()},
        "monitor": monitor,
        "valid_rmse": None,
        f"valid_{monitor}": fit.best_valid if len(split.valid) else None,
        "best_epoch": fit.best_epoch,
        "epochs": len(fit.history),
        "stopped_because": fit.stopped_because,
        "fit_seconds": fit_seconds,
        "epoch_seconds": epoch_seconds,
        "train_samples_per_second": trained_rows / max(sum(epoch_seconds), 1e-9),
        "parameters": sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers()),
    }


def _evaluator(config: RunConfig, dataset: Dataset, train: Interactions) -> Evaluator:
    """How this fit is judged: cold rows fall back on biases from ``train``; rankings use the config's K.

    A relevance threshold above the top of the scale (the default 4 on implicit 0/1 data) would make no
    test row relevant and every ranking score 0: it is lowered to the top rating."""
    relevant = min(config.relevant_rating, dataset.scale.high)
    return Evaluator(ColdFallback.fit(train), dataset.scale, config.rank_k or 10, relevant)


def _combine(config: RunConfig, dataset: Dataset, folds: list[dict], device: torch.device) -> dict:
    summary: dict[str, Any] = {"model": config.model, "data": config.data, "dataset": dataset.describe()}
    summary.update(folds[0] if len(folds) == 1 else _mean_of(folds))
    summary.update(
        {
            "cold_policy": cold_policy(MODELS.get(config.model)),
            "device": str(device),
            "world_size": distributed.world_size(),
            "machine": machine.describe(device),
            "config": config.resolved(),
            "version": __version__,
        }
    )
    if len(folds) > 1:
        summary["folds"] = folds
    return summary


def _mean_of(folds: list[dict]) -> dict[str, Any]:
    merged = dict(folds[0])
    merged["fold"] = None
    merged["split_hash"] = "+".join(f["split_hash"] for f in folds)
    averaged = [k for k, v in folds[0].items() if k.startswith(("test_", "valid_")) and isinstance(v, float)]
    for key in [*averaged, "fit_seconds", "train_samples_per_second"]:
        values = [f[key] for f in folds if f.get(key) is not None]
        if values:
            merged[key] = statistics.fmean(values)
            merged[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    for key in ("n_train", "n_valid", "n_test", "cold_test_rows", "epochs"):
        merged[key] = sum(f[key] for f in folds)
    merged["epoch_seconds"] = [s for f in folds for s in f["epoch_seconds"]]
    return merged
