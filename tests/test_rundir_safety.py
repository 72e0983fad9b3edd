"""Output folders are written safely: every file through one writer (temporary, fsync, rename), every
``--out`` claimed (a folder of other files, or another model's run, is never written into without
``--overwrite``), a killed writer's temporaries removed, and a damaged file named in one error line.

The commands run in this process (conftest's ``deepmovie`` fixture).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import assert_one_error_line, snapshot, write_movies, write_ratings
from deepmovie import experiment
from deepmovie.config import build_config
from deepmovie.errors import DeepMovieError
from deepmovie.files import TEMPORARY, write_atomic, write_text
from deepmovie.recommender import Recommender
from deepmovie.recommender.artifacts import read_config
from deepmovie.rundir import CHECKPOINT, CONFIG, ID_MAPS, MANIFEST, METRICS, REFIT, SEEN, SUMMARY, WEIGHTS

DEAD_PID = 2**22 + 1  # above the largest pid_max Linux allows: no process has it
EPOCHS = ("--set", "epochs=2")


@pytest.fixture(scope="module")
def ratings(tmp_path_factory) -> Path:
    return write_ratings(tmp_path_factory.mktemp("data") / "ratings.csv")


@pytest.fixture(scope="module")
def trained(ratings, tmp_path_factory) -> Path:
    """A finished run, to copy and damage."""
    out = tmp_path_factory.mktemp("trained") / "run"
    config = build_config({"model": "bias", "data": str(ratings), "params": {"epochs": 2}})
    experiment.run(config, out, quiet=True)
    return out


@pytest.fixture
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def test_a_write_cut_short_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / SUMMARY
    write_text(path, '{"test_rmse": 0.9}\n')

    def killed_mid_write(handle) -> None:
        handle.write(b'{"test_rm')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, killed_mid_write)
    assert path.read_text() == '{"test_rmse": 0.9}\n'
    assert [p.name for p in tmp_path.iterdir()] == [SUMMARY]


def test_a_run_whose_last_rename_fails_keeps_its_previous_summary(run, monkeypatch):
    before = (run / SUMMARY).read_bytes()
    replace = os.replace

    def failing(src, dst, **kwargs) -> None:
        if Path(dst).name == SUMMARY:
            raise OSError("disk full")
        replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        experiment.run(read_config(run), run, resume=True, quiet=True)
    assert (run / SUMMARY).read_bytes() == before
    assert not [p for p in run.rglob("*") if TEMPORARY.fullmatch(p.name)]


def test_every_file_of_a_run_and_a_bench_comes_through_the_writer(ratings, tmp_path, deepmovie, monkeypatch):
    renamed: set[Path] = set()
    replace = os.replace

    def spy(src, dst, **kwargs) -> None:
        if TEMPORARY.fullmatch(Path(src).name) and Path(src).parent == Path(dst).parent:
            renamed.add(Path(dst))
        replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", spy)
    run = tmp_path / "run"
    args = ("--data", ratings, "--split", "kfold:2", "--refit", "--rank-k", "5", *EPOCHS, "-q")
    assert deepmovie("train", "bias", *args, "--out", run).code == 0
    bench = tmp_path / "bench"
    stale = bench / "runs" / "bias-seed0" / f".{SUMMARY}.tmp{DEAD_PID}"  # a killed bench's
    stale.parent.mkdir(parents=True)
    stale.write_text("{")
    result = deepmovie(
        "bench", "bias", "--data", ratings, "--split", "random:0.2", *EPOCHS, "--out", bench, "-q"
    )
    assert result.code == 0, result.err
    files = [p for folder in (run, bench) for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {
        CONFIG,
        WEIGHTS,
        CHECKPOINT,
        SEEN,
        SUMMARY,
        "results.csv",
        "test-rmse.png",
    }
    assert (run / "fold-1" / REFIT / METRICS).is_file()
    assert [p for p in files if p not in renamed] == []  # nor is the stale temporary left


@pytest.mark.parametrize("command", ["train", "bench", "tune", "blend"])
def test_out_on_a_folder_of_other_files_is_refused_and_left_as_it_was(
    command, ratings, trained, tmp_path, deepmovie
):
    foreign = tmp_path / "project"
    (foreign / "src").mkdir(parents=True)
    (foreign / CONFIG).write_text("name: not a run of ours\n")
    (foreign / "notes.txt").write_text("keep me\n")
    (foreign / "src" / "main.py").write_text("print()\n")
    before = snapshot(foreign)
    args = {
        "train": ["train", "bias", "--data", ratings, *EPOCHS],
        "bench": ["bench", "bias", "--data", ratings, *EPOCHS],
        "tune": ["tune", "bias", "--trials", "1", "--data", ratings, *EPOCHS],
        "blend": ["blend", trained, trained],
    }[command]
    result = deepmovie(*args, "--out", foreign)
    assert_one_error_line(result, f"{foreign}: not empty and not a ")
    assert "(holds config.yaml, notes.txt, src)" in result.err and "--overwrite" in result.err
    assert snapshot(foreign) == before


def test_overwrite_takes_a_folder_of_other_files_and_leaves_them_there(ratings, tmp_path, deepmovie):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / CONFIG).write_text("name: not a run of ours\n")
    (folder / "notes.txt").write_text("keep me\n")
    assert (
        deepmovie("train", "bias", "--data", ratings, *EPOCHS, "--out", folder, "--overwrite", "-q").code == 0
    )
    assert read_config(folder).model == "bias"
    assert (folder / "notes.txt").read_text() == "keep me\n"


def test_a_run_of_another_model_is_refused_then_replaced_with_overwrite(ratings, tmp_path, deepmovie):
    run = tmp_path / "run"
    assert deepmovie("train", "bias", "--data", ratings, *EPOCHS, "--refit", "--out", run, "-q").code == 0
    before = snapshot(run)
    again = ("train", "biased-mf", "--data", ratings, *EPOCHS, "-q")
    assert_one_error_line(
        deepmovie(*again, "--out", run), f"{run}: holds a run of 'bias', not of 'biased-mf'"
    )
    assert snapshot(run) == before
    early = tmp_path / "killed-before-its-first-checkpoint"
    early.mkdir()
    shutil.copy(run / CONFIG, early / CONFIG)
    assert_one_error_line(deepmovie(*again, "--out", early), f"{early}: holds a run of 'bias'")
    (run / "notes.txt").write_text("mine\n")
    assert deepmovie(*again, "--out", run, "--overwrite").code == 0
    assert json.loads((run / SUMMARY).read_text())["model"] == "biased-mf"
    assert not (run / REFIT).exists()  # the earlier run's files went (its refit with them) ...
    assert (run / "notes.txt").read_text() == "mine\n"  # ... and only those


def test_save_claims_its_folder_as_train_does(run, tmp_path):
    recommender = Recommender.load(run)
    with pytest.raises(DeepMovieError, match="already holds a run of 'bias'"):
        recommender.save(run)
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.txt").write_text("keep me\n")
    with pytest.raises(DeepMovieError, match="not empty and not a DeepMovie run"):
        recommender.save(tmp_path / "project")
    recommender.save(run, overwrite=True)
    assert Recommender.load(run).predict(1, 1) == recommender.predict(1, 1)


def test_resume_continues_only_a_run_of_its_own_config(run, deepmovie):
    other = read_config(run).model_copy(update={"seed": 5})
    with pytest.raises(DeepMovieError, match=r"holds a run of another config \(seed differ\)"):
        experiment.run(other, run, resume=True, quiet=True)
    assert_one_error_line(deepmovie("train", "--resume", run, "--overwrite"), "are exclusive")
    assert deepmovie("train", "--resume", run, "-q").code == 0


def test_stale_temporaries_are_removed_when_a_run_is_resumed(run, deepmovie):
    killed = [run / f".{CHECKPOINT}.tmp{DEAD_PID}", run / f".{SEEN}.tmp{DEAD_PID}"]
    same_pid = run / f".{SUMMARY}.tmp{os.getpid()}"  # an earlier process's that had this pid
    working = run / f".{METRICS}.tmp{os.getppid()}"  # a live writer's: left alone
    for path in (*killed, same_pid, working):
        path.write_bytes(b"PK\x03")
    assert deepmovie("train", "--resume", run, "-q").code == 0
    assert [p for p in (*killed, same_pid) if p.exists()] == []
    assert working.exists()


DAMAGED = [  # (file, damage, command that meets it): serving never reads the checkpoint or the metrics
    *[
        (name, damage, command)
        for name, damage in [
            (SUMMARY, "empty"),
            (SUMMARY, "truncated"),
            (CONFIG, "empty"),
            (CONFIG, "truncated"),
            (WEIGHTS, "empty"),
            (WEIGHTS, "truncated"),
            (SEEN, "truncated"),
            (ID_MAPS, "truncated"),
            (MANIFEST, "truncated"),
        ]
        for command in ("recommend", "resume")
    ],
    (CHECKPOINT, "truncated", "resume"),
    (METRICS, "truncated", "resume"),
]


@pytest.mark.parametrize(("name", "damage", "command"), DAMAGED)
def test_a_damaged_file_is_named_in_one_error_line(name, damage, command, run, deepmovie):
    path = run / name
    whole = path.read_bytes()
    cut = len(whole) // 2
    while b"\n" in whole[cut - 1 : cut + 1]:  # inside a line: a cut at a line's end leaves whole lines
        cut -= 1
    path.write_bytes(b"" if damage == "empty" else whole[:cut])
    args = ["recommend", run, "--user", "1"] if command == "recommend" else ["train", "--resume", run, "-q"]
    assert_one_error_line(deepmovie(*args), str(path))


def test_a_config_cut_at_a_line_end_is_caught_by_the_summary_copy_on_resume(run, deepmovie):
    path = run / CONFIG
    path.write_text(path.read_text().split("params:")[0])  # parses: the model's defaults would train
    assert_one_error_line(deepmovie("train", "--resume", run, "-q"), f"{path}: disagrees with the config")


def test_a_damaged_run_stops_a_bench_in_one_line_and_overwrite_trains_it_again(ratings, tmp_path, deepmovie):
    bench = ("bench", "bias", "--data", ratings, "--split", "random:0.2", *EPOCHS, "--out", tmp_path, "-q")
    assert deepmovie(*bench).code == 0
    summary = tmp_path / "runs" / "bias-seed0" / SUMMARY
    summary.write_text("")  # as an in-place write cut by a kill left it
    assert_one_error_line(deepmovie(*bench), f"{summary}: damaged (empty)")
    assert deepmovie(*bench, "--overwrite").code == 0
    assert json.loads(summary.read_text())["model"] == "bias"


def test_a_tuning_folder_holds_one_study(ratings, tmp_path, deepmovie):
    args = ("--trials", "1", "--data", ratings, *EPOCHS, "--out", tmp_path, "-q")
    assert deepmovie("tune", "bias", *args).code == 0
    best = (tmp_path / "best.yaml").read_bytes()
    assert_one_error_line(
        deepmovie("tune", "biased-mf", *args), f"{tmp_path}: holds the study 'bias', not 'biased-mf'"
    )
    assert_one_error_line(
        deepmovie("tune", "bias", *args, "--seed", "1"), "started with another configuration"
    )
    assert (tmp_path / "best.yaml").read_bytes() == best
    assert deepmovie("tune", "bias", *args, "--seed", "1", "--overwrite").code == 0  # the study afresh
    assert "seed: 1" in (tmp_path / "best.yaml").read_text()
    assert deepmovie("tune", "biased-mf", *args, "--overwrite").code == 0
    assert "model: biased-mf" in (tmp_path / "best.yaml").read_text()


def test_item_texts_are_stored_in_proportion_to_their_length(tmp_path):
    """Titles and documents round-trip exactly (unicode, empty) and cost their UTF-8 bytes, not the
    longest text's width times every item (a fixed-width array made ml-latest-small's items.npz 96 MB)."""
    import deepmovie
    from deepmovie.rundir import ITEMS

    folder = tmp_path / "data"
    folder.mkdir()
    write_ratings(folder / "ratings.csv", n_users=20, n_items=200, density=0.2, seed=1)
    long_plot = "Ünïcode plot, " * 2000  # one 28,000-character document; the others are short
    write_movies(folder / "movies.csv", 200, ["Drama", "Comedy"])
    (folder / "docs.txt").write_text(f"1::{long_plot}\n2::\n3::日本語の映画\n")
    rec = deepmovie.fit(
        "popularity", data=folder, seed=0, device="cpu", config={"item_docs": str(folder / "docs.txt")}
    )
    run = rec.save(tmp_path / "run")
    assert (run / ITEMS).stat().st_size < 100_000  # fixed width: 200 x 28,000 x 4 bytes = 22 MB
    loaded = deepmovie.load(run).artifacts.items
    assert loaded.titles == rec.artifacts.items.titles and loaded.documents == rec.artifacts.items.documents
    assert long_plot.strip() in loaded.documents[rec.item_index(1)]
