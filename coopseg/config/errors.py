"""The one error type of configuration: a value is invalid, and the message says which."""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the problem."""
