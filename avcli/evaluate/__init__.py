"""Evaluation: loading encoders, feature extraction, classifiers and the probe protocols."""
