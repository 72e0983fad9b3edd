"""From a trained run to recommendations: artifacts, the Python API, the REST API and the web page.

Kept import-free: the experiment imports :mod:`deepmovie.serving.artifacts` to write a run, and the
recommender imports the experiment's file names.
"""
