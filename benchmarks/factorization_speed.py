"""Speed of the factorization family on CPU, against reference pipelines measured in the same run.

1. One ``mf`` epoch on ML-1M (k=64, Adam) in DeepMovie's engine vs the tutorial/lab pipeline
   (a per-sample ``Dataset`` + ``DataLoader``, batch 512, dense embeddings, Adam).
2. One ``pmf`` ALS sweep (users + items) on ML-1M with k=50.
3. Time to reach test RMSE <= 0.925 on ML-100K ``fold:u1``: DeepMovie's biased-mf preset, and Surprise's
   SVD / cornac's MF when those packages are installed (``pip install scikit-surprise cornac``).

Every figure is the median of ``--repeats`` runs. Usage::

    python benchmarks/factorization_speed.py --data-1m ../shared/data/ml-1m \
        --data-100k ../shared/data/ml-100k --out benchmarks/results/factorization-speed.md
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from deepmovie import machine
from deepmovie.config import build_config, load_config_file
from deepmovie.experiment import build_model, prepare, run

PRESET_100K = Path(__file__).resolve().parents[1] / "configs" / "biased-mf-ml-100k-fast.yaml"


class PerSampleRatings(Dataset):
    """The tutorial's pipeline: one Python call per rating."""

    def __init__(self, users, items, ratings):
        self.users, self.items, self.ratings = users, items, ratings

    def __len__(self):
        return len(self.ratings)

    def __getitem__(self, index):
        return self.users[index], self.items[index], self.ratings[index]


class TutorialMF(torch.nn.Module):
    def __init__(self, n_users: int, n_items: int, k: int) -> None:
        super().__init__()
        self.user = torch.nn.Embedding(n_users, k)
        self.item = torch.nn.Embedding(n_items, k)

    def forward(self, users, items):
        return (self.user(users) * self.item(items)).sum(1)


def tutorial_epoch(train, n_users: int, n_items: int) -> float:
    model = TutorialMF(n_users, n_items, 64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(
        PerSampleRatings(
            torch.as_tensor(train.users).long(),
            torch.as_tensor(train.items).long(),
            torch.as_tensor(train.ratings),
        ),
        batch_size=512,
        shuffle=True,
    )
    began = time.perf_counter()
    for users, items, ratings in loader:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(users, items), ratings)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - began


def engine_epoch(model_name: str, data: str, params: dict) -> float:
    config = build_config({"model": model_name, "data": data, "split": "random:0.1", "params": params})
    dataset, splits = prepare(config)
    model = build_model(config, dataset, splits[0], torch.device("cpu"))
    model.prepare(splits[0].train, seed=0)
    began = time.perf_counter()
    model.train_epoch(1)
    return time.perf_counter() - began


def median(fn, repeats: int) -> tuple[float, list[float]]:
    runs = [fn() for _ in range(repeats)]
    return statistics.median(runs), runs


def time_to_target_deepmovie(data: str) -> tuple[float, float]:
    values = load_config_file(PRESET_100K)
    values.update({"data": data, "split": "fold:u1"})
    summary = run(build_config(values), None, quiet=True)
    return summary["fit_seconds"], summary["test_rmse"]


def time_to_target_surprise(data: str) -> tuple[float, float] | None:
    try:
        from surprise import SVD, Dataset, Reader, accuracy
    except ImportError:
        return None
    reader = Reader(line_format="user item rating timestamp", sep="\t")
    folds = Dataset.load_from_folds([(f"{data}/u1.base", f"{data}/u1.test")], reader=reader)
    from surprise.model_selection import PredefinedKFold

    trainset, testset = next(PredefinedKFold().split(folds))
    algo = SVD(n_factors=100, n_epochs=20, lr_all=0.005, reg_all=0.05, random_state=0)
    began = time.perf_counter()
    algo.fit(trainset)
    seconds = time.perf_counter() - began
    return seconds, accuracy.rmse(algo.test(testset), verbose=False)


def time_to_target_cornac(data: str) -> tuple[float, float] | None:
    try:
        import cornac
        from cornac.eval_methods import BaseMethod
    except ImportError:
        return None

    def read(name):
        rows = np.loadtxt(f"{data}/{name}", dtype=str)[:, :3]
        return [(u, i, float(r)) for u, i, r in rows]

    method = BaseMethod.from_splits(
        train_data=read("u1.base"), test_data=read("u1.test"), exclude_unknowns=False, verbose=False
    )
    model = cornac.models.MF(
        k=10,
        max_iter=25,
        learning_rate=0.01,
        lambda_reg=0.02,
        use_bias=True,
        early_stop=False,
        seed=0,
        verbose=False,
    )
    began = time.perf_counter()
    model.fit(method.train_set)
    seconds = time.perf_counter() - began
    test = method.test_set
    users, items, ratings = test.uir_tuple
    predictions = np.array(
        [
            model.score(u, i) if u < model.num_users and i < model.num_items else method.train_set.global_mean
            for u, i in zip(users, items, strict=True)
        ]
    )
    return seconds, float(np.sqrt(np.mean((np.clip(predictions, 1, 5) - ratings) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-1m", default="../shared/data/ml-1m")
    parser.add_argument("--data-100k", default="../shared/data/ml-100k")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/factorization-speed.md"))
    args = parser.parse_args()

    config = build_config({"model": "mf", "data": args.data_1m, "split": "random:0.1"})
    dataset, splits = prepare(config)
    train = splits[0].train
    tutorial, tutorial_runs = median(
        lambda: tutorial_epoch(train, dataset.n_users, dataset.n_items), args.repeats
    )
    mf_params = {"factors": 64, "optimizer": "adam", "lr": 0.005, "batch_size": 4096}
    ours, ours_runs = median(lambda: engine_epoch("mf", args.data_1m, mf_params), args.repeats)
    sweep, sweep_runs = median(lambda: engine_epoch("pmf", args.data_1m, {"factors": 50}), args.repeats)
    rows = [
        (
            "mf epoch, ML-1M, k=64 — tutorial pipeline (per-sample Dataset+DataLoader, batch 512)",
            tutorial,
            tutorial_runs,
            f"{len(train) / tutorial:,.0f} samples/s",
        ),
        (
            "mf epoch, ML-1M, k=64 — DeepMovie engine (batch 4096, sparse Adam)",
            ours,
            ours_runs,
            f"{len(train) / ours:,.0f} samples/s; {tutorial / ours:.1f}x faster",
        ),
        ("pmf ALS sweep (users + items), ML-1M, k=50", sweep, sweep_runs, f"{len(train):,} ratings"),
    ]
    targets = [
        ("DeepMovie biased-mf (configs/biased-mf-ml-100k-fast.yaml)", time_to_target_deepmovie),
        ("Surprise SVD (k=100, 20 epochs, reg 0.05)", time_to_target_surprise),
        ("cornac MF (k=10, 25 epochs, biases)", time_to_target_cornac),
    ]
    target_rows = []
    for name, fn in targets:
        results = [fn(args.data_100k) for _ in range(args.repeats)]
        if results[0] is None:
            target_rows.append((name, None, None))
            continue
        target_rows.append((name, statistics.median(r[0] for r in results), results[0][1]))

    lines = [
        "# Factorization speed (CPU)",
        "",
        f"- command: `python benchmarks/factorization_speed.py --repeats {args.repeats}`",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {machine.describe()}",
        f"- torch {torch.__version__}, numpy {np.__version__}; median of {args.repeats} runs",
        "",
        "| what | seconds (median) | runs | note |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {m:.3f} | {', '.join(f'{r:.3f}' for r in runs)} | {note} |" for n, m, runs, note in rows
    ]
    lines += [
        "",
        "Time to fit on ML-100K u1 (80,000 training ratings) and the test RMSE reached:",
        "",
        "| model | fit seconds (median) | test RMSE | reaches <= 0.925 |",
        "|---|---|---|---|",
    ]
    for name, seconds, rmse in target_rows:
        if seconds is None:
            lines.append(f"| {name} | not installed | - | - |")
        else:
            lines.append(f"| {name} | {seconds:.2f} | {rmse:.4f} | {'yes' if rmse <= 0.925 else 'no'} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
