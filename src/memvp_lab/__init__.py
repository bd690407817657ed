"""memvp_lab: memory-space visual prompting (MemVP) for vision-language fine-tuning."""

__version__ = "0.1.0"


def load(path, device: str = "cpu", overrides=()):
    """A trained adapter (run folder or exported folder) ready to answer questions about images:
    ``memvp_lab.load(path).answer("photo.jpg", "What color is the circle?")``. See
    ``memvp_lab.predictor.load``."""
    from memvp_lab.predictor import load as _load

    return _load(path, device=device, overrides=overrides)
