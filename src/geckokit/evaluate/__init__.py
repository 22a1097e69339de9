"""Evaluation: local benchmark loaders, metrics, reports."""
