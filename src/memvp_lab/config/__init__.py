"""Typed config schemas (registered with Hydra's ConfigStore) and start-up validation."""
