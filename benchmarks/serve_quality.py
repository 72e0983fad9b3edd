"""What the page serves, judged: a rating model's and a ranker's top-10 for random users, side by side
with the titles those users liked in their held-out ratings, and the NDCG@10 of the served lists.

Both models train on the ranking benchmark's split (ML-1M ``random:0.2``, seed 0, the ranker with its
preset chosen on validation rows); the lists are what ``Recommender.recommend`` returns, the call behind
``/recommend`` and ``deepmovie recommend`` (the pair: ordered by the ranker, stars by the rater), so the
served NDCG@10 must equal the ranker's offline figure. Usage::

    python benchmarks/serve_quality.py --out benchmarks/results/serving-quality-ml-1m.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from common import write_report

from deepmovie import machine
from deepmovie.config import build_config, load_config_file
from deepmovie.experiment import train
from deepmovie.metrics import ranking_metrics
from deepmovie.recommender import Recommender

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def trained(preset: Path, data: str, split: str, seed: int) -> tuple[Recommender, object, dict]:
    values = load_config_file(preset)
    values.update(data=data, split=split, seed=seed, rank_k=10, device="cpu")
    run = train(build_config(values), None, quiet=True)
    return run.recommender(), run.folds[0].split, run.summary


def served_lists(rec: Recommender, users: np.ndarray, k: int) -> np.ndarray:
    """(users, k) item indices of what ``recommend`` returns for each user (-1 where shorter)."""
    index = {raw: i for i, raw in enumerate(rec.artifacts.item_ids.raw.tolist())}
    raw_users = rec.artifacts.user_ids.raw
    lists = np.full((len(users), k), -1, dtype=np.int64)
    for row, u in enumerate(users):
        items = rec.recommend(raw_users[u].item(), k=k, explain=False).items
        lists[row, : len(items)] = [index[item.item] for item in items]
    return lists


def served_ndcg(lists: np.ndarray, users: np.ndarray, seen: sp.csr_matrix, liked: sp.csr_matrix) -> dict:
    """The project's ranking metrics of fixed lists: each list's items scored k..1, all others -inf."""
    n_items = seen.shape[1]
    row_of = {int(u): r for r, u in enumerate(users)}

    def score(batch: torch.Tensor) -> torch.Tensor:
        scores = torch.full((len(batch), n_items), -torch.inf, dtype=torch.float64)
        for r, u in enumerate(batch.tolist()):
            shown = lists[row_of[u]]
            shown = shown[shown >= 0]
            scores[r, shown] = torch.arange(len(shown), 0, -1, dtype=torch.float64)
        return scores

    return ranking_metrics(score, seen, liked, k=lists.shape[1])


def offline_ndcg(summary: dict) -> float:
    """The run's own test NDCG@10: a ranking model's test figure, a rating model's ``ranking`` one."""
    return summary.get("test_ndcg@10", summary.get("ranking", {}).get("ndcg@10", float("nan")))


def titles(rec: Recommender, items, hits: set[int]) -> list[str]:
    out = []
    for i in items:
        name = str(rec.movie(int(i)).title)  # MovieLens titles carry their year
        out.append(f"**{name}**" if int(i) in hits else name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "ml-1m"))
    parser.add_argument("--split", default="random:0.2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ranker", type=Path, default=ROOT / "benchmarks/results/ranking-ml-1m/presets/ease-graded.yaml"
    )
    parser.add_argument("--rater", type=Path, default=ROOT / "configs/biased-mf-ml-1m.yaml")
    parser.add_argument("--users", type=int, default=20, help="random users shown side by side")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serving-quality-ml-1m.md"))
    args = parser.parse_args()

    began = time.perf_counter()
    ranker, split, ranker_summary = trained(args.ranker, args.data, args.split, args.seed)
    rater, _, rater_summary = trained(args.rater, args.data, args.split, args.seed)
    if ranker_summary["split_hash"] != rater_summary["split_hash"]:
        sys.exit("the two models were not tested on the same rows")
    page = ranker.pair(rater)
    seen = page.artifacts.seen
    liked = split.test.subset(split.test.ratings >= 4.0).csr()
    users = np.flatnonzero(np.diff(liked.indptr) > 0)

    listed = {"page": served_lists(page, users, args.k), "rater": served_lists(rater, users, args.k)}
    figures = {name: served_ndcg(lists, users, seen, liked) for name, lists in listed.items()}
    popularity = np.bincount(seen.indices, minlength=seen.shape[1])

    rng = np.random.default_rng(args.seed)
    shown = np.sort(rng.choice(len(users), size=min(args.users, len(users)), replace=False))
    ranker_name, rater_name = ranker.model_name, rater.model_name
    lines = [
        f"# What the page serves: {ranker_name} (ranker) vs {rater_name} (rating model) on "
        f"{Path(args.data).name}",
        "",
        f"- command: `{shlex.join(['python', 'benchmarks/serve_quality.py', *sys.argv[1:]])}`",
        f"- date: {datetime.date.today().isoformat()}; machine: {machine.describe()}; "
        f"{time.perf_counter() - began:.0f} s in all",
        f"- data: {os.path.relpath(args.data, ROOT)} `{args.split}` seed {args.seed} (the ranking "
        f"benchmark's split; test-row hash "
        f"{ranker_summary['split_hash']}); relevant: held-out ratings >= 4; {len(users):,} users have one",
        f"- ranker: `{args.ranker.relative_to(ROOT) if args.ranker.is_relative_to(ROOT) else args.ranker}`; "
        f"rater: `{args.rater.relative_to(ROOT) if args.rater.is_relative_to(ROOT) else args.rater}` "
        f"(test RMSE {rater_summary.get('test_rmse', float('nan')):.4f})",
        "- lists: `Recommender.recommend(user, k=10)`, the call behind `/recommend`, on the pair "
        "(`Recommender.pair`: ordered by the ranker) and on the rating model alone; seen items excluded",
        "",
        "| list | NDCG@10 | recall@10 | HR@10 | coverage@10 | offline test NDCG@10 of the model |",
        "|---|---|---|---|---|---|",
    ]
    for name, label, summary in (
        ("page", f"the page: {ranker_name} ranks, {rater_name} stars", ranker_summary),
        ("rater", f"{rater_name} alone, ordered by predicted rating", rater_summary),
    ):
        f = figures[name]
        lines.append(
            f"| {label} | {f['ndcg@10']:.4f} | {f['recall@10']:.4f} | {f['hr@10']:.4f} | "
            f"{f['coverage@10']:.4f} | {offline_ndcg(summary):.4f} |"
        )
    lines += [
        "",
        f"{args.users} users drawn at random (seed {args.seed}) among them; **bold**: a title the user "
        "rated >= 4 in the held-out rows.",
    ]
    for row in shown:
        u = int(users[row])
        hits = set(liked.indices[liked.indptr[u] : liked.indptr[u + 1]].tolist())
        ours = [i for i in listed["page"][row] if i >= 0]
        theirs = [i for i in listed["rater"][row] if i >= 0]
        held = sorted(hits, key=lambda i: -popularity[i])[: args.k]
        lines += [
            "",
            f"## user {page.artifacts.user_ids.raw[u]} ({seen[u].nnz} training ratings, {len(hits)} liked "
            f"held out; hits: page {len(hits & set(ours))}, rating model {len(hits & set(theirs))})",
            "",
            f"| # | the page ({ranker_name}) | {rater_name} alone | liked, held out (most rated first) |",
            "|---|---|---|---|",
        ]
        columns = [titles(page, ours, hits), titles(rater, theirs, hits), titles(page, held, set())]
        for position in range(args.k):
            cells = [c[position] if position < len(c) else "" for c in columns]
            lines.append(f"| {position + 1} | " + " | ".join(cells) + " |")
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
