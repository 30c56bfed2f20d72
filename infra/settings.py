"""Settings, read from the environment once, in the entry point."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The values libpq accepts for sslmode, weakest first.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# The starts of libpq parse errors that quote an option's name, never a value.
_NAMED_OPTION = ("invalid URI query parameter", "invalid connection option")
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
# What Kafka accepts as a topic name ("." and ".." aside).
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
TOPIC_FIELDS = ("person_topic", "config_topic", "membership_topic", "dead_letter_topic")
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


class PostgresSettings(BaseSettings):
    """Where the state lives; with no URL, the embedded server is started."""

    # An error's text never shows its input: that may be the URL or the password.
    model_config = SettingsConfigDict(
        env_prefix="MENTORFLOW_POSTGRES_",
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MENTORFLOW_POSTGRES_URL", "DATABASE_URL"),
        description="postgresql:// URL; sslmode and sslrootcert go in its query",
    )
    # Two person batches, the config agent, the relay, the calendar and the
    # health checks may each hold a connection at once.
    pool_size: int = Field(default=6, ge=1, le=64)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value()
        if not text.startswith(("postgresql://", "postgres://")) and "=" not in text:
            raise ValueError(
                "expected a URL like postgresql://user:password@host:5432/db"
                " (or a key=value connection string)"
            )

        # libpq's own parser; its complaints may quote the password, so only
        # those naming an unknown option are repeated.
        try:
            options = conninfo_to_dict(text)
        except psycopg.ProgrammingError as error:
            problem = str(error).strip()
            detail = f": {problem}" if problem.startswith(_NAMED_OPTION) else ""
            raise ValueError(
                "expected a URL like postgresql://user:password@host:5432/db"
                f"?sslmode=verify-full (or a key=value connection string){detail}"
            ) from None
        _check_tls_options(options)
        return value

    connect_timeout_s: float = Field(default=10.0, gt=0)


def _check_tls_options(options: Mapping[str, object]) -> None:
    """Refuse the TLS options of a connection string that libpq would refuse.

    libpq checks them only when it connects, and the pool would then report
    the mistake, once its timeout ran out, as a server that does not answer.
    """
    sslmode = options.get("sslmode")
    if sslmode is not None and sslmode not in SSL_MODES:
        raise ValueError(
            f"expected sslmode to be one of {', '.join(SSL_MODES)}, got {sslmode!r}"
        )

    root = options.get("sslrootcert")
    verifies = sslmode in ("verify-ca", "verify-full")
    if verifies and root not in (None, "system") and not _is_file(str(root)):
        raise ValueError(
            f"sslmode {sslmode} reads sslrootcert {str(root)!r}, which is not a"
            " file; expected the server's CA certificate, or system"
        )


def _is_file(path: str) -> bool:
    return Path(path).expanduser().is_file()


class KafkaSettings(BaseSettings):
    """The Kafka-protocol cluster; with no bootstrap, the embedded broker."""

    # An error's text never shows its input: that may be the URL or the password.
    model_config = SettingsConfigDict(
        env_prefix="MENTORFLOW_KAFKA_",
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    bootstrap: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MENTORFLOW_KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP"),
        description="host:port[,host:port...]",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    # The SASL and TLS fields are checked against security_protocol even when
    # left unset, so that no combination is half applied: kafka-python ignores
    # a mechanism outside SASL_*, while faust's credentials would still use it.
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, validate_default=True
    )
    sasl_username: str | None = Field(default=None, validate_default=True)
    sasl_password: SecretStr | None = Field(default=None, validate_default=True)
    ssl_cafile: Path | None = None

    person_topic: str = "hr.person-events"
    config_topic: str = "mentorflow.config"
    membership_topic: str = "mentorflow.membership-events"
    dead_letter_topic: str = "mentorflow.dead-letter"
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    consumer_group: str = "mentorflow"
    session_timeout_s: float = Field(default=30.0, gt=0)
    heartbeat_interval_s: float = Field(default=3.0, gt=0)
    # The embedded broker refuses idempotent producers.
    idempotent_producer: bool = True

    @field_validator("bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not (port.isascii() and port.isdigit()):
                raise ValueError(
                    f"expected host:port[,host:port...], got {value!r};"
                    " set MENTORFLOW_KAFKA_BOOTSTRAP like 127.0.0.1:9092"
                )
        return value

    @field_validator(*TOPIC_FIELDS)
    @classmethod
    def _check_topic(cls, value: str, info: ValidationInfo) -> str:
        assert info.field_name is not None
        variable = f"MENTORFLOW_KAFKA_{info.field_name.upper()}"
        if not TOPIC_NAME.fullmatch(value) or value in (".", ".."):
            raise ValueError(
                "expected a Kafka topic name of 1 to 249 letters, digits, '.', '_'"
                f" or '-'; set {variable} to one like hr.person-events"
            )
        # Records published to a topic the worker also consumes would come back
        # as input: a dead letter of a dead letter, without end.
        for other in TOPIC_FIELDS[: TOPIC_FIELDS.index(info.field_name)]:
            if info.data.get(other) == value:
                raise ValueError(
                    f"topic {value!r} is already MENTORFLOW_KAFKA_{other.upper()};"
                    f" give {variable} a topic of its own"
                )
        return value

    @field_validator("consumer_group")
    @classmethod
    def _check_consumer_group(cls, value: str) -> str:
        # faust refuses an app without an id only once the worker is starting.
        if not value.strip():
            raise ValueError(
                "a consumer group needs a name; set MENTORFLOW_KAFKA_CONSUMER_GROUP"
                " to one like mentorflow, or unset it"
            )
        return value

    @field_validator("sasl_mechanism")
    @classmethod
    def _check_mechanism(cls, value: str | None, info: ValidationInfo) -> str | None:
        protocol = info.data.get("security_protocol")
        if protocol is None:
            return value
        if protocol in SASL_PROTOCOLS and value is None:
            raise ValueError(
                f"security_protocol {protocol} needs a SASL mechanism; set"
                " MENTORFLOW_KAFKA_SASL_MECHANISM to PLAIN, SCRAM-SHA-256 or"
                " SCRAM-SHA-512"
            )
        if protocol not in SASL_PROTOCOLS and value is not None:
            raise ValueError(
                f"SASL mechanism {value} needs security_protocol SASL_SSL or"
                f" SASL_PLAINTEXT, got {protocol}; set"
                " MENTORFLOW_KAFKA_SECURITY_PROTOCOL"
            )
        return value

    @field_validator("sasl_username", "sasl_password")
    @classmethod
    def _check_credential(
        cls, value: str | SecretStr | None, info: ValidationInfo
    ) -> str | SecretStr | None:
        assert info.field_name is not None
        variable = f"MENTORFLOW_KAFKA_{info.field_name.upper()}"
        given = value.get_secret_value() if isinstance(value, SecretStr) else value
        mechanism = info.data.get("sasl_mechanism")
        if mechanism is not None and not given:
            what = "user name" if info.field_name == "sasl_username" else "password"
            raise ValueError(
                f"SASL mechanism {mechanism} needs a {what}; set {variable}"
            )
        if mechanism is None and value is not None:
            _refuse_unused_credential(variable, info)
        return value

    @field_validator("ssl_cafile")
    @classmethod
    def _check_cafile(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        protocol = info.data.get("security_protocol")
        if protocol is not None and protocol not in TLS_PROTOCOLS:
            raise ValueError(
                "a CA file is only read over TLS, but security_protocol is"
                f" {protocol}; set MENTORFLOW_KAFKA_SECURITY_PROTOCOL to SSL or"
                " SASL_SSL"
            )
        if not value.is_file():
            raise ValueError(f"expected an existing CA file, got {str(value)!r}")
        return value

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers as a list."""
        return [server.strip() for server in (self.bootstrap or "").split(",")]


def _refuse_unused_credential(variable: str, info: ValidationInfo) -> None:
    """Refuse a SASL credential that no mechanism would send.

    Unless the mechanism itself was refused already: that error says it all.
    """
    if "sasl_mechanism" not in info.data:
        return
    protocol = info.data.get("security_protocol")
    raise ValueError(
        f"{variable} is set, but security_protocol {protocol} sends no"
        " credentials; set MENTORFLOW_KAFKA_SECURITY_PROTOCOL to SASL_SSL and"
        f" MENTORFLOW_KAFKA_SASL_MECHANISM, or unset {variable}"
    )


class WorkerSettings(BaseSettings):
    """How the worker behaves."""

    model_config = SettingsConfigDict(env_prefix="MENTORFLOW_", extra="ignore")

    business_timezone: str = Field(
        default="UTC", description="IANA zone whose date is 'today' for date rules"
    )
    sweep_interval_s: float = Field(default=3600.0, gt=0)
    # The sweep reads the persons in this many shares at once, each over its
    # own connection; PostgreSQL runs each on a core of its own.
    sweep_connections: int = Field(default=2, ge=1, le=64)
    # PostgreSQL's work_mem for the sweep's queries: enough to hash every
    # membership without spilling to disk speeds a large sweep up.
    sweep_work_mem_mb: int = Field(default=256, ge=1, le=1_048_576)
    relay_interval_s: float = Field(default=0.2, gt=0)
    # Outbox rows published, and acknowledged by the broker, per transaction.
    relay_batch_size: int = Field(default=2000, ge=1, le=100_000)
    max_event_bytes: int = Field(default=1_000_000, ge=1024)
    data_dir: Path = Path(".mentorflow")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    web_port: int = Field(default=6066, ge=0, le=65535)
    # 0.0.0.0 in a container, so that probes and scrapes reach the port.
    web_host: str = "127.0.0.1"
    # How often the outbox backlog, the lag and the database check refresh.
    metrics_interval_s: float = Field(default=15.0, gt=0)
    # Readiness fails when the outbox backlog has not shrunk for this long.
    outbox_stall_s: float = Field(default=300.0, gt=0)
    # False when a separate `mentorflow relay` process publishes the outbox.
    relay_in_worker: bool = True
    # Pins "today" to a date, for demos and what-if runs; None follows the clock.
    as_of: date | None = None
    # A config change that would remove more than this share of a program's
    # members, and at least blast_radius_min_removals of them, is held until
    # confirmed; 1.0 turns the guard off.
    blast_radius_share: float = Field(default=0.25, gt=0, le=1)
    blast_radius_min_removals: int = Field(default=10, ge=1)
    # How often held events and time-relative flips that fell due are applied.
    calendar_interval_s: float = Field(default=30.0, gt=0)
    # The person agent applies up to batch_size events in one transaction,
    # waiting at most batch_window_s for a batch to fill; 1 turns batching off.
    # Under load, 1,000 did about 8% more than 500 on the bench's 2 cores,
    # 2,000 no more than 1,000; a steady trickle fills none of them.
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    batch_window_s: float = Field(default=0.05, gt=0, le=10)
    # Batches apply in a child process, so that the engine and faust's
    # consumer loop do not take turns on one interpreter lock; false applies
    # them in threads of the worker process.
    engine_process: bool = True

    @field_validator("web_host")
    @classmethod
    def _check_web_host(cls, value: str) -> str:
        # An empty host would have the web server listen on every interface.
        if not value.strip():
            raise ValueError(
                "the web server needs an address to listen on; set"
                " MENTORFLOW_WEB_HOST to one like 127.0.0.1 (0.0.0.0 for every"
                " interface), or unset it"
            )
        return value

    @field_validator("business_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; set MENTORFLOW_BUSINESS_TIMEZONE"
                " to an IANA name like Europe/Paris"
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The business time zone."""
        return ZoneInfo(self.business_timezone)


SECTIONS: tuple[tuple[str, type[BaseSettings]], ...] = (
    ("MENTORFLOW_POSTGRES_", PostgresSettings),
    ("MENTORFLOW_KAFKA_", KafkaSettings),
    ("MENTORFLOW_", WorkerSettings),
)


def known_variables() -> set[str]:
    """Every environment variable a setting reads."""
    names = set()
    for prefix, section in SECTIONS:
        for field_name, field in section.model_fields.items():
            names.add(f"{prefix}{field_name.upper()}")
            if isinstance(field.validation_alias, AliasChoices):
                names.update(str(choice) for choice in field.validation_alias.choices)
    return names


def variable_names(name: str) -> str:
    """Spell out every variable a setting reads, given the first of them."""
    for _, section in SECTIONS:
        for field in section.model_fields.values():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices) and alias.choices[0] == name:
                return " or ".join(str(choice) for choice in alias.choices)
    return name


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """Name each MENTORFLOW_ variable that no setting reads, with a likely fix.

    A misspelt variable would otherwise be ignored without a word, and the
    setting it meant would silently keep its default.
    """
    known = known_variables()
    problems = []
    for name in sorted(os.environ if environ is None else environ):
        # Settings are read whatever the case of their names, so a misspelling
        # in lower case would go unnoticed as well.
        upper = name.upper()
        if upper.startswith("MENTORFLOW_") and upper not in known:
            close = difflib.get_close_matches(upper, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(f"{name} is not a mentorflow setting{hint}")
    return problems


class Settings:
    """All settings, built once in the entry point and passed down."""

    def __init__(
        self,
        postgres: PostgresSettings | None = None,
        kafka: KafkaSettings | None = None,
        worker: WorkerSettings | None = None,
    ) -> None:
        self.postgres = postgres or PostgresSettings()
        self.kafka = kafka or KafkaSettings()
        self.worker = worker or WorkerSettings()

    @property
    def is_embedded(self) -> bool:
        """Whether no external service is configured."""
        return self.postgres.url is None and self.kafka.bootstrap is None
