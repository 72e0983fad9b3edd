"""The epoch loop shared by every model: validation, early stopping, checkpoints, progress, resume.

Under ``torchrun`` every rank runs this loop in lockstep: each evaluates the same validation rows, but
rank 0's scores and stopping decision are broadcast so the ranks can never disagree (and deadlock), and
only rank 0 writes the checkpoint and ``metrics.jsonl`` or shows progress.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from deepmovie.data.interactions import Interactions
from deepmovie.engine import distributed
from deepmovie.errors import DeepMovieError
from deepmovie.files import write_text
from deepmovie.models.base import Model
from deepmovie.rundir import CHECKPOINT, METRICS
from deepmovie.training.checkpoint import load_weights, save_atomic


class Judge(Protocol):
    """What scores a model on validation rows each epoch (the evaluation layer's ``Evaluator``)."""

    def monitor(self, model: Model) -> tuple[str, bool]:
        """(name of the figure that picks the best epoch, whether higher is better)."""

    def __call__(self, model: Model, data: Interactions, seen: Interactions) -> dict[str, float]:
        """Figures of ``model`` on ``data``; ``seen`` are the rows rankings exclude."""


@dataclass
class FitResult:
    best_epoch: int
    best_valid: float  # the monitored validation figure (RMSE for ratings) at the best epoch
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_because: str = "max epochs"


class Trainer:
    """Runs ``model.train_epoch`` until max epochs, patience or the tolerance rule stops it."""

    def __init__(self, run_dir: Path | None = None, quiet: bool = False) -> None:
        self.run_dir = run_dir
        self.quiet = quiet

    def fit(
        self,
        model: Model,
        train: Interactions,
        valid: Interactions,
        evaluator: Judge,
        seed: int,
        resume: bool = False,
        on_epoch: Callable[[int, float], None] | None = None,
        until: float | None = None,
    ) -> FitResult:
        """Train until a stop rule fires. ``on_epoch(epoch, valid figure)`` runs after each epoch is
        saved, so a tuner can prune a hopeless trial by raising from it; past ``until`` (a
        ``time.time()``) no epoch starts, and the best one so far is kept, as early stopping would."""
        params = model.params
        model.prepare(train, seed)
        state = self._load(model) if resume else None
        distributed.broadcast_module(model)
        start = state["epoch"] if state else 0
        result = (
            FitResult(state["best_epoch"], state["best_valid"], state["history"])
            if state
            else FitResult(0, math.nan)
        )
        monitor, higher_is_better = evaluator.monitor(model)
        best_weights = state["best"] if state else None
        bad_epochs = state["bad_epochs"] if state else 0
        if result.history and result.history[-1].get("stopped"):
            result.stopped_because = result.history[-1]["stopped"]
            start = params.epochs  # the run had already finished
        previous = _flat_parameters(model) if params.tol > 0 else None
        bar = tqdm(
            total=params.epochs,
            initial=start,
            desc=model.name,
            unit="epoch",
            disable=True if self.quiet or not distributed.is_main() else None,
            leave=False,
            dynamic_ncols=True,
        )
        for epoch in range(start + 1, params.epochs + 1):
            began = time.perf_counter()
            model.train()
            loss = model.train_epoch(epoch)
            seconds = time.perf_counter() - began
            if not math.isfinite(loss):
                raise DeepMovieError(
                    f"epoch {epoch}: the training loss became {loss}; lower the learning rate "
                    "(--set lr=...) or raise the regularization"
                    + (f"; the last good checkpoint is {self.run_dir / CHECKPOINT}" if self.run_dir else "")
                )
            scores = distributed.broadcast_object(evaluator(model, valid, train) if len(valid) else {})
            record = {
                "epoch": epoch,
                "train_loss": loss,
                **{f"valid_{name}": value for name, value in scores.items() if name != "cold_rows"},
                "seconds": seconds,
                "samples_per_second": len(train) / max(seconds, 1e-9),
            }
            score = scores.get(monitor, math.nan)
            improved = len(valid) == 0 or _better(score, result.best_valid, higher_is_better)
            if improved:
                result.best_epoch, result.best_valid = epoch, score
                # Without validation rows the best epoch is always the last: no copy to keep.
                best_weights = copy.deepcopy(model.state_dict()) if len(valid) else None
                bad_epochs = 0
            else:
                bad_epochs += 1
            stop = None
            if params.patience and bad_epochs >= params.patience:
                stop = f"no better valid {monitor} for {params.patience} epochs"
            if previous is not None:
                current = _flat_parameters(model)
                change = float((current - previous).norm() / previous.norm().clamp_min(1e-12))
                record["parameter_change"] = change
                previous = current
                if change <= params.tol:
                    stop = f"relative parameter change {change:.2e} <= tol {params.tol:g}"
            if stop is None and until is not None and time.time() >= until and epoch < params.epochs:
                stop = "out of time"
            stop = distributed.broadcast_object(stop)
            if stop:
                record["stopped"] = result.stopped_because = stop
            result.history.append(record)
            self._save(model, epoch, result, best_weights, bad_epochs)
            if on_epoch is not None:
                on_epoch(epoch, score)
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.4f}",
                **{f"valid_{monitor}": f"{score:.4f}"},
                samples_s=f"{record['samples_per_second']:,.0f}",
            )
            if stop:
                break
        bar.close()
        if best_weights is not None:
            model.load_state_dict(best_weights)
        return result

    def _save(self, model: Model, epoch: int, result: FitResult, best: dict | None, bad_epochs: int) -> None:
        if self.run_dir is None:
            return
        # Sharded tables are gathered whole (a collective: every rank takes part), rank 0 writes.
        weights = distributed.gather_state(model, model.state_dict())
        best = distributed.gather_state(model, best) if best is not None else None
        if not distributed.is_main():
            return
        save_atomic(
            {
                "epoch": epoch,
                "model": weights,
                "best": best,
                "best_epoch": result.best_epoch,
                "best_valid": result.best_valid,
                "bad_epochs": bad_epochs,
                "history": result.history,
                "training": model.training_state(),
                "rng": torch.get_rng_state(),
            },
            self.run_dir / CHECKPOINT,
        )
        lines = "".join(json.dumps(h) + "\n" for h in result.history)
        write_text(self.run_dir / METRICS, lines)

    def _load(self, model: Model) -> dict[str, Any] | None:
        path = self.run_dir / CHECKPOINT if self.run_dir else None
        if path is None or not path.is_file():
            return None
        state = load_weights(path)
        model.load_state_dict(state["model"])
        model.load_training_state(state["training"])
        torch.set_rng_state(state["rng"])
        return state


def _better(score: float, best: float, higher_is_better: bool) -> bool:
    if math.isnan(score):
        return False
    if math.isnan(best):
        return True
    return score > best if higher_is_better else score < best


def _flat_parameters(model: Model) -> torch.Tensor:
    tensors = [p.detach().flatten().float() for p in model.parameters()]
    tensors += [b.detach().flatten().float() for b in model.buffers() if b.is_floating_point()]
    return torch.cat(tensors).clone() if tensors else torch.zeros(1)
