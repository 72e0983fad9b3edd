"""Item documents as padded token ids: the input every text encoder of the hybrid model reads.

As ConvMF: lower-cased word tokens, words in more than ``max_df`` of the documents dropped (they carry
no item-specific signal), the ``max_words`` most frequent remaining words kept, each document cut to
``max_length`` tokens. Id 0 pads; out-of-vocabulary words are dropped, not mapped to an UNK id.

Words in fewer than ``min_df`` documents are dropped too: a word of one document only (a title word,
say) teaches nothing that carries to another item, and it lets an encoder memorize that item's
factors, which turns the text prior into no regularization at all.

Tokenizing real plots takes a second or so (ml-latest-small: 0.7 s), and the hybrid is built twice per
fit and per load (a size check on PyTorch's meta device, then for real), so results are cached in memory,
per process, by the documents and settings (the last ``CACHE_SIZE``); a cached result is shared, so
its arrays are read-only.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepmovie.errors import DeepMovieError

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
PAD = 0
CACHE_SIZE = 2  # document sets (with their settings) kept tokenized: ml-latest-small's take 23 MB


@dataclass(frozen=True)
class TokenizedDocuments:
    """``tokens[i]``: item ``i``'s word ids, padded with 0 to the longest kept document."""

    tokens: np.ndarray  # (n_items, length) int64, read-only
    vocabulary: tuple[str, ...]  # word of id 1, 2, ... (id 0 is the padding)

    @property
    def vocab_size(self) -> int:
        """Ids an embedding table needs, the padding included."""
        return len(self.vocabulary) + 1


def tokenize(
    documents: Sequence[str],
    max_length: int = 300,
    max_df: float = 0.5,
    max_words: int = 8000,
    min_df: int = 1,
) -> TokenizedDocuments:
    """Word ids of every document, with the vocabulary built from the documents themselves."""
    if not 0 < max_df <= 1:
        raise DeepMovieError(f"max_df: expected a share in (0, 1], got {max_df}")
    if min_df < 1:
        raise DeepMovieError(f"min_df: expected a document count >= 1, got {min_df}")
    return _tokenize(tuple(documents), max_length, max_df, max_words, min_df)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _tokenize(
    documents: tuple[str, ...], max_length: int, max_df: float, max_words: int, min_df: int
) -> TokenizedDocuments:
    words = [WORD.findall(text.lower()) for text in documents]
    document_frequency = Counter(w for ws in words for w in set(ws))
    limit = max_df * len(documents)
    # Most frequent first, ties by the word itself: set order changes with the process's hash seed,
    # and the vocabulary (so every hybrid result) must not.
    ranked = sorted(document_frequency.items(), key=lambda pair: (-pair[1], pair[0]))
    kept = [w for w, n in ranked if min_df <= n <= limit and (max_df == 1 or n < len(documents))]
    vocabulary = tuple(kept[:max_words])
    if not vocabulary:
        raise DeepMovieError("item documents: no word is left after the document-frequency filter")
    index = {w: i + 1 for i, w in enumerate(vocabulary)}
    ids = [[index[w] for w in ws if w in index][:max_length] for ws in words]
    length = max(1, max(len(i) for i in ids))
    tokens = np.zeros((len(ids), length), dtype=np.int64)
    for row, item_ids in enumerate(ids):
        tokens[row, : len(item_ids)] = item_ids
    tokens.setflags(write=False)
    return TokenizedDocuments(tokens, vocabulary)
