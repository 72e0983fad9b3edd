"""DeepMovie: deep-learning movie recommenders on one data, training and evaluation pipeline."""

__version__ = "0.1.0"
