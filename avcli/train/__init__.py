"""Pretraining: the loop, checkpoints, optimisation, metrics."""
