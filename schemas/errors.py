"""Errors raised while reading events and configuration."""

from __future__ import annotations


class MentorflowError(Exception):
    """Root of every error mentorflow raises on purpose."""

    retriable = False


class SchemaError(MentorflowError):
    """An input does not match the schema it claims."""
