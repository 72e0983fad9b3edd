"""Peer libraries on the bench's own split, each in its own module: ``--peers surprise,implicit``.

A peer trains on the whole training part (train + validation rows, as its users do) and is scored on
exactly the test rows DeepMovie's models are scored on, by the same metrics code: its training data is
built from our index arrays, so both sides see the same rows by construction.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from deepmovie.errors import DeepMovieError
from deepmovie.splits import Split

INSTALL_HINT = "pip install 'deepmovie[peers]'"
# library -> (module of its peers here, the package it needs)
LIBRARIES = {"surprise": ("surprise", "scikit-surprise"), "implicit": ("implicit", "implicit")}


@dataclass(frozen=True)
class Peer:
    """One peer algorithm with fixed, documented settings."""

    library: str
    label: str
    algorithm: str
    settings: dict[str, Any] = field(default_factory=dict)
    seeded: bool = True  # takes a random state
    note: str = ""


def _module(library: str) -> Any:
    if library not in LIBRARIES:
        raise DeepMovieError(f"unknown peer library {library!r} (known: {', '.join(LIBRARIES)})")
    module = importlib.import_module(f"deepmovie.bench.peers.{LIBRARIES[library][0]}")
    try:
        importlib.import_module(module.PACKAGE)
    except ImportError:
        raise DeepMovieError(
            f"--peers {library} needs {LIBRARIES[library][1]}, which is not installed: {INSTALL_HINT}"
        ) from None
    return module


def get_peers(names: list[str]) -> list[Peer]:
    """The peers of each library named; fails at once where the library is not installed."""
    return [peer for name in names for peer in _module(name).PEERS]


def peer_versions(peers: list[Peer]) -> str:
    """``scikit-surprise 1.1.4, implicit 0.7.3``: the versions of the libraries ``peers`` use."""
    libraries = dict.fromkeys(p.library for p in peers)
    return ", ".join(_module(library).version() for library in libraries)


def run_peer(peer: Peer, splits: list[Split], scale: tuple[float, float], seed: int, rank: dict) -> dict:
    """Fit ``peer`` on each fold's training part and score its test rows: a run summary's figures.
    ``rank`` holds the ranking protocol (``k``, ``relevant_rating``) for ranking peers."""
    return _module(peer.library).run(peer, splits, scale, seed, **rank)
