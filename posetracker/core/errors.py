"""Errors that the CLI reports as one clear line and exit status 2."""

from __future__ import annotations


class PosetrackerError(Exception):
    """A user-facing error: bad input, missing weights, unknown schema.

    The CLI prints ``posetracker: error: <message>`` and exits with status 2; no traceback.
    Messages name the offending file (and frame) where there is one.
    """


class InputError(PosetrackerError):
    """Input that cannot be read or has the wrong content (file, JSON, shapes, frame counts)."""


class ModelError(PosetrackerError):
    """Model weights that are missing, corrupt, or of an unsupported format."""


class ConfigError(PosetrackerError):
    """A configuration file or override that does not fit the config dataclasses."""
