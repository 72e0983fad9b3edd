"""``deepmovie bench``: models x seeds (+ peers) on one split, aggregated, reported and resumable.

Tiny generated data (60 users, 50 items) and few epochs: the point is the bookkeeping, not accuracy.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import write_ratings
from deepmovie.bench import run_bench
from deepmovie.bench.entries import Entry, Setting, dataset_name, parse_entries
from deepmovie.bench.runner import parse_seeds
from deepmovie.bench.suites import HYBRID_REG_ITEM, SUITES, Suite
from deepmovie.errors import DeepMovieError

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ("results.json", "results.csv", "results.md", "learning-curves.png", "test-rmse.png")


@pytest.fixture
def ratings(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return write_ratings(tmp_path / "data" / "ratings.csv", n_users=60, n_items=50, density=0.3)


def quick(ratings: Path, out: Path, models: list[str], **options) -> list:
    """A bench on the tiny data: a random split, few epochs, no output lines."""
    options = {"split": "random:0.2", "seeds": "0,1", "params": {"epochs": 3}, **options}
    return run_bench(models, out=out, data=str(ratings), log=lambda line: None, **options)


def summaries(out: Path, label: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob(f"{label}-seed*/summary.json"))]


def test_two_models_two_seeds_aggregate_their_runs(ratings, tmp_path):
    out = tmp_path / "bench"
    rows = quick(ratings, out, ["bias,biased-mf"])
    for name in (*OUTPUTS, "seconds-per-epoch.png"):
        assert (out / name).stat().st_size > 0, name
    document = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in document["rows"]] == ["bias", "biased-mf"]
    for row, label in zip(document["rows"], ["bias", "biased-mf"], strict=True):
        runs = summaries(out, label)
        assert [s["seed"] for s in runs] == [0, 1]
        rmses = [s["test_rmse"] for s in runs]
        assert row["mean"] == pytest.approx(statistics.fmean(rmses))
        assert row["std"] == pytest.approx(statistics.stdev(rmses))
        assert row["std"] > 0  # the seeds draw different splits here: the spread is real
        assert row["fit_seconds"] == pytest.approx(statistics.fmean(s["fit_seconds"] for s in runs))
        assert row["parameters"] == runs[0]["parameters"]
    assert [r.label for r in rows] == ["bias", "biased-mf"]
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("label,model,source,task,metric,mean,std")
    assert len(csv_lines) == 3
    md = (out / "results.md").read_text()
    assert f"| biased-mf | biased-mf | deepmovie | {rows[1].mean:.4f} ± {rows[1].std:.4f} |" in md
    assert "- command: `(Python API)`" in md and "- machine: " in md
    assert (out / ".gitignore").read_text() == "runs/\n"


def test_finished_runs_are_reused_and_a_changed_config_is_refused(ratings, tmp_path):
    out = tmp_path / "bench"
    quick(ratings, out, ["biased-mf"])
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}
    lines: list[str] = []
    run_bench(
        ["biased-mf"],
        out=out,
        data=str(ratings),
        split="random:0.2",
        seeds="0,1",
        params={"epochs": 3},
        log=lines.append,
    )
    assert lines == ["biased-mf seed 0: " + lines[0].split(": ", 1)[1], lines[1]]
    assert all(line.endswith("(reused)") for line in lines)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    with pytest.raises(DeepMovieError, match="holds a run of another config"):
        quick(ratings, out, ["biased-mf"], params={"epochs": 4})


def test_missing_suite_entries_are_listed_not_run(ratings, tmp_path, monkeypatch):
    suite = Suite(
        "tiny",
        "A tiny suite",
        "test",
        "unused",
        "random:0.2",
        (
            Entry("bias", "bias"),
            Entry("nothing", "no-such-model"),
            Entry("hybrid-none", "hybrid", params={"encoder": "no-such-encoder"}),
        ),
    )
    monkeypatch.setitem(SUITES, "tiny", suite)
    out = tmp_path / "bench"
    rows = quick(ratings, out, [], suite="tiny", seeds="0")
    assert [r.label for r in rows] == ["bias"]
    assert rows[0].std is None and rows[0].mean == summaries(out, "bias")[0]["test_rmse"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["bias-seed0"]
    md = (out / "results.md").read_text()
    assert "- nothing (`no-such-model`): model 'no-such-model' is not registered" in md
    assert "- hybrid-none (`hybrid`): hybrid encoder 'no-such-encoder' is not registered" in md
    missing = json.loads((out / "results.json").read_text())["missing"]
    assert [m["label"] for m in missing] == ["nothing", "hybrid-none"]


def test_every_suite_entry_builds_a_config_from_the_committed_presets():
    for suite in SUITES.values():
        setting = Setting(data=suite.data, split=suite.split, config_dir=REPO / "configs")
        for entry in suite.resolved(REPO / "configs"):
            if entry.missing() is None:
                config = setting.config(entry, seed=1)
                assert (config.data, config.split, config.seed) == (suite.data, suite.split, 1)
    from deepmovie.models.hybrid.encoders import ENCODERS

    hybrids = [e for e in SUITES["deepmovie"].entries if e.model == "hybrid"]
    assert {e.params["encoder"] for e in hybrids} == set(HYBRID_REG_ITEM)
    for entry in hybrids:
        assert (entry.missing() is None) == (entry.params["encoder"] in ENCODERS)
    lecture = SUITES["lecture"].resolved(REPO / "configs")
    fg = {(e.params["decoder"], e.params["encoder"]) for e in lecture}
    assert fg == {(f, g) for f in ("identity", "sigmoid") for g in ("identity", "sigmoid")}


def test_presets_give_training_settings_the_bench_gives_data_and_split(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("model: biased-mf\ndata: ml-100k\nsplit: fold:u1\nrefit: true\nparams: {factors: 7}\n")
    (entry,) = parse_entries([f"small=biased-mf@{preset}"])
    assert (entry.label, entry.model, entry.preset) == ("small", "biased-mf", preset)
    config = Setting(data="ratings.csv", split="random:0.3", params={"lr": 0.01}).config(entry, 4)
    assert (config.data, config.split, config.seed, config.refit) == ("ratings.csv", "random:0.3", 4, True)
    assert config.params == {"factors": 7, "lr": 0.01}
    assert parse_entries([f"biased-mf@{preset}"])[0].label == "p"
    with pytest.raises(DeepMovieError, match="is a preset of 'biased-mf', not of 'svdpp'"):
        Setting(data="x").config(Entry("s", "svdpp", preset), 0)
    with pytest.raises(DeepMovieError, match="label 'bias' is used twice"):
        parse_entries(["bias,bias"])


def test_tuned_presets_are_found_by_model_and_dataset_name(ratings, tmp_path):
    config_dir = tmp_path / "configs"
    setting = Setting(data=str(ratings), tuned=True, config_dir=config_dir)
    with pytest.raises(DeepMovieError, match=r"--tuned: no tuned preset .*biased-mf-data\.yaml"):
        setting.config(Entry("biased-mf", "biased-mf"), 0)
    (config_dir / "tuned").mkdir(parents=True)
    (config_dir / "tuned" / "biased-mf-data.yaml").write_text("model: biased-mf\nparams: {factors: 5}\n")
    assert setting.config(Entry("biased-mf", "biased-mf"), 0).params == {"factors": 5}
    assert dataset_name("ml-1m") == "ml-1m" and dataset_name(str(ratings.parent)) == "data"


def test_seeds_are_parsed_strictly():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    for bad in ("0,a", "1,1", "", "-1"):
        with pytest.raises(DeepMovieError, match="--seeds"):
            parse_seeds(bad)


def test_peers_train_on_the_training_part_and_score_the_same_test_rows(ratings, tmp_path):
    pytest.importorskip("surprise")
    out = tmp_path / "bench"
    # --set factors: a parameter global-mean lacks; the peers' rows must not depend on it
    params = {"epochs": 3, "factors": 4}
    rows = quick(ratings, out, ["biased-mf"], seeds="3", peers=["surprise"], params=params)
    assert [r.label for r in rows] == ["biased-mf", "surprise-svd", "surprise-svdpp", "surprise-knnbaseline"]
    (ours,) = summaries(out, "biased-mf")
    for peer in rows[1:]:
        (theirs,) = summaries(out, peer.label)
        assert theirs["split_hash"] == ours["split_hash"]
        assert theirs["n_train"] == ours["n_train"] + ours["n_valid"]
        assert theirs["n_test"] == ours["n_test"]
        assert 0.3 < theirs["test_rmse"] < 2.0 and theirs["fit_seconds"] > 0
    assert "Peer settings:" in (out / "results.md").read_text()


def test_a_ranking_bench_judges_models_and_implicit_peers_on_the_same_top_k(ratings, tmp_path):
    pytest.importorskip("implicit")
    out = tmp_path / "bench"
    rows = quick(ratings, out, ["bias"], seeds="0", peers=["implicit"], rank_k=5)
    assert {r.label for r in rows} == {"bias", "implicit-als", "implicit-bpr"}
    assert all(r.metric == "ndcg@5" and 0 <= r.mean <= 1 for r in rows)
    (ours,) = summaries(out, "bias")
    for peer in ("implicit-als", "implicit-bpr"):
        (theirs,) = summaries(out, peer)
        assert theirs["split_hash"] == ours["split_hash"]
        assert theirs["test_ranked_users"] == ours["ranking"]["ranked_users"]
        assert {"test_recall@20", "test_ndcg@100"} <= theirs.keys()
    table = (out / "results.md").read_text()
    figures = [float(line.split("NDCG@5 ")[1].split()[0]) for line in table.splitlines() if "NDCG@5 " in line]
    assert figures == sorted(figures, reverse=True)  # best first


def test_peers_without_surprise_name_the_extra(ratings, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "surprise", None)  # import surprise -> ImportError
    with pytest.raises(DeepMovieError, match=r"pip install 'deepmovie\[peers\]'"):
        quick(ratings, tmp_path / "bench", ["bias"], peers=["surprise"])
    assert not (tmp_path / "bench" / "runs").exists()  # refused before any training


def test_cli_errors_are_one_line_and_exit_2(ratings, tmp_path):
    for options, text in (({"suite": "nope"}, "unknown suite 'nope'"), ({"seeds": "0,x"}, "--seeds '0,x'")):
        with pytest.raises(DeepMovieError, match=text):
            quick(ratings, tmp_path / "out", ["bias"], **options)
    cases = {  # as users meet them: a real process each (they run side by side)
        "unknown model": (["no-such-model"], "unknown model 'no-such-model'"),
        "missing tuned preset": (["bias", "--tuned", "--config-dir", str(tmp_path)], "no tuned preset"),
    }
    env = {**os.environ, "DEEPMOVIE_HOME": str(tmp_path / "home")}

    def call(args: list[str]) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "deepmovie", "bench", *args, "--data", str(ratings)]
        return subprocess.run(
            [*command, "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120
        )

    with ThreadPoolExecutor(len(cases)) as pool:
        results = dict(zip(cases, pool.map(call, [args for args, _ in cases.values()]), strict=True))
    for case, (_, text) in cases.items():
        result = results[case]
        assert result.returncode == 2, (case, result.stderr)
        assert result.stderr.startswith("error: ") and text in result.stderr, (case, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (case, result.stderr)
    assert not (tmp_path / "out").exists()  # refused before anything was written
