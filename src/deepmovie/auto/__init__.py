"""``deepmovie auto``: profile the data, search models on validation rows, blend, serve the best.

:mod:`profile` (what the data is), :mod:`candidates` (what to try on it), :mod:`search` (the budgeted
search, refit and blend), :mod:`report` (leaderboard, ``auto.md``, plot).
"""

from deepmovie.auto.search import auto, parse_budget

__all__ = ["auto", "parse_budget"]
