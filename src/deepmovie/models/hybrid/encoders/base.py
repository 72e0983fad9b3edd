"""The encoder contract, its registry, and the pooling every encoder shares.

An encoder is any ``torch.nn.Module`` built as ``Encoder(vocab_size, out_dim, **params)`` whose
``forward(tokens)`` maps padded word ids ``(batch, length)`` (0 = padding) to ``(batch, out_dim)``
item vectors; a batch may be cut to its longest document, so padding must not change the output.
An encoder that reads the raw text instead defines ``featurize(documents) -> Tensor``
(one row per item, computed once); ``forward`` then receives batches of those rows. Built-in ones are
registered by name; ``module:package.module:ClassName`` loads any class with that signature, so a
user's own network plugs in without touching the project.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from deepmovie.errors import DeepMovieError
from deepmovie.registry import Registry

Encoder = torch.nn.Module
ENCODERS: Registry[type[torch.nn.Module]] = Registry("encoder")
PLUGIN = "module:"


def build_encoder(name: str, vocab_size: int, out_dim: int, params: dict[str, Any]) -> torch.nn.Module:
    """A registered encoder, or a user's class named ``module:package.module:ClassName``."""
    cls = _plugin(name) if name.startswith(PLUGIN) else ENCODERS.get(name)
    try:
        encoder = cls(vocab_size, out_dim, **params)
    except (TypeError, ValueError) as exc:
        raise DeepMovieError(f"encoder {name!r}: {exc} (encoder_params: {params})") from None
    if not isinstance(encoder, torch.nn.Module):
        raise DeepMovieError(f"encoder {name!r}: {cls.__name__} is not a torch.nn.Module")
    return encoder


def _plugin(name: str) -> type:
    path, _, attribute = name.removeprefix(PLUGIN).partition(":")
    if not path or not attribute:
        raise DeepMovieError(f"encoder {name!r}: expected module:package.module:ClassName")
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise DeepMovieError(f"encoder {name!r}: cannot import {path!r} ({exc})") from None
    cls = getattr(module, attribute, None)
    if not isinstance(cls, type):
        raise DeepMovieError(f"encoder {name!r}: {path!r} has no class {attribute!r}")
    return cls


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over time of ``x`` (batch, channels, length) at the real (unpadded) positions."""
    filled = x.masked_fill(~mask[:, None, : x.shape[-1]], -torch.inf)
    pooled = filled.max(dim=-1).values
    return torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled))  # empty documents: 0


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of ``x`` (batch, length, features) at the real positions."""
    weights = mask[..., None].to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1)


class WordEmbedding(torch.nn.Embedding):
    """Word vectors with the padding id fixed at zero."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__(vocab_size, dim, padding_idx=0)
