"""Shared library of the active-learning toolkit: data, models, acquisition, metrics."""
