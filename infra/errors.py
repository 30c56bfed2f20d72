"""Errors of the storage, broker and local-stack layer."""

from __future__ import annotations

from schemas.errors import MentorflowError


class InfraError(MentorflowError):
    """A failure talking to PostgreSQL or Kafka."""


class DatabaseUnavailableError(InfraError):
    """PostgreSQL cannot be reached right now; retrying may succeed."""

    retriable = True


class StoreConflictError(InfraError):
    """A write lost a race with another writer; retrying will succeed."""

    retriable = True


class ConfigRejectedError(InfraError):
    """A configuration event contradicts the stored configuration."""


class StaleHeldConfigError(ConfigRejectedError):
    """A held change was confirmed after the configuration changed under it."""
