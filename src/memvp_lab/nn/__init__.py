"""Building blocks on plain torch modules: attaching modules inside a model, finding its sub-layers."""
