"""Every error the project raises on purpose, one place below all others so any layer can raise it.

The first three are mistakes in what a user supplied: a single run reports them in one line that
names what to fix (``python -m memvp_lab.train`` exits with code 2, no stack trace).
"""


class ConfigError(ValueError):
    """A configuration value or combination is invalid; the message names the key to change."""


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file (and entry)."""


class FeatureError(RuntimeError):
    """A visual feature is missing or malformed; the message names the image id and file."""


class CheckpointMismatch(ValueError):
    """A saved checkpoint does not fit the model it is loaded into; the message says what differs."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops before that step's update."""


# What a user can fix: reported in one line by the entry points.
USER_ERRORS = (ConfigError, DataError, FeatureError)
