"""Training: the epoch loop, mini-batch engine, checkpoints and evaluation."""
