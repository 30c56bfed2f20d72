"""The Kafka security settings become the faust credentials aiokafka connects with."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from infra.settings import KafkaSettings, Settings
from tests.unit.certificates import TEST_CA_SUBJECT, write_test_ca
from workers.app import _credentials

PASSWORD = "hunter2-not-in-any-repr"


def credentials(**fields: Any) -> Any:
    kafka = KafkaSettings(bootstrap="broker:9093", **fields)
    return _credentials(Settings(kafka=kafka))


def trusted_subjects(context: ssl.SSLContext) -> list[Any]:
    return [cert["subject"] for cert in context.get_ca_certs()]


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    return write_test_ca(tmp_path)


def test_plaintext_has_no_credentials() -> None:
    found = credentials()

    assert found is None
    assert credentials_to_aiokafka_auth(found) == {"security_protocol": "PLAINTEXT"}


def test_tls_alone_gives_ssl_credentials_trusting_the_ca_file(ca_file: Path) -> None:
    found = credentials(security_protocol="SSL", ssl_cafile=ca_file)

    assert isinstance(found, faust.SSLCredentials)
    auth = credentials_to_aiokafka_auth(found)
    assert auth["security_protocol"] == "SSL"
    context = auth["ssl_context"]
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert trusted_subjects(context) == [((("commonName", TEST_CA_SUBJECT),),)]


def test_tls_without_a_ca_file_verifies_against_the_system_roots() -> None:
    found = credentials(security_protocol="SSL")

    assert isinstance(found, faust.SSLCredentials)
    assert found.context.verify_mode is ssl.CERT_REQUIRED
    assert found.context.check_hostname


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_over_tls_gives_sasl_credentials_with_a_verifying_context(
    mechanism: str, ca_file: Path
) -> None:
    found = credentials(
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username="mentorflow-svc",
        sasl_password=PASSWORD,
        ssl_cafile=ca_file,
    )

    assert isinstance(found, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(found)
    assert {key: auth[key] for key in auth if key != "ssl_context"} == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "mentorflow-svc",
        "sasl_plain_password": PASSWORD,
    }
    assert auth["ssl_context"].verify_mode is ssl.CERT_REQUIRED
    assert trusted_subjects(auth["ssl_context"]) == [
        ((("commonName", TEST_CA_SUBJECT),),)
    ]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_without_tls_gives_sasl_credentials_without_a_context(
    mechanism: str,
) -> None:
    found = credentials(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username="mentorflow-svc",
        sasl_password=PASSWORD,
    )

    auth = credentials_to_aiokafka_auth(found)
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == mechanism
    assert auth["ssl_context"] is None


def test_the_credentials_never_show_the_password() -> None:
    found = credentials(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="mentorflow-svc",
        sasl_password=PASSWORD,
    )

    assert PASSWORD not in repr(found)
    assert PASSWORD not in str(found)
