"""Errors of segment and rule evaluation."""

from __future__ import annotations

from schemas.errors import MentorflowError


class RulesError(MentorflowError):
    """A segment or rule set cannot be evaluated as given."""


class RuleOrderError(RulesError):
    """Two published rules share a dashboard position."""
