"""Feature-based models (fm, dlrm, dcn): the feature pipeline, the FM identity, tables, tasks."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_ratings
from deepmovie.config import build_config, load_config_file
from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.data.side import ItemInfo, UserInfo
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import run
from deepmovie.models import MODELS, DataInfo
from deepmovie.models.features.fields import hash_codes
from deepmovie.models.features.fm import naive_pairwise, pairwise_interaction

ROOT = Path(__file__).resolve().parents[1]
N_USERS, N_ITEMS = 4, 5


def items_info() -> ItemInfo:
    """Five items: genres A; A|B; none; B; A|B|C; years 1990, 1996, unknown, 2001, 1990; tags."""
    genres = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0], [1, 1, 1]], dtype=np.uint8)
    years = np.array([1990, 1996, 0, 2001, 1990], dtype=np.int16)
    tags = [["funny"], ["dark", "funny"], [], ["dark"], ["rare"]]
    return ItemInfo(list("abcde"), years, ["A", "B", "C"], genres, tags, np.ones(5, dtype=bool))


def users_info() -> UserInfo:
    fields = {
        "gender": (np.array([1, 2, 1, 2]), ["<unknown>", "F", "M"]),
        "occupation": (np.array([1, 1, 2, 3]), ["<unknown>", "artist", "doctor", "writer"]),
    }
    return UserInfo(fields, np.ones(4, dtype=bool))


def info() -> DataInfo:
    return DataInfo(N_USERS, N_ITEMS, RatingScale(1, 5), 3.5, items_info(), users_info())


def train_rows() -> Interactions:
    """Users 0-2 and items 0-3 only: user 3 (the only writer) and item 4 (the only 'rare'/C) are unseen."""
    users = np.array([0, 0, 0, 1, 1, 2, 2, 2], dtype=np.int32)
    items = np.array([0, 1, 3, 0, 2, 1, 2, 3], dtype=np.int32)
    ratings = np.array([5, 4, 2, 4, 1, 5, 3, 2], dtype=np.float32)
    return Interactions(users, items, ratings, N_USERS, N_ITEMS)


def build(name: str = "fm", data_info: DataInfo | None = None, **params):
    cls = MODELS.get(name)
    torch.manual_seed(0)
    model = cls(cls.Params(**{"dim": 3, "init_std": 0.3, **params}), data_info or info())
    model.prepare(train_rows(), seed=0)
    return model


@pytest.fixture(scope="module")
def structured_csv(tmp_path_factory):
    return write_ratings(
        tmp_path_factory.mktemp("features") / "ratings.csv", n_users=120, n_items=100, density=0.35, seed=5
    )


def fit(data: Path, model: str, params: dict, split: str = "random:0.2") -> dict:
    config = build_config({"model": model, "data": str(data), "split": split, "params": params})
    return run(config, None, quiet=True)


def test_the_o_kn_identity_equals_the_naive_pairwise_sum():
    generator = torch.Generator().manual_seed(1)
    vectors = torch.randn(3, 7, 4, generator=generator)
    values = torch.rand(3, 7, generator=generator)
    fast = pairwise_interaction(
        (vectors * values[..., None]).sum(1), (vectors**2 * values[..., None] ** 2).sum(1)
    )
    slow = torch.stack([naive_pairwise(vectors[r], values[r]) for r in range(3)])
    torch.testing.assert_close(fast, slow)


def test_fm_scores_every_active_feature_as_the_definition_says():
    """The vectorized model equals w0 + sum w_i x_i + sum_{i<j} <v_i,v_j> x_i x_j over explicit features."""
    model = build("fm", max_rows=0)
    users, items = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 4, 0, 2])
    with torch.no_grad():
        got = model.predict(users, items)
        dense = model.dense_features(users, items)
    for r in range(len(users)):
        rows, values = [], []
        u, i = int(users[r]), int(items[r])
        k_user = k_item = 0
        for spec in model.one_hot:
            if spec.side == "user":
                row, k_user = int(model.user_rows[u, k_user]), k_user + 1
            else:
                row, k_item = int(model.item_rows[i, k_item]), k_item + 1
            rows.append(model.tables[spec.name].weight[row])
            values.append(1.0)
        for spec in model.bags:
            for row, weight in zip(
                getattr(model, f"bag_rows_{spec.name}")[i],
                getattr(model, f"bag_weights_{spec.name}")[i],
                strict=True,
            ):
                if weight > 0:
                    rows.append(model.tables[spec.name].weight[int(row)])
                    values.append(float(weight))
        for d in range(dense.shape[1]):
            rows.append(model.dense_vectors[d])
            values.append(float(dense[r, d]))
        table, x = torch.stack(rows).detach(), torch.tensor(values)
        expected = model.offset + (table[:, 0] * x).sum() + naive_pairwise(table[:, 1:], x)
        torch.testing.assert_close(got[r], expected.float(), rtol=1e-5, atol=1e-5)


def test_dense_features_come_from_the_training_rows_only(structured_csv):
    from deepmovie.data.dataset import load_dataset
    from deepmovie.experiment import build_model
    from deepmovie.splits import make_splits

    dataset = load_dataset(str(structured_csv))
    split = make_splits(dataset, "random:0.2", 0, 0.1)[0]
    config = build_config({"model": "fm", "data": str(structured_csv), "params": {"dim": 2}})
    model = build_model(config, dataset, split, torch.device("cpu"))
    model.prepare(split.train, seed=0)
    train = split.train
    counts = np.bincount(train.items, minlength=dataset.n_items)
    sums = np.bincount(train.items, weights=train.ratings, minlength=dataset.n_items)
    np.testing.assert_allclose(model.item_count.numpy(), counts)
    np.testing.assert_allclose(model.item_sum.numpy(), sums, rtol=1e-5)
    assert model.rating_mean.item() == pytest.approx(float(train.ratings.mean()), rel=1e-5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # The held-out rows' ratings cannot move anything: change them all and prepare again.
    held_out = split.valid.concat(split.test)
    changed = Interactions(
        held_out.users, held_out.items, 6 - held_out.ratings, dataset.n_users, dataset.n_items
    )
    assert len(changed) and not np.array_equal(changed.ratings, held_out.ratings)
    model.prepare(train, seed=0)
    for name in ("item_count", "item_sum", "user_sum", "dense_mean", "dense_std", "offset"):
        torch.testing.assert_close(model.state_dict()[name], before[name])
    # ... whereas fitting on every row would have given other statistics (the check can fail).
    model.prepare(train.concat(changed), seed=0)
    assert not torch.allclose(model.item_sum, before["item_sum"])


def test_training_rows_leave_their_own_rating_out_of_the_mean_features():
    model = build("fm", dense=["user_mean", "item_mean"], mean_damping=0.0)
    users, items, ratings = torch.tensor([0]), torch.tensor([0]), torch.tensor([5.0])
    raw_full = model.dense_features(users, items, None, standardize=False)[0]
    raw_loo = model.dense_features(users, items, ratings, standardize=False)[0]
    assert raw_full[0].item() == pytest.approx((5 + 4) / 2)  # item 0: ratings 5 and 4
    assert raw_loo[0].item() == pytest.approx(4.0)  # without the row's own 5
    assert raw_full[1].item() == pytest.approx((5 + 4 + 2) / 3)  # user 0
    assert raw_loo[1].item() == pytest.approx((4 + 2) / 2)
    # ... and the training loss is computed on those leave-one-out features, not on the full ones.
    _, squared = model.batch_loss(users, items, ratings)
    loo_out, _ = model.logits(users, items, ratings)
    full_out = model.predict(users, items)
    assert float(squared.detach()) == pytest.approx(float(((loo_out.detach() - 5.0) ** 2).sum()), rel=1e-5)
    assert float(squared.detach()) != pytest.approx(float(((full_out.detach() - 5.0) ** 2).sum()), rel=1e-3)


def test_unseen_users_items_and_categories_map_to_the_reserved_row():
    model = build("fm")
    names = [s.name for s in model.one_hot]
    user_rows = dict(
        zip([s.name for s in model.one_hot if s.side == "user"], model.user_rows[3], strict=True)
    )
    assert user_rows["user"] == 0 and user_rows["occupation"] == 0  # unseen user; 'writer' only there
    assert user_rows["gender"] != 0  # 'F' has training rows through user 1
    item_rows = dict(
        zip([s.name for s in model.one_hot if s.side == "item"], model.item_rows[4], strict=True)
    )
    assert item_rows["item"] == 0
    assert item_rows["year"] != 0  # 1990 is the bucket of item 0 as well
    assert "genres" in [s.name for s in model.bags] and "tags" in [s.name for s in model.bags]
    assert model.bag_rows_genres[4].tolist().count(0) >= 1  # genre C: no training item has it
    assert model.bag_rows_tags[4].tolist() == [0, 0]  # 'rare' is unseen; padding is row 0 too
    assert set(names) == {"user", "item", "year", "gender", "occupation"}
    for table in model.tables.values():
        assert float(table.weight[0].detach().abs().sum()) == 0.0
    with torch.no_grad():
        assert torch.isfinite(model.predict(torch.tensor([3]), torch.tensor([4]))).all()


def test_size_cap_keeps_the_most_frequent_and_hashing_spreads_over_the_rows():
    capped = build("fm", max_rows=3, fields=["user", "item"])
    item = next(s for s in capped.layout.fields if s.name == "item")
    assert item.rows == 3 and item.vocab == N_ITEMS + 1 and not item.hashed
    assert capped.tables["item"].weight.shape == (3, 4)
    # training counts: item 0: 2, item 1: 2, item 2: 2, item 3: 2 -> ties keep code order: items 0, 1
    assert capped.item_rows[:, 0].tolist() == [1, 2, 0, 0, 0]
    hashed = build("fm", max_rows=3, hashing=True, fields=["user", "item"])
    rows = hashed.item_rows[:, 0].tolist()
    assert hashed.layout.fields[1].hashed
    assert all(1 <= r <= 2 for r in rows[:4]) and rows[4] == 0  # seen items hashed, unseen reserved
    codes = np.arange(1, 10_000)
    spread = np.bincount(hash_codes(codes, 101, "item"), minlength=101)
    assert spread[0] == 0 and spread[1:].min() > 50  # row 0 stays reserved; buckets are used evenly


def test_table_layout_offsets_and_shards_cover_every_row():
    layout = build("dlrm").layout
    sizes = [s.rows for s in layout.fields]
    assert layout.offsets == [0, *np.cumsum(sizes)[:-1].tolist()]
    assert layout.total_rows == sum(sizes)
    ranges = layout.row_ranges(3)
    assert ranges[0][0] == 0 and ranges[-1][1] == layout.total_rows
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    placed = layout.place_tables(2)
    assert sorted(n for rank in placed for n in rank) == sorted(s.name for s in layout.fields)
    assert "rows" in layout.describe()
    with pytest.raises(DeepMovieError, match="world_size"):
        layout.place_tables(0)


@pytest.mark.parametrize("name", ["fm", "dlrm", "dcn"])
def test_like_task_predicts_probabilities_and_trains_by_cross_entropy(name):
    model = build(name, task="like")
    model.eval()  # dropout off: the loss and the logits below see the same network
    assert model.task == "like" and model.like_rating == 4.0
    assert model.offset.item() == pytest.approx(np.log(4 / 4))  # 4 of 8 training ratings are >= 4
    users, items = torch.tensor([0, 1, 2, 3, 2]), torch.tensor([0, 1, 2, 3, 4])
    ratings = torch.tensor([5.0, 1, 4, 3, 2])
    probabilities = model.predict(users, items).detach()
    assert bool(((probabilities > 0) & (probabilities < 1)).all())
    objective, second = model.batch_loss(users, items, ratings)
    logits, _ = model.logits(users, items, ratings)
    target = (ratings >= 4).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    assert float(second.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert float(objective.detach()) >= float(second.detach())


@pytest.mark.parametrize(
    ("name", "params", "margin"),
    [
        ("fm", {"dim": 4, "epochs": 30, "lr": 0.05, "reg": 0.001}, 0.05),
        (
            "dlrm",
            {
                "dim": 4,
                "epochs": 30,
                "lr": 0.003,
                "bottom": [8],
                "top": [16],
                "optimizer": "adam",
                "reg": 0.0,
                "dropout": 0.0,
            },
            0.03,
        ),
        (
            "dcn",
            {
                "dim": 4,
                "epochs": 30,
                "lr": 0.003,
                "cross_layers": 2,
                "deep": [16],
                "optimizer": "adam",
                "reg": 0.0,
                "dropout": 0.0,
            },
            0.03,
        ),
    ],
)
def test_models_learn_a_planted_signal(structured_csv, name, params, margin):
    bias = fit(structured_csv, "bias", {})["test_rmse"]
    got = fit(structured_csv, name, {"batch_size": 256, "patience": 3, **params})["test_rmse"]
    assert got < bias - margin


def test_like_task_ranks_liked_rows_first_on_planted_data(structured_csv):
    summary = fit(
        structured_csv, "fm", {"task": "like", "dim": 4, "reg": 0.01, "epochs": 20, "batch_size": 256}
    )
    assert summary["monitor"] == "auc"
    assert summary["test_auc"] > 0.8 and 0 < summary["test_logloss"] < np.log(2)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"hashing": True}, "max_rows"),
        ({"max_rows": 1}, "max_rows"),
        ({"fields": ["user", "colour"]}, "fields"),
        ({"fields": ["user", "user"]}, "twice"),
        ({"task": "clicks"}, "task"),
        ({"dense": ["year"]}, "year"),
        ({"fields": ["user", "tags"]}, "tags"),
        ({"fields": []}, "fields"),
    ],
)
def test_bad_settings_fail_with_a_clear_message(structured_csv, params, match):
    with pytest.raises(DeepMovieError, match=match):
        fit(structured_csv, "fm", {"epochs": 1, **params})


PRESETS = sorted(p for name in ("fm", "dlrm", "dcn") for p in (ROOT / "configs").glob(f"{name}-*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_presets_are_valid_configs(path):
    values = load_config_file(path)
    assert values["model"] in {"fm", "dlrm", "dcn"}
    config = build_config(values)
    assert config.model_params().epochs >= 1
