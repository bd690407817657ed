"""The error raised for a bad configuration."""


class ConfigError(ValueError):
    """A configuration value or combination is invalid; the message names the key to change."""
