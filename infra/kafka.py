"""Kafka clients built from settings, and topic provisioning."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import DefaultPartitioner, murmur2
from kafka.serializer import Deserializer, Serializer

from infra.errors import InfraError
from infra.settings import KafkaSettings

logger = logging.getLogger(__name__)


class BrokerUnavailableError(InfraError):
    """The Kafka cluster cannot be reached right now; retrying may succeed."""

    retriable = True


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Return the connection options every kafka-python client takes."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.servers,
        "security_protocol": settings.security_protocol,
        "client_id": "mentorflow",
    }
    if settings.sasl_mechanism is not None:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password is not None:
            password = settings.sasl_password.get_secret_value()
            options["sasl_plain_password"] = MaskedPassword(password)
    if settings.ssl_cafile is not None:
        options["ssl_cafile"] = str(settings.ssl_cafile)
    return options


class MaskedPassword(str):
    """A password that kafka-python can use and that its logs cannot show.

    KafkaAdminClient logs its whole configuration at debug level, password
    included (``KafkaAdminClient.__init__`` in kafka-python 3.0.12); the log
    formats the options with repr(), which this masks. The SASL code reads the
    characters themselves, which stay intact.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'**********'"


def topic_partitions(settings: KafkaSettings) -> dict[str, int]:
    """Return every topic mentorflow uses, with its partition count.

    Config events share one key, so their topic needs a single partition.
    """
    return {
        settings.person_topic: settings.partitions,
        settings.config_topic: 1,
        settings.membership_topic: settings.partitions,
        settings.dead_letter_topic: settings.partitions,
    }


def ensure_topics(settings: KafkaSettings) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    wanted = topic_partitions(settings)
    try:
        admin = KafkaAdminClient(**client_options(settings))
    except KafkaError as error:
        raise BrokerUnavailableError(
            f"kafka at {settings.bootstrap} did not answer: {error}"
        ) from error
    try:
        existing = set(admin.list_topics())
        missing = {name: n for name, n in wanted.items() if name not in existing}
        if not missing:
            return []
        request = {
            name: {
                "num_partitions": partitions,
                "replication_factor": settings.replication_factor,
            }
            for name, partitions in missing.items()
        }
        # Another worker may create them between our listing and our request.
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(request, wait_for_metadata=True)
        logger.info("created topics %s", ", ".join(sorted(missing)))
        return sorted(missing)
    finally:
        admin.close()


def make_producer(settings: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """Return a producer that waits for every in-sync replica."""
    options = client_options(settings) | {
        "acks": "all",
        "enable_idempotence": settings.idempotent_producer,
        "linger_ms": 5,
        "key_serializer": TextSerializer(),
        "partitioner": KeyedPartitioner(),
        "value_serializer": JsonSerializer(),
    }
    # The producer connects in its constructor: an unreachable cluster must
    # read as such, not as a traceback.
    try:
        return KafkaProducer(**(options | overrides))
    except KafkaError as error:
        raise BrokerUnavailableError(
            f"kafka at {settings.bootstrap} did not answer: {error}"
        ) from error


class KeyedPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """Kafka's default partitioner, hashing each recent key only once.

    A keyed record goes where the Java client and kafka-python would put it,
    so a person's events share a partition whoever produced them. The relay
    sends several events of one person in a row, and kafka-python's murmur2
    is pure Python, so remembering recent hashes saves a good part of a send.
    """

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        """Return the partition of a record; unkeyed ones go anywhere."""
        partitions = cluster.partitions_for_topic(topic)
        if serialized_key is None or not partitions:
            return int(
                super().partition(
                    topic, key, serialized_key, value, serialized_value, cluster
                )
            )
        # Partitions are numbered 0 to n-1, so the default's index into the
        # sorted list is the partition itself.
        return _positive_hash(serialized_key) % len(partitions)


@functools.lru_cache(maxsize=65536)
def _positive_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


class TextSerializer(Serializer):  # type: ignore[misc]
    """Keys are UTF-8 text."""

    def serialize(self, topic: str, headers: Any, data: str | None) -> bytes | None:
        """Encode a key."""
        return None if data is None else data.encode()


class JsonSerializer(Serializer):  # type: ignore[misc]
    """Values are compact JSON; bytes pass through as they are."""

    def serialize(self, topic: str, headers: Any, data: Any) -> bytes:
        """Encode a value."""
        if isinstance(data, bytes):
            return data
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


class JsonDeserializer(Deserializer):  # type: ignore[misc]
    """Reads JSON values."""

    def deserialize(self, topic: str, headers: Any, data: bytes | None) -> Any:
        """Decode a value."""
        return None if data is None else json.loads(data)
