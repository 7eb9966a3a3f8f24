"""Typed errors. Every error says what is wrong, where (file / key) and, when possible, how to fix it.

The CLI prints ``error: <message>`` on one line and exits with code 2 for any :class:`MSLSTMError`.
"""
from __future__ import annotations


class MSLSTMError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(MSLSTMError, ValueError):
    """A config value is missing, of the wrong type or out of range (message names the key)."""


class DataError(MSLSTMError):
    """A dataset file is missing, unreadable or holds values the pipeline cannot use (message names the file)."""


class DataValidationError(DataError):
    """The great-expectations suite failed: the data must not be trained on."""


class StorageError(MSLSTMError):
    """An S3 / DVC remote operation failed (message names the bucket/key or remote)."""


class CheckpointError(MSLSTMError):
    """A checkpoint is corrupt, truncated, unsafe (pickled code) or belongs to another model/config."""


class RegistryError(MSLSTMError):
    """An MLflow Model Registry operation failed."""


class OutputError(MSLSTMError):
    """An output file or folder cannot be written: disk full, read-only mount, no permission (message names the
    path and, for a full disk, the bytes needed and free)."""


class DistributedError(MSLSTMError):
    """A distributed collective failed or timed out (message names the rank that stopped answering)."""


class TrackingError(MSLSTMError):
    """The MLflow tracking server failed (unreachable, stopped answering, refused): says the URI, the failure and
    what was not logged; the step's own outputs are complete."""
