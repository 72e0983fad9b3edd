"""Feature-based models over one feature pipeline: factorization machines, DLRM and DCN.

Each rating becomes categorical fields (user, item, genres, year bucket, demographics, tags) and dense
features (popularity, mean ratings, year, activity), all fitted on the training rows only; see
:mod:`deepmovie.models.features.fields`. The models differ only in how fields interact.
"""
