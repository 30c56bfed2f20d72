"""Connections to PostgreSQL and the schema migrations applied at start."""

from __future__ import annotations

import logging
import re
from importlib import resources
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from infra.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

# Serialises migrations when several workers start at once.
MIGRATION_LOCK_KEY = 0x6D656E746F72_01

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def open_pool(url: str, max_size: int = 4, timeout_s: float = 10.0) -> ConnectionPool:
    """Open a connection pool, waiting until the server answers.

    Raises DatabaseUnavailableError, with the server's reason where it gave
    one, when no connection opens within timeout_s.
    """
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": False},
        open=False,
        name="mentorflow",
        # After a server restart every pooled connection is dead: check each
        # before handing it out rather than fail the next transaction.
        check=ConnectionPool.check_connection,
        configure=watch_for_a_lost_client,
    )
    try:
        pool.open(wait=True, timeout=timeout_s)
    except PoolTimeout as error:
        pool.close()
        raise DatabaseUnavailableError(
            f"cannot connect to postgresql within {timeout_s:.0f} s"
            f"{_refusal(url, timeout_s)}; check MENTORFLOW_POSTGRES_URL"
        ) from error
    return pool


def watch_for_a_lost_client(conn: psycopg.Connection[Any]) -> None:
    """Have the server end a statement whose client went away (PostgreSQL 14+).

    Otherwise the server process of a killed worker goes on waiting on a lock,
    and holds the locks its transaction took, until the statement ends.
    """
    if conn.info.server_version >= 140000:
        conn.execute("SET client_connection_check_interval = 1000")
        conn.commit()


def _refusal(url: str, timeout_s: float) -> str:
    """Why one more connection fails, as ": reason", or "" if it opens.

    The pool only logs its failed attempts, so an unknown database, a wrong
    role or a refused port would all read as silence without this. Against a
    server that accepts but never answers, it delays the error by 2 to 5 s.
    """
    try:
        # libpq takes whole seconds and treats less than 2 as 2.
        with psycopg.connect(url, connect_timeout=max(2, min(round(timeout_s), 5))):
            return ""
    except psycopg.Error as error:
        # libpq's messages name the host, port, database and role, never the
        # password; they may run over several lines.
        reason = " ".join(str(error).split())
        return f": {reason[:300]}"


def migrate(pool: ConnectionPool) -> list[str]:
    """Apply the migrations not applied yet, in order; return their names."""
    applied: list[str] = []
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for name, sql in _migration_files():
            version = int(name[:3])
            if version in done:
                continue
            logger.info("applying migration %s", name)
            conn.execute(sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (version, name),
            )
            applied.append(name)
    return applied


def pending_migrations(pool: ConnectionPool) -> list[str]:
    """Return the names of the migrations not applied yet, changing nothing."""
    with pool.connection() as conn, conn.transaction():
        row = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        done: set[int] = set()
        if row is not None and row[0] is not None:
            versions = conn.execute("SELECT version FROM schema_migrations")
            done = {version for (version,) in versions}
    return [name for name in migration_names() if int(name[:3]) not in done]


def migration_names() -> list[str]:
    """Return the names of this version's migrations, in the order they apply."""
    folder = resources.files("infra") / "migrations"
    return sorted(
        entry.name for entry in folder.iterdir() if _MIGRATION_NAME.match(entry.name)
    )


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files("infra") / "migrations"
    return [(name, (folder / name).read_text()) for name in migration_names()]
