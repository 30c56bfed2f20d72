"""Errors of the worker and the command line."""

from __future__ import annotations

from schemas.errors import MentorflowError


class WorkerError(MentorflowError):
    """The worker cannot go on as configured."""


class InvalidRecordError(WorkerError):
    """A consumed record cannot be processed; it goes to the dead-letter topic."""


class HRFileError(WorkerError):
    """An HR export (roster or job history) cannot be read."""


class PredecessorFailedError(WorkerError):
    """The batch before this one was rolled back: this one must run after it."""


class AgentFailedError(WorkerError):
    """An agent failed around its records; the worker stops and exits with 1."""
