"""PostgreSQL for the integration tests: one fresh database a test.

The server is DATABASE_URL when set, else the machine's own server, which
infra/scripts/ensure-postgres.sh installs and starts when it is absent. A
missing server fails the tests; it never skips them.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infra.database import migrate, open_pool
from infra.settings import PostgresSettings
from infra.store import Store

ENSURE_POSTGRES = Path(__file__).parents[1] / "infra" / "scripts" / "ensure-postgres.sh"


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The URL of the server the tests create their databases on."""
    url = PostgresSettings().url
    if url is not None:
        return url.get_secret_value()
    result = subprocess.run(
        [str(ENSURE_POSTGRES)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"no PostgreSQL for the tests: {result.stderr.strip()}")
    return result.stdout.strip()


@pytest.fixture(scope="session")
def template_database(postgres_server_url: str) -> Iterator[str]:
    """A migrated database that each test's database is copied from."""
    name = f"mentorflow_template_{uuid.uuid4().hex[:8]}"
    _admin(postgres_server_url, f'CREATE DATABASE "{name}"')
    pool = open_pool(_with_database(postgres_server_url, name))
    try:
        migrate(pool)
    finally:
        pool.close()
    yield name
    _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(postgres_server_url: str, template_database: str) -> Iterator[str]:
    """The URL of a fresh, migrated database for one test."""
    name = f"mentorflow_test_{uuid.uuid4().hex[:12]}"
    _admin(
        postgres_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'
    )
    yield _with_database(postgres_server_url, name)
    _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """The store on the test's database."""
    store = Store(open_pool(database_url))
    yield store
    store.close()


@pytest.fixture
def other_store(postgres_server_url: str, template_database: str) -> Iterator[Store]:
    """A second fresh database, for a test that compares two paths side by side."""
    name = f"mentorflow_test_{uuid.uuid4().hex[:12]}"
    _admin(
        postgres_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'
    )
    store = Store(open_pool(_with_database(postgres_server_url, name)))
    yield store
    store.close()
    _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(server_url: str, statement: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement.encode())


def _with_database(url: str, database: str) -> str:
    params = conninfo_to_dict(url)
    params["dbname"] = database
    return make_conninfo("", **params)
