"""Databases a command cannot use: refused by the server, or not mentorflow's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from infra.database import migration_names, open_pool
from infra.errors import DatabaseUnavailableError
from infra.settings import PostgresSettings, Settings
from tests.fix_postgres import _admin, _with_database
from workers.errors import WorkerError
from workers.runtime import open_store


def test_an_unknown_database_is_named_in_the_refusal(postgres_server_url: str):
    url = _with_database(postgres_server_url, "mentorflow_absent")

    with pytest.raises(DatabaseUnavailableError) as refused:
        open_pool(url, timeout_s=1)

    message = str(refused.value)
    assert 'database "mentorflow_absent" does not exist' in message
    assert "MENTORFLOW_POSTGRES_URL" in message


def test_a_closed_port_is_reported_as_refused(postgres_server_url: str):
    # Port 9 (discard) has no listener on the test machines.
    params = conninfo_to_dict(postgres_server_url) | {"host": "127.0.0.1", "port": "9"}

    with pytest.raises(DatabaseUnavailableError, match="refused"):
        open_pool(make_conninfo("", **params), timeout_s=1)


@pytest.fixture
def empty_database(postgres_server_url: str) -> Iterator[str]:
    """The URL of a database without mentorflow's tables."""
    name = f"mentorflow_empty_{uuid.uuid4().hex[:12]}"
    _admin(postgres_server_url, f'CREATE DATABASE "{name}"')
    yield _with_database(postgres_server_url, name)
    _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _settings(url: str) -> Settings:
    return Settings(postgres=PostgresSettings(url=SecretStr(url)))


def _tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return [name for (name,) in rows]


def test_a_reading_command_refuses_a_database_without_the_schema_and_leaves_it(
    empty_database: str,
):
    with pytest.raises(WorkerError, match="holds no mentorflow tables") as refused:
        open_store(_settings(empty_database), read_only=True)

    assert "MENTORFLOW_POSTGRES_URL" in str(refused.value)
    assert _tables(empty_database) == []


def test_a_reading_command_names_the_first_migration_a_database_lacks(
    empty_database: str,
):
    open_store(_settings(empty_database)).close()
    last = migration_names()[-1]
    with psycopg.connect(empty_database) as conn:
        conn.execute(
            "DELETE FROM schema_migrations WHERE version = %s", (int(last[:3]),)
        )

    with pytest.raises(WorkerError, match=f"migrations from {last} on \\(1 in all\\)"):
        open_store(_settings(empty_database), read_only=True)


def test_a_reading_command_opens_a_migrated_database(database_url: str):
    open_store(_settings(database_url), read_only=True).close()
