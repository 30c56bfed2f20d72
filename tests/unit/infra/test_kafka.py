"""Kafka client options: the partitioner, and the security settings' mapping."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaConfigurationError
from kafka.net.sasl import get_sasl_mechanism
from kafka.net.transport import KafkaSSLTransport
from kafka.partitioner.default import DefaultPartitioner

from infra.kafka import (
    BrokerUnavailableError,
    KeyedPartitioner,
    client_options,
    make_producer,
)
from infra.settings import KafkaSettings
from tests.unit.certificates import TEST_CA_SUBJECT, write_test_ca


class Cluster:
    """The part of kafka-python's cluster metadata a partitioner reads."""

    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


@given(key=st.binary(max_size=40), partitions=st.integers(1, 64))
def test_a_keyed_record_goes_where_the_default_partitioner_puts_it(
    key: bytes, partitions: int
) -> None:
    cluster = Cluster(partitions)
    expected = DefaultPartitioner().partition("t", None, key, None, None, cluster)
    keyed = KeyedPartitioner()
    assert keyed.partition("t", None, key, None, None, cluster) == expected
    # Asked again, from its memory of the key.
    assert keyed.partition("t", None, key, None, None, cluster) == expected


def test_an_unkeyed_record_goes_to_some_partition() -> None:
    cluster = Cluster(6)
    found = KeyedPartitioner().partition("t", None, None, None, b"{}", cluster)
    assert found in cluster.partitions


# -- security settings ------------------------------------------------------------

PASSWORD = "hunter2-not-in-any-log"


def kafka_settings(**fields: Any) -> KafkaSettings:
    return KafkaSettings(bootstrap="broker-1:9093,broker-2:9093", **fields)


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    return write_test_ca(tmp_path)


def test_plaintext_options_carry_no_credentials() -> None:
    options = client_options(kafka_settings())

    assert options == {
        "bootstrap_servers": ["broker-1:9093", "broker-2:9093"],
        "security_protocol": "PLAINTEXT",
        "client_id": "mentorflow",
    }


def test_tls_alone_trusts_the_given_ca_file(ca_file: Path) -> None:
    options = client_options(
        kafka_settings(security_protocol="SSL", ssl_cafile=ca_file)
    )

    assert options["security_protocol"] == "SSL"
    assert options["ssl_cafile"] == str(ca_file)
    assert not {key for key in options if key.startswith("sasl_")}


def test_tls_without_a_ca_file_leaves_kafka_python_the_system_roots() -> None:
    options = client_options(kafka_settings(security_protocol="SSL"))

    assert options["security_protocol"] == "SSL"
    assert "ssl_cafile" not in options


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_sasl_options_carry_the_mechanism_and_the_credentials(
    mechanism: str, protocol: str
) -> None:
    settings = kafka_settings(
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username="mentorflow-svc",
        sasl_password=PASSWORD,
    )

    options = client_options(settings)

    assert options["security_protocol"] == protocol
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_username"] == "mentorflow-svc"
    assert options["sasl_plain_password"] == PASSWORD


def test_sasl_over_tls_trusts_the_given_ca_file(ca_file: Path) -> None:
    settings = kafka_settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="mentorflow-svc",
        sasl_password=PASSWORD,
        ssl_cafile=ca_file,
    )

    options = client_options(settings)

    assert options["ssl_cafile"] == str(ca_file)


@pytest.mark.parametrize(
    "client", [KafkaAdminClient, KafkaConsumer, KafkaProducer], ids=lambda c: c.__name__
)
def test_every_client_takes_every_option(client: Any, ca_file: Path) -> None:
    settings = kafka_settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="mentorflow-svc",
        sasl_password=PASSWORD,
        ssl_cafile=ca_file,
    )

    # A client refuses options it does not know, and would only at start-up.
    assert set(client_options(settings)) <= set(client.DEFAULT_CONFIG)


def test_kafka_python_builds_a_verifying_tls_context_from_the_options(
    ca_file: Path,
) -> None:
    options = client_options(
        kafka_settings(security_protocol="SSL", ssl_cafile=ca_file)
    )
    config = {**KafkaSSLTransport.DEFAULT_CONFIG, **options}

    context = KafkaSSLTransport._build_ssl_context(config)

    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [cert["subject"] for cert in context.get_ca_certs()] == [
        ((("commonName", TEST_CA_SUBJECT),),)
    ]


def test_kafka_python_signs_in_with_the_password_itself() -> None:
    plain = kafka_settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="svc",
        sasl_password=PASSWORD,
    )
    scram = plain.model_copy(update={"sasl_mechanism": "SCRAM-SHA-256"})

    plain_auth = get_sasl_mechanism("PLAIN")(**client_options(plain))
    scram_auth = get_sasl_mechanism("SCRAM-SHA-256")(**client_options(scram))

    assert plain_auth.auth_bytes() == f"svc\0svc\0{PASSWORD}".encode()
    assert scram_auth._scram_client.password == PASSWORD.encode()


def test_the_password_is_masked_wherever_the_options_are_printed() -> None:
    settings = kafka_settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="svc",
        sasl_password=PASSWORD,
    )

    options = client_options(settings)

    assert PASSWORD not in repr(options)
    assert PASSWORD not in str(options)
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings.model_dump(mode="json"))


def test_kafka_python_logs_its_configuration_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = kafka_settings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="svc",
        sasl_password=PASSWORD,
    )
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="kafka")

    # The admin client logs its configuration first thing; an option it does not
    # know then stops it before it opens a connection or starts a thread.
    with pytest.raises(KafkaConfigurationError):
        KafkaAdminClient(**client_options(settings), stop_here=True)

    assert "sasl_plain_password" in caplog.text
    assert PASSWORD not in caplog.text


def test_a_producer_that_cannot_reach_the_cluster_says_so_naming_it(free_port):
    kafka = KafkaSettings(bootstrap=f"127.0.0.1:{free_port}")

    with pytest.raises(BrokerUnavailableError, match=f"127.0.0.1:{free_port}"):
        make_producer(kafka, bootstrap_timeout_ms=500)
