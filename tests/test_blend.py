"""Blending runs: weights fitted on the validation rows reproduce each member's own figures, never do
worse than the best member there, and runs that saw the validation rows or other rows are refused.
The blend's folder is a run directory of the ``blend`` model: it loads, predicts the test rows as the
blend scored them, recommends and serves, and a damaged one is one error line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import deepmovie
import deepmovie.blend as blending
from conftest import assert_one_error_line, write_ratings
from deepmovie.blend import blend, fit_weights
from deepmovie.config import build_config, parse_params
from deepmovie.data.interactions import RatingScale
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import prepare, run
from deepmovie.metrics import rmse
from deepmovie.models import MODELS, DataInfo
from deepmovie.recommender.artifacts import read_config
from deepmovie.recommender.recommender import read_weights
from deepmovie.serving.api import create_app


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


def test_a_refit_run_also_reports_its_validation_stopped_models_test_rmse(runs):
    """One refit run gives both figures: the twin's, and the model the no-refit run would have kept."""
    for name in ("mf", "bias"):
        plain, twin = summary_of(runs[name]), summary_of(runs[f"{name}-refit"])
        assert "test_rmse_before_refit" not in plain
        assert twin["test_rmse_before_refit"] == pytest.approx(plain["test_rmse"], abs=1e-6)
        assert twin["test_rmse"] != pytest.approx(plain["test_rmse"], abs=1e-6)


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


@pytest.fixture(scope="module")
def served(runs, tmp_path_factory) -> tuple[Path, dict]:
    """(folder, summary) of a blend of bias and biased-mf, whose members scored every test row."""
    out = tmp_path_factory.mktemp("served") / "blend"
    return out, blend([runs["bias"], runs["mf"]], out)


def loaded_test_rmse(path: Path) -> float:
    """The test RMSE of the blend loaded from ``path``, over the test rows its config cuts again."""
    dataset, (split,) = prepare(read_config(path))
    users, items = dataset.user_ids.raw[split.test.users], dataset.item_ids.raw[split.test.items]
    return rmse(deepmovie.load(path).predict_many(users, items), split.test.ratings)


def test_the_blend_folder_loads_and_predicts_the_test_rows_as_the_blend_did(served, runs):
    out, result = served
    assert summary_of(runs["bias"])["cold_test_rows"] == 0  # no row from the fallback: all the members'
    config = read_config(out)
    assert config.model == "blend" and not config.refit
    members = config.model_params().members
    assert [m.model for m in members] == ["bias", "biased-mf"]
    assert [m.weight for m in members] == pytest.approx([m["weight"] for m in result["members"]])
    assert config.model_params().intercept == pytest.approx(result["intercept"])
    assert loaded_test_rmse(out) == pytest.approx(result["test_rmse"], abs=1e-6)
    assert summary_of(out)["test_rmse"] == result["test_rmse"] and (out / "blend.md").is_file()


def test_a_loaded_blend_recommends_k_distinct_unseen_items_and_serves_them(served):
    out, _ = served
    loaded = deepmovie.load(out)
    user = loaded.artifacts.user_ids.raw[0].item()
    result = loaded.recommend(user, k=5)
    items = [m.item for m in result.items]
    assert len(set(items)) == 5 and not set(items) & {r.item for r in loaded.history(user).ratings}
    stars = loaded.predict_many([user] * 5, items)  # the ranking's scores are the blend's predictions
    assert [m.rating for m in result.items] == pytest.approx(stars.tolist(), abs=1e-4)
    client = TestClient(create_app(loaded))
    assert client.get("/health").json()["model"] == "blend"
    answer = client.get("/recommend", params={"user": user, "k": 3})
    assert answer.status_code == 200 and [m["item"] for m in answer.json()["items"]] == items[:3]


def test_cli_commands_take_a_blend_folder_and_name_a_damaged_one_in_one_line(served, tmp_path, deepmovie):
    copy = Path(shutil.copytree(served[0], tmp_path / "blend"))
    assert deepmovie("recommend", copy, "--user", 1, "-k", 3).code == 0
    assert deepmovie("predict", copy, "--user", 1, "--item", 1).out.endswith("stars  user 1, 1\n")
    weights = (copy / "model.pt").read_bytes()
    (copy / "model.pt").write_bytes(weights[: len(weights) // 2])
    assert_one_error_line(deepmovie("recommend", copy, "--user", 1), "model.pt: not a readable checkpoint")
    (copy / "model.pt").write_bytes(weights)
    config = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(re.sub(r"factors: \d+", "factors: 3", config, count=1))
    assert_one_error_line(
        deepmovie("predict", copy, "--user", 1, "--item", 1),
        "model.pt: does not fit this 'blend' configuration",
    )


def test_a_blend_with_twins_serves_the_twins_weights_and_rewrites_an_earlier_blend(served, runs, tmp_path):
    out = Path(shutil.copytree(served[0], tmp_path / "blend"))
    result = blend([runs["bias"], runs["mf"]], out, twins=[runs["bias-refit"], runs["mf-refit"]])
    assert read_config(out).refit  # its models trained on train + valid
    assert summary_of(out) == json.loads(json.dumps(result))
    state = read_weights(out / "model.pt", "blend")
    for n, twin in enumerate(["bias-refit", "mf-refit"]):
        own = read_weights(runs[twin] / "model.pt", read_config(runs[twin]).model)
        assert all(torch.equal(state[f"members.{n}.{k}"], v) for k, v in own.items())
    assert loaded_test_rmse(out) == pytest.approx(result["test_rmse"], abs=1e-6)
    assert "each refit twin's weights" in (out / "blend.md").read_text()
    with pytest.raises(DeepMovieError, match="a blend, its weights fitted on the validation rows"):
        blend([out, runs["bias"]])


def test_blend_params_give_equal_shares_and_pin_or_refuse_each_members_settings():
    params = parse_params(
        "blend", {"members": [{"model": "bias"}, {"model": "pmf", "params": {"factors": 3}}]}
    )
    assert [m.weight for m in params.members] == [0.5, 0.5]
    assert params.members[1].params["factors"] == 3 and "reg_user" in params.members[1].params
    with pytest.raises(DeepMovieError, match=r"members\.0\.params.*bias parameter 'reg_user'"):
        parse_params("blend", {"members": [{"model": "bias", "params": {"reg_user": -1}}]})
    with pytest.raises(DeepMovieError, match="unknown model 'nope'"):
        parse_params("blend", {"members": [{"model": "nope"}]})


def test_a_blend_is_sized_with_all_its_members_and_takes_rating_models_only():
    info = DataInfo(100, 50, RatingScale(1, 5, 0.5), 3.5)
    blend_class, params = MODELS.get("blend"), parse_params("blend", {})
    built = blend_class(params, info)
    count = sum(t.numel() for m in built.members for t in (*m.parameters(), *m.buffers()))
    with pytest.raises(DeepMovieError, match=rf"blend: {count:,} weights need .* over the 1 kB limit"):
        blend_class.check_size(params, info, max_memory=1000)
    with pytest.raises(DeepMovieError, match="blend member 'ease': its task is 'implicit'"):
        blend_class(parse_params("blend", {"members": [{"model": "ease"}]}), info)
