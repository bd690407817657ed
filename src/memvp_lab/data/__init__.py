"""Datasets, feature stores and data modules."""
