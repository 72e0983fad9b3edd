"""Blending runs: weights fitted on the validation rows reproduce each member's own figures, never do
worse than the best member there, and runs that saw the validation rows or other rows are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import deepmovie.blend as blending
from conftest import write_ratings
from deepmovie.blend import blend, fit_weights
from deepmovie.config import build_config
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Small runs on one split (and one on another seed), trained once for every test here."""
    folder = tmp_path_factory.mktemp("blend")
    data = str(write_ratings(folder / "ratings.csv", n_users=80, n_items=60, density=0.3))
    specs = {
        "bias": ("bias", {}, {}),
        "mf": ("biased-mf", {"epochs": 15, "lr": 0.02}, {}),
        "autorec": ("autorec", {"epochs": 15, "hidden": 16, "reg": 1.0}, {}),
        "mf-refit": ("biased-mf", {"epochs": 15, "lr": 0.02}, {"refit": True}),
        "bias-refit": ("bias", {}, {"refit": True}),
        "bias-seed-1": ("bias", {}, {"seed": 1}),
    }
    paths = {}
    for name, (model, params, fields) in specs.items():
        paths[name] = folder / name
        config = build_config({"model": model, "data": data, "device": "cpu", "params": params, **fields})
        run(config, paths[name], quiet=True)
    return paths


def summary_of(path: Path) -> dict:
    return json.loads((path / "summary.json").read_text())


def test_weights_fit_on_valid_match_or_beat_every_member_there(runs, tmp_path, monkeypatch):
    fitted = []
    monkeypatch.setattr(
        blending, "fit_weights", lambda x, y, ridge: fitted.append(len(y)) or fit_weights(x, y, ridge)
    )
    members = [runs["bias"], runs["mf"], runs["autorec"]]
    result = blend(members, tmp_path / "out", ridge=0.0)
    assert fitted == [result["n_valid"]]
    for member, path in zip(result["members"], members, strict=True):
        own = summary_of(path)  # the blend's predictions are the run's own: same figures
        assert member["valid_rmse"] == pytest.approx(own["valid_rmse"], abs=1e-6)
        assert member["test_rmse"] == pytest.approx(own["test_rmse"], abs=1e-6)
    assert result["valid_rmse"] <= min(m["valid_rmse"] for m in result["members"]) + 1e-9
    assert result["n_test"] == summary_of(runs["bias"])["n_test"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["test_rmse"] == result["test_rmse"]
    assert f"**{result['test_rmse']:.4f}**" in (tmp_path / "out" / "blend.md").read_text()


def test_fit_weights_recovers_a_known_combination():
    rng = np.random.default_rng(0)
    x = rng.normal(3, 1, size=(500, 2))
    y = 0.5 + 0.7 * x[:, 0] + 0.2 * x[:, 1]
    weights, intercept = fit_weights(x, y, ridge=0.0)
    assert weights == pytest.approx([0.7, 0.2])
    assert intercept == pytest.approx(0.5)


def test_a_refit_run_is_refused_as_a_member_but_serves_as_a_twin(runs):
    with pytest.raises(DeepMovieError, match="--refit"):
        blend([runs["bias"], runs["mf-refit"]])
    with pytest.raises(DeepMovieError, match="not a refit twin"):
        blend([runs["bias"], runs["mf"]], twins=[runs["bias"], runs["mf-refit"]])
    result = blend([runs["bias"], runs["mf"]], twins=[runs["bias-refit"], runs["mf-refit"]])
    for member, twin in zip(result["members"], ["bias-refit", "mf-refit"], strict=True):
        assert member["test_rmse"] == pytest.approx(summary_of(runs[twin])["test_rmse"], abs=1e-6)
        assert member["twin"] == str(runs[twin])


def test_runs_of_another_split_are_refused(runs):
    with pytest.raises(DeepMovieError, match="different rows"):
        blend([runs["bias"], runs["bias-seed-1"]])
    with pytest.raises(DeepMovieError, match="at least two"):
        blend([runs["bias"]])
