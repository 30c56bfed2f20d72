"""Apache Kafka for the integration tests: uniquely named topics a test.

The cluster is KAFKA_BOOTSTRAP when set, else a single-node Apache Kafka that
the session starts from the Maven Central artifacts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from infra.kafka import ensure_topics
from infra.kafka_broker import ApacheKafkaBroker
from infra.settings import KafkaSettings


@pytest.fixture(scope="session")
def kafka_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApacheKafkaBroker | None]:
    """The Apache Kafka broker the session started, or None for an external one."""
    if KafkaSettings().bootstrap is not None:
        yield None
        return
    broker = ApacheKafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: ApacheKafkaBroker | None) -> str:
    """host:port of the cluster."""
    if kafka_broker is None:
        bootstrap = KafkaSettings().bootstrap
        assert bootstrap is not None
        return bootstrap
    return kafka_broker.bootstrap


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Settings naming this test's own topics and consumer group."""
    suffix = uuid.uuid4().hex[:10]
    settings = KafkaSettings(
        bootstrap=kafka_bootstrap,
        person_topic=f"hr.person-events.{suffix}",
        config_topic=f"mentorflow.config.{suffix}",
        membership_topic=f"mentorflow.membership-events.{suffix}",
        dead_letter_topic=f"mentorflow.dead-letter.{suffix}",
        consumer_group=f"mentorflow-{suffix}",
        partitions=3,
        session_timeout_s=10.0,
        heartbeat_interval_s=1.0,
    )
    ensure_topics(settings)
    return settings
