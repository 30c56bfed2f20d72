"""Settings mistakes are refused with the variable's name and the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infra.settings import PostgresSettings, unknown_variables
from workers.cli import main


def test_a_misspelt_variable_is_named_with_the_likely_fix():
    problems = unknown_variables(
        {
            "MENTORFLOW_KAFKA_PARTITONS": "3",
            "MENTORFLOW_KAFKA_PARTITIONS": "3",
            "PATH": "/bin",
        }
    )

    assert problems == [
        "MENTORFLOW_KAFKA_PARTITONS is not a mentorflow setting;"
        " did you mean MENTORFLOW_KAFKA_PARTITIONS?"
    ]


@pytest.mark.parametrize(
    "url", ["postgresql://u@h/db", "postgres://h/db", "host=h dbname=db"]
)
def test_postgres_urls_and_connection_strings_are_accepted(url):
    assert PostgresSettings(url=url).url is not None


def test_a_url_that_is_not_postgresql_is_refused():
    with pytest.raises(ValidationError, match="postgresql://user:password@host"):
        PostgresSettings(url="mysql://x")  # type: ignore[arg-type]


def test_the_command_line_names_the_variable_and_never_echoes_a_url(
    monkeypatch, capsys
):
    monkeypatch.setenv("MENTORFLOW_POSTGRES_URL", "mysql://user:hunter2@db")

    assert main(["members", "guild"]) == 2

    error = capsys.readouterr().err
    assert "MENTORFLOW_POSTGRES_URL" in error
    assert "hunter2" not in error


def test_a_bad_date_setting_says_the_expected_form(monkeypatch, capsys):
    monkeypatch.setenv("MENTORFLOW_AS_OF", "yesterday")

    assert main(["members", "guild"]) == 2

    assert "expected a date like 2018-06-30" in capsys.readouterr().err
