"""Connecting settings to running services: external ones or the embedded stack."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg_pool import ConnectionPool
from pydantic import SecretStr

from infra.database import (
    migrate,
    migration_names,
    open_pool,
    pending_migrations,
)
from infra.embedded import EmbeddedEndpoints, EmbeddedStack
from infra.settings import Settings
from infra.store import Store
from workers.clock import BusinessClock
from workers.engine import Engine
from workers.errors import WorkerError

logger = logging.getLogger(__name__)

ENDPOINTS_FILE = "embedded.json"


def with_endpoints(settings: Settings, endpoints: EmbeddedEndpoints) -> Settings:
    """Return settings pointed at the embedded stack, with its limits respected."""
    postgres = settings.postgres.model_copy(
        update={"url": SecretStr(endpoints.database_url)}
    )
    kafka = settings.kafka.model_copy(
        update={
            "bootstrap": endpoints.kafka_bootstrap,
            # The embedded broker refuses idempotent producers, and joining a
            # group there takes half the session timeout.
            "idempotent_producer": False,
            "session_timeout_s": 6.0,
            "heartbeat_interval_s": 1.0,
        }
    )
    return Settings(postgres, kafka, settings.worker)


def running_stack_settings(settings: Settings) -> Settings:
    """Return settings with URLs: the configured ones, or a running local stack.

    Raises WorkerError saying how to start a stack when neither is there.
    """
    if not settings.is_embedded:
        _require_both(settings)
        return settings
    path = settings.worker.data_dir / ENDPOINTS_FILE
    try:
        recorded = json.loads(path.read_text())
        alive = _is_alive(int(recorded["pid"]))
    except (OSError, ValueError, KeyError):
        alive = False
    if not alive:
        raise WorkerError(
            "no MENTORFLOW_POSTGRES_URL and MENTORFLOW_KAFKA_BOOTSTRAP are set and"
            f" no embedded stack is running in {settings.worker.data_dir};"
            " start one with `mentorflow stack` or set both URLs"
        )
    endpoints = EmbeddedEndpoints(recorded["database_url"], recorded["kafka_bootstrap"])
    return with_endpoints(settings, endpoints)


@contextmanager
def embedded_stack(settings: Settings, data_dir: Path) -> Iterator[Settings]:
    """Start the embedded stack for the block; yield settings pointing at it."""
    stack = EmbeddedStack(data_dir)
    endpoints = stack.start()
    path = data_dir / ENDPOINTS_FILE
    path.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "database_url": endpoints.database_url,
                "kafka_bootstrap": endpoints.kafka_bootstrap,
            }
        )
    )
    logger.info(
        "embedded stack started database=%s kafka=%s",
        endpoints.database_url,
        endpoints.kafka_bootstrap,
    )
    try:
        yield with_endpoints(settings, endpoints)
    finally:
        path.unlink(missing_ok=True)
        stack.stop()


def open_store(settings: Settings, *, read_only: bool = False) -> Store:
    """Open the store, applying the migrations not applied yet.

    A command that only reads applies none: pointed at the wrong database, it
    must not create mentorflow's tables there. It is refused instead when the
    schema is missing or behind this version.
    """
    url = settings.postgres.url
    if url is None:
        raise WorkerError("no database URL; set MENTORFLOW_POSTGRES_URL")
    pool = open_pool(
        url.get_secret_value(),
        max_size=settings.postgres.pool_size,
        timeout_s=settings.postgres.connect_timeout_s,
    )
    if read_only:
        _require_schema(pool)
    else:
        applied = migrate(pool)
        if applied:
            logger.info("applied migrations %s", ", ".join(applied))
    return Store(pool)


def _require_schema(pool: ConnectionPool) -> None:
    """Refuse a database whose schema lacks migrations of this version."""
    try:
        pending = pending_migrations(pool)
    except BaseException:
        pool.close()
        raise
    if not pending:
        return
    pool.close()
    if len(pending) == len(migration_names()):
        raise WorkerError(
            "the database holds no mentorflow tables; check MENTORFLOW_POSTGRES_URL,"
            " or start `mentorflow worker` once against it to create them"
        )
    raise WorkerError(
        f"the database lacks this version's migrations from {pending[0]} on"
        f" ({len(pending)} in all); start `mentorflow worker` of this version"
        " once to apply them"
    )


def build_engine(settings: Settings, store: Store) -> Engine:
    """Return the engine for these settings."""
    clock = BusinessClock(settings.worker.zone, settings.worker.as_of)
    return Engine(
        store,
        settings.kafka,
        clock,
        settings.worker.max_event_bytes,
        blast_radius_share=settings.worker.blast_radius_share,
        blast_radius_min_removals=settings.worker.blast_radius_min_removals,
        sweep_connections=settings.worker.sweep_connections,
        sweep_work_mem_mb=settings.worker.sweep_work_mem_mb,
    )


def _require_both(settings: Settings) -> None:
    if settings.postgres.url is None:
        raise WorkerError(
            "a Kafka bootstrap is set (MENTORFLOW_KAFKA_BOOTSTRAP or KAFKA_BOOTSTRAP)"
            " but no database (MENTORFLOW_POSTGRES_URL or DATABASE_URL);"
            " set both, or neither to use the embedded stack"
        )
    if settings.kafka.bootstrap is None:
        raise WorkerError(
            "a database is set (MENTORFLOW_POSTGRES_URL or DATABASE_URL) but no"
            " Kafka bootstrap (MENTORFLOW_KAFKA_BOOTSTRAP or KAFKA_BOOTSTRAP);"
            " set both, or neither to use the embedded stack"
        )


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def settings_environment(settings: Settings) -> dict[str, str]:
    """Return the environment variables that reproduce these settings.

    Used to start worker processes with exactly the caller's settings.
    """
    environment: dict[str, str] = {}
    for prefix, section in (
        ("MENTORFLOW_POSTGRES_", settings.postgres),
        ("MENTORFLOW_KAFKA_", settings.kafka),
        ("MENTORFLOW_", settings.worker),
    ):
        for name, value in section.model_dump(mode="json").items():
            if value is None:
                continue
            if isinstance(value, dict | list):
                value = json.dumps(value)
            environment[f"{prefix}{name.upper()}"] = str(value)
    secrets = {
        "MENTORFLOW_POSTGRES_URL": settings.postgres.url,
        "MENTORFLOW_KAFKA_SASL_PASSWORD": settings.kafka.sasl_password,
    }
    for name, secret in secrets.items():
        if secret is not None:
            environment[name] = secret.get_secret_value()
    return environment
