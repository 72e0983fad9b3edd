"""``deepmovie auto``: candidates from the data's profile, a search held to its budget and judged on
validation rows only, a blended result, a leaderboard, and a resumable folder."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import deepmovie
from conftest import write_ratings
from deepmovie.auto import auto, parse_budget
from deepmovie.auto.candidates import MAX_CELLS_KERNEL, MAX_ROWS_SVDPP, candidates
from deepmovie.auto.profile import DataProfile, profile
from deepmovie.config import build_config
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import prepare
from deepmovie.models import DataInfo

BUDGET = 12.0


@pytest.fixture(scope="module")
def ratings(tmp_path_factory) -> Path:
    return write_ratings(
        tmp_path_factory.mktemp("auto") / "ratings.csv", n_users=60, n_items=50, density=0.35
    )


@pytest.fixture(scope="module")
def finished(ratings, tmp_path_factory) -> tuple[Path, dict, float]:
    out = tmp_path_factory.mktemp("auto-run") / "out"
    began = time.time()
    summary = auto(build_config({"model": "bias", "data": str(ratings)}), out, budget=BUDGET)
    return out, summary, time.time() - began


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("90s", 90), ("1h30m", 5400), ("45", 45), ("0.5m", 30)]
)
def test_budgets_read_as_durations(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "0s", "5d", "m"])
def test_bad_budgets_are_refused(text):
    with pytest.raises(DeepMovieError, match="--budget"):
        parse_budget(text)


def small_profile(**changes) -> DataProfile:
    base = DataProfile(
        rows=1000, users=60, items=50, density=0.33, low=1, high=5, step=1, distinct_ratings=5,
        mean_per_user=16, mean_per_item=20, item_documents=False, user_features=False, timestamps=True,
    )  # fmt: skip
    return replace(base, **changes)


def test_profile_reads_scale_size_and_task(ratings):
    dataset, splits = prepare(build_config({"model": "bias", "data": str(ratings)}))
    found = profile(dataset, splits[0])
    assert (found.low, found.high, found.step, found.task) == (1, 5, 1, "rating")
    assert found.rows == len(splits[0].train) and found.timestamps
    assert small_profile(distinct_ratings=2).task == "ranking"
    assert small_profile(low=1, high=100).span == pytest.approx(99 / 4)


def test_candidates_follow_rules_and_say_why_a_model_is_left_out():
    info = DataInfo(60, 50, None, 3.5)
    found, skipped = candidates(small_profile(), "rating", info)
    names = [c.model for c in found]
    assert {"bias", "biased-mf", "pmf", "svdpp", "autorec"} <= set(names) and "fm" not in names
    assert any(line.startswith("fm: no side features") for line in skipped)
    big, skipped = candidates(small_profile(rows=MAX_ROWS_SVDPP + 1), "rating", info)
    assert "svdpp" not in [c.model for c in big] and any(line.startswith("svdpp:") for line in skipped)
    assert "glocal-k" in names
    wide = small_profile(users=2_000, items=MAX_CELLS_KERNEL // 2_000 + 1)
    wide_matrix, skipped = candidates(wide, "rating", info)
    assert "glocal-k" not in [c.model for c in wide_matrix]
    assert any(line.startswith("glocal-k: dense") for line in skipped)
    wide_scale = next(
        c for c in candidates(small_profile(low=1, high=100), "rating", info)[0] if c.model == "biased-mf"
    )
    assert wide_scale.params["lr"] == pytest.approx(0.005 / (99 / 4))  # SGD steps shrink with the scale
    assert "learning rates / 24.75" in wide_scale.why
    ranking = [c.model for c in candidates(small_profile(), "ranking", info)[0]]
    assert {"popularity", "ease", "ials"} <= set(ranking) and "biased-mf" not in ranking


def test_memory_check_leaves_a_model_out_in_one_line():
    found, skipped = candidates(small_profile(), "rating", DataInfo(60, 50, None, 3.5), max_memory=1000)
    assert "biased-mf" not in [c.model for c in found]
    assert any(line.startswith("biased-mf:") and "limit" in line for line in skipped)


def test_auto_searches_blends_and_keeps_to_its_budget(finished):
    out, summary, seconds = finished
    slack = 6  # loading the data, the finalists' data and the final report come on top
    assert summary["wall_seconds"] <= BUDGET * 1.1 + slack and seconds <= BUDGET * 1.1 + slack
    result, trained = summary["result"], [f for f in summary["finalists"] if "run" in f]
    assert result["run"] == str(out / "best") and trained
    if result["kind"].startswith("blend"):  # ridge on the validation rows cannot do worse there than a member
        assert len(trained) >= 2 and result["valid_rmse"] <= min(f["valid"] for f in trained) + 1e-9
    served = deepmovie.load(out / "best")
    assert np.isfinite(served.summary["test_rmse"]) and len(served.recommend(1, k=5).items) == 5
    rows = json.loads((out / "leaderboard.json").read_text())
    assert {r["model"] for r in rows} >= {f["model"] for f in trained}
    assert all(r["value"] is None or np.isfinite(r["value"]) for r in rows)
    for name in ("auto.md", "leaderboard.md", "leaderboard.png", "auto.json"):
        assert (out / name).is_file(), name
    assert "test RMSE" in (out / "auto.md").read_text()


def test_the_search_never_scores_the_test_rows(ratings, tmp_path, monkeypatch):
    """Trials are judged on validation rows; the test rows enter only once the finalists are trained."""
    from deepmovie import evaluation
    from deepmovie.auto import search

    config = build_config({"model": "bias", "data": str(ratings)})
    test = prepare(config)[1][0].test
    phase, scored = ["search"], []
    judge, finalists = evaluation.Evaluator.__call__, search._finalists

    def spy(self, model, data, *args, **kwargs):
        same = len(data) == len(test) and np.array_equal(data.users, test.users)
        scored.append((phase[0], same and np.array_equal(data.items, test.items)))
        return judge(self, model, data, *args, **kwargs)

    def final(*args, **kwargs):
        phase[0] = "final"
        return finalists(*args, **kwargs)

    monkeypatch.setattr(evaluation.Evaluator, "__call__", spy)
    monkeypatch.setattr(search, "_finalists", final)
    auto(config, tmp_path / "out", budget=6)
    assert any(p == "search" for p, _ in scored) and not any(t for p, t in scored if p == "search")
    assert any(t for p, t in scored if p == "final")


def test_same_command_resumes_a_finished_run_at_once(finished, ratings):
    out, summary, _ = finished
    began = time.time()
    again = auto(build_config({"model": "bias", "data": str(ratings)}), out, budget=BUDGET)
    assert time.time() - began < 3 and again["result"] == summary["result"]


def test_other_settings_in_the_same_folder_are_refused(finished, ratings):
    out, _, _ = finished
    with pytest.raises(DeepMovieError, match="other settings"):
        auto(build_config({"model": "bias", "data": str(ratings), "seed": 3}), out, budget=BUDGET)


def test_implicit_data_ranks(tmp_path):
    path = write_ratings(tmp_path / "clicks.csv", n_users=50, n_items=40, density=0.3)
    lines = path.read_text().splitlines()
    path.write_text(
        "\n".join(
            [lines[0], *(",".join([*line.split(",")[:2], "1", line.split(",")[3]]) for line in lines[1:])]
        )
        + "\n"
    )
    config = build_config({"model": "bias", "data": str(path)})
    with pytest.raises(DeepMovieError, match="--task ranking"):
        auto(config, tmp_path / "refused", budget=5, task="rating")
    summary = auto(config, tmp_path / "out", budget=8)
    assert summary["task"] == "ranking" and summary["result"]["kind"] == "single"
    assert summary["result"]["test_ndcg@10"] > 0  # every 1 is relevant, though the default threshold is 4
    assert (Path(summary["result"]["run"]) / "summary.json").is_file()


def test_cli_runs_and_bad_values_are_one_line(deepmovie, ratings, tmp_path):
    bad = deepmovie("auto", "--data", ratings, "--budget", "soon", "--out", tmp_path / "x")
    assert bad.code == 2 and "--budget" in bad.err and len(bad.err.strip().splitlines()) == 1
    bad = deepmovie("auto", "--data", ratings, "--task", "clicks", "--out", tmp_path / "y")
    assert bad.code == 2 and "--task" in bad.err


def test_parallel_jobs_share_the_studies(ratings, tmp_path):
    """With --jobs 2 each study's first (enqueued) trial runs once, before the workers start."""
    summary = auto(build_config({"model": "bias", "data": str(ratings)}), tmp_path / "out", budget=10, jobs=2)
    rows = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    assert summary["result"]["run"] and all(r["state"] != "fail" for r in rows)


def test_a_finalist_trains_its_trials_epochs_or_as_many_as_fit():
    from deepmovie.auto.search import MARGIN, _epochs_that_fit

    trial = {"epochs": 40, "seconds": 100.0}  # 2.5 s an epoch, 3 s with the margin
    assert _epochs_that_fit(trial, 1000.0) == 40  # as the trial ran: its figure and time are known
    assert _epochs_that_fit(trial, 60.0) == int(60.0 / (100.0 * MARGIN / 40))
    assert _epochs_that_fit(trial, 1.0) == 0  # not one epoch: skipped, and the report says so
    assert _epochs_that_fit({"seconds": 10.0}, 100.0) is None  # no epoch count: as configured
    assert _epochs_that_fit({"seconds": 10.0}, 5.0) == 0


def test_a_fit_the_budget_cut_is_fitted_again_when_a_later_round_gives_it_longer(
    ratings, tmp_path, monkeypatch
):
    from types import SimpleNamespace

    from deepmovie.auto import search as module

    config = build_config({"model": "bias", "data": str(ratings)})
    dataset, splits = prepare(config)
    fits = []

    def fit_valid(*args):
        fits.append(args[0].model)
        return SimpleNamespace(best_valid=0.9, best_epoch=3)

    monkeypatch.setattr(module, "fit_valid", fit_valid)
    candidate = module.Candidate("bias")
    search = module.Search(config, tmp_path, [candidate], 1, True, (dataset, splits[0]))
    state = {"fixed": {"bias": {"value": 1.0, "epochs": 2, "seconds": 30.0, "note": module.CUT}}}
    search._fit_once(candidate, config, time.time() + 10, state)  # a shorter slot than it had: kept
    assert fits == [] and state["fixed"]["bias"]["note"] == module.CUT
    search._fit_once(candidate, config, time.time() + 60, state)  # longer: fitted again, to the end
    assert (
        fits == ["bias"] and state["fixed"]["bias"]["value"] == 0.9 and state["fixed"]["bias"]["note"] is None
    )
    search._fit_once(candidate, config, time.time() + 600, state)  # finished: never again
    assert fits == ["bias"]


def test_a_round_stops_when_the_finalists_need_the_rest_of_the_budget(ratings, tmp_path, monkeypatch):
    """A better (longer) trial found mid-round raises the finalists' reserve: the round's later
    candidates keep their earlier figures instead of eating the finalists' time."""
    from deepmovie.auto import search as module

    config = build_config({"model": "bias", "data": str(ratings)})
    found = [module.Candidate(m) for m in ("bias", "pmf", "biased-mf")]
    search = module.Search(config, tmp_path, found, 1, True, None)
    turns: list[str] = []
    clock = module.Clock(time.time(), 600.0, 0.0)
    monkeypatch.setattr(search, "search", lambda candidate, until, state: turns.append(candidate.model))
    monkeypatch.setattr(search, "rank_key", lambda state, model: turns.index(model))
    monkeypatch.setattr(search, "epoch_seconds", lambda model, state: 0.0)
    # Round 1 finds cheap finalists; the first turn of round 2 finds one that needs all that is left.
    monkeypatch.setattr(search, "reserve", lambda *args: 30.0 if len(turns) <= 3 else 10_000.0)
    search.run({}, clock, lambda: None, finalists=2)
    assert turns == ["bias", "pmf", "biased-mf", "bias"]


def test_the_reserve_counts_every_finalist_not_only_the_last_rounds(ratings, tmp_path, monkeypatch):
    """_finalists picks the best of all candidates: one dropped in round 1 may be among them, and its
    time must be kept too, or the search eats it and the best model is skipped at the end."""
    from deepmovie.auto import search as module

    config = build_config({"model": "bias", "data": str(ratings)})
    found = [module.Candidate(m) for m in ("bias", "pmf", "biased-mf")]
    search = module.Search(config, tmp_path, found, 1, True, None)
    figures = {"bias": (0.95, 1.0), "pmf": (0.90, 100.0), "biased-mf": (0.92, 2.0)}  # value, seconds
    monkeypatch.setattr(search, "best", lambda state, m: {"value": figures[m][0], "seconds": figures[m][1]})
    clock = module.Clock(time.time(), 1000.0, 0.0)  # its floor, 5% of the budget, is below the costs
    kept = search.reserve({}, 2, clock)  # pmf, left behind in round 1 (alive: biased-mf, bias), is the best
    assert kept == pytest.approx(module.MARGIN * module.FITS_PER_FINALIST * (100.0 + 2.0))
