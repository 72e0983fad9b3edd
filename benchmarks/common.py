"""What the benchmarks share: the tutorial's per-sample pipeline, one engine epoch, medians, the report."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from deepmovie.config import build_config
from deepmovie.data.interactions import Interactions
from deepmovie.experiment import build_model, prepare


class PerSampleRatings(Dataset):
    """The tutorial's pipeline: one Python call per rating."""

    def __init__(self, train: Interactions) -> None:
        self.users = torch.as_tensor(train.users).long()
        self.items = torch.as_tensor(train.items).long()
        self.ratings = torch.as_tensor(train.ratings)

    def __len__(self) -> int:
        return len(self.ratings)

    def __getitem__(self, index):
        return self.users[index], self.items[index], self.ratings[index]


def tutorial_epoch(model: torch.nn.Module, train: Interactions, batch_size: int = 512) -> float:
    """Seconds of one epoch of ``model(users, items)`` under MSE, Adam 1e-3 and a shuffling DataLoader."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(PerSampleRatings(train), batch_size=batch_size, shuffle=True)
    began = time.perf_counter()
    for users, items, ratings in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(users, items), ratings)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - began


def engine_epoch(model_name: str, data: str, params: dict) -> float:
    """Seconds of one epoch of a registered model in DeepMovie's engine (set-up not counted)."""
    config = build_config({"model": model_name, "data": data, "split": "random:0.1", "params": params})
    dataset, splits = prepare(config)
    model = build_model(config, dataset, splits[0], torch.device("cpu"))
    model.prepare(splits[0].train, seed=0)
    model.train()
    began = time.perf_counter()
    model.train_epoch(1)
    return time.perf_counter() - began


def median(fn: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    runs = [fn() for _ in range(repeats)]
    return statistics.median(runs), runs


def write_report(path: Path, lines: list[str]) -> None:
    """Write a results table (Markdown lines) to ``path`` and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
