"""Deep matrix factorization: shapes, side features, heads and batch norm, on tiny data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_movies, write_ratings
from deepmovie.config import build_config, load_config_file
from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.data.side import ItemInfo, UserInfo
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import run
from deepmovie.models import MODELS, DataInfo

ROOT = Path(__file__).resolve().parents[1]


def items_info() -> ItemInfo:
    """Four items: A; A|B; none; B, with years 1990, 1996, unknown, 2001."""
    genres = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], dtype=np.uint8)
    years = np.array([1990, 1996, 0, 2001], dtype=np.int16)
    return ItemInfo(["a", "b", "c", "d"], years, ["A", "B"], genres, [[]] * 4, np.ones(4, dtype=bool))


def users_info() -> UserInfo:
    fields = {
        "gender": (np.array([1, 2, 1]), ["<unknown>", "F", "M"]),
        "age": (np.array([1, 2, 3]), ["<unknown>", "18", "25", "35"]),
        "occupation": (np.array([0, 1, 1]), ["<unknown>", "writer"]),
    }
    return UserInfo(fields, np.ones(3, dtype=bool))


def info(items=None, users=None, scale=None) -> DataInfo:
    return DataInfo(3, 4, scale or RatingScale(1, 5), 3.5, items, users)


def build(data_info: DataInfo, model: str = "deepmf", **params):
    cls = MODELS.get(model)
    return cls(cls.Params(**params), data_info)


def pairs():
    return torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 1, 2, 3, 3, 1])


@pytest.fixture(scope="module")
def structured_csv(tmp_path_factory):
    return write_ratings(
        tmp_path_factory.mktemp("deep") / "ratings.csv", n_users=120, n_items=100, density=0.35, seed=5
    )


@pytest.fixture
def movielens_folder(tmp_path):
    """A tiny ML-latest-style folder: ratings.csv plus movies.csv with years and multi-genre items."""
    write_ratings(tmp_path / "ratings.csv", n_users=25, n_items=20, density=0.5, seed=2)
    write_movies(tmp_path / "movies.csv", 20, ["Action", "Comedy", "Drama", "Horror"])
    return tmp_path


def fit(data: Path, model: str, params: dict, split: str = "random:0.2") -> dict:
    config = build_config({"model": model, "data": str(data), "split": split, "params": params})
    return run(config, None, quiet=True)


def test_deepmf_beats_the_bias_baseline_on_structured_data(structured_csv):
    bias = fit(structured_csv, "bias", {})["test_rmse"]
    deep = fit(
        structured_csv,
        "deepmf",
        {
            "user_dim": 8,
            "item_dim": 8,
            "hidden": [16],
            "lr": 0.01,
            "epochs": 40,
            "batch_size": 256,
            "reg": 0.0,
        },
    )["test_rmse"]
    assert deep < bias - 0.03


def test_asymmetric_dims_and_side_features_build_the_right_shapes():
    model = build(
        info(items_info(), users_info()),
        user_dim=3,
        item_dim=5,
        hidden=[7, 4],
        genre_dim=2,
        year_dim=2,
        user_feature_dim=1,
    )
    assert model.user_factors.weight.shape == (3, 3)
    assert model.item_factors.weight.shape == (4, 5)
    assert model.mlp[0].in_features == 3 + 5 + 2 + 2 + 1 * 3
    assert model.out.in_features == 4 and model.out.out_features == 1
    x, _, _ = model.features(*pairs())
    assert x.shape == (6, 15)
    assert model.year_buckets.tolist() == [1, 2, 0, 3]  # 5-year buckets from 1990; 0 = unknown


def test_genre_feature_averages_all_of_an_items_genres():
    model = build(info(items_info()), user_dim=2, item_dim=2, hidden=[4], genre_dim=3)
    items = torch.arange(4)
    vectors = model.genre_embedding(model.genre_weights[items]).detach()
    table = model.genre_embedding.weight.detach().T  # (n_genres, genre_dim)
    torch.testing.assert_close(vectors[0], table[0])
    torch.testing.assert_close(vectors[1], (table[0] + table[1]) / 2)  # both genres count
    torch.testing.assert_close(vectors[2], torch.zeros(3))  # no genre: zero vector
    assert not torch.allclose(vectors[1], vectors[0]) and not torch.allclose(vectors[1], vectors[3])


def test_side_features_train_end_to_end_on_a_movielens_folder(movielens_folder):
    summary = fit(
        movielens_folder,
        "deepmf",
        {"user_dim": 4, "item_dim": 6, "hidden": [8], "genre_dim": 3, "year_dim": 2, "epochs": 3},
    )
    assert np.isfinite(summary["test_rmse"])


def test_classification_head_predicts_the_expected_level_and_the_argmax():
    scale = RatingScale(0.5, 5.0, 0.5)
    model = build(info(scale=scale), user_dim=3, item_dim=3, hidden=[5], head="classification")
    model.eval()
    users, items = pairs()
    with torch.no_grad():
        logits = model.scores(users, items)[0]
        expected = model.predict(users, items)
        argmax = model.predict_argmax(users, items)
    assert logits.shape == (6, 10)
    levels = torch.as_tensor(scale.levels)
    torch.testing.assert_close(expected, torch.softmax(logits, -1) @ levels)
    assert bool(((expected >= 0.5) & (expected <= 5.0)).all())
    assert set(argmax.tolist()) <= set(scale.levels.tolist())
    torch.testing.assert_close(argmax, levels[logits.argmax(-1)])
    with pytest.raises(DeepMovieError, match="predict_argmax"):
        build(info(), user_dim=2, item_dim=2, hidden=[2]).predict_argmax(users, items)


def test_classification_head_trains_by_cross_entropy(structured_csv):
    summary = fit(
        structured_csv,
        "deepmf",
        {"user_dim": 4, "item_dim": 4, "hidden": [8], "head": "classification", "epochs": 3},
    )
    assert 0 < summary["test_rmse"] < 2
    # Both predictions are reported: argmax levels are coarser than the expected value.
    assert 0 < summary["test_accuracy"] < 1
    assert summary["test_argmax_rmse"] > summary["test_rmse"]
    model = build(info(), user_dim=2, item_dim=2, hidden=[4], head="classification", reg=0.0)
    users, items = pairs()
    ratings = torch.tensor([1.0, 2, 3, 4, 5, 3])
    objective, squared = model.batch_loss(users, items, ratings)
    logits = model.scores(users, items)[0]
    target = (ratings - 1).long()
    assert float(objective.detach()) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits.detach(), target, reduction="sum"))
    )
    assert float(squared.detach()) == pytest.approx(
        float(((model.predict(users, items).detach() - ratings) ** 2).sum())
    )


@pytest.mark.parametrize(
    ("params", "data_info", "name"),
    [
        ({"genre_dim": 2}, info(), "genre_dim"),
        ({"year_dim": 2}, info(), "year_dim"),
        ({"user_feature_dim": 2}, info(items_info()), "user_feature_dim"),
        ({"user_feature_dim": 2, "user_fields": ["zip_prefix"]}, info(users=users_info()), "user_fields"),
        ({"head": "classification"}, info(scale=RatingScale(0, 1, 0.0)), "classification"),
    ],
)
def test_missing_side_data_raises_an_error_naming_the_param(params, data_info, name):
    with pytest.raises(DeepMovieError, match=name):
        build(data_info, user_dim=2, item_dim=2, hidden=[2], **params)


def test_missing_genres_fail_through_the_config_path(structured_csv):
    with pytest.raises(DeepMovieError, match="genre_dim"):
        fit(structured_csv, "deepmf", {"genre_dim": 4, "epochs": 1})


def test_batch_norm_variant_trains_and_eval_mode_is_deterministic():
    model = build(info(), user_dim=3, item_dim=3, hidden=[6, 6], batch_norm=True, dropout=0.3)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.mlp)
    rng = np.random.default_rng(0)
    data = Interactions(
        rng.integers(0, 3, 40).astype(np.int32),
        rng.integers(0, 4, 40).astype(np.int32),
        rng.integers(1, 6, 40).astype(np.float32),
        3,
        4,
    )
    model.params.batch_size = 8
    model.prepare(data, seed=0)
    model.train()
    assert np.isfinite(model.train_epoch(0))
    model.eval()
    users, items = pairs()
    with torch.no_grad():
        first, second = model.predict(users, items), model.predict(users, items)
        alone = model.predict(users[:1], items[:1])
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(alone, first[:1])  # eval mode: a pair's score ignores its batch


@pytest.mark.parametrize("name", ["deepmf-lab.yaml", "deepmf-tutorial.yaml"])
def test_presets_are_valid_configs(name):
    config = build_config(load_config_file(ROOT / "configs" / name))
    assert config.model == "deepmf"


@pytest.mark.parametrize("model", ["gmf", "ncf-mlp", "neumf"])
def test_ncf_models_beat_the_bias_baseline(structured_csv, model):
    bias = fit(structured_csv, "bias", {})["test_rmse"]
    params = {"factors": 8, "hidden": [16, 8], "lr": 0.01, "reg": 0.05, "epochs": 40, "patience": 0}
    assert fit(structured_csv, model, params)["test_rmse"] < bias - 0.02


def test_neumf_starts_from_the_pretrained_towers():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 3, 30), rng.integers(0, 4, 30)
    train = Interactions(users, items, rng.integers(1, 6, 30).astype(np.float32), 3, 4)
    params = {"factors": 3, "hidden": [4, 2], "biases": False, "lr": 0.05}
    # alpha = 1: NeuMF's output layer is GMF's, the MLP tower's share is zero.
    neumf = build(info(), "neumf", **params, pretrain_epochs=3, alpha=1.0)
    neumf.prepare(train, seed=0)
    torch.manual_seed(0)
    gmf = build(info(), "gmf", **params)
    gmf.prepare(train, seed=0)
    for epoch in (1, 2, 3):
        gmf.train_epoch(epoch)
    u, i = pairs()
    with torch.no_grad():
        torch.testing.assert_close(neumf.predict(u, i), gmf.predict(u, i))
        assert not torch.allclose(neumf.predict(u, i), build(info(), "neumf", **params).predict(u, i))
