"""Settings mistakes are refused with the variable's name and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict
from pydantic import SecretStr, ValidationError

from infra.settings import (
    KafkaSettings,
    PostgresSettings,
    WorkerSettings,
    unknown_variables,
)
from tests.unit.certificates import write_test_ca
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


def test_a_misspelt_variable_in_lower_case_is_named_too():
    # Settings are read whatever the case of the name.
    problems = unknown_variables(
        {"mentorflow_sweep_intervl_s": "5", "mentorflow_sweep_interval_s": "5"}
    )

    assert problems == [
        "mentorflow_sweep_intervl_s is not a mentorflow setting;"
        " did you mean MENTORFLOW_SWEEP_INTERVAL_S?"
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


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("DATABASE_URL", "sqlite:///x.db", "MENTORFLOW_POSTGRES_URL or DATABASE_URL"),
        ("KAFKA_BOOTSTRAP", "", "MENTORFLOW_KAFKA_BOOTSTRAP or KAFKA_BOOTSTRAP"),
    ],
)
def test_a_setting_read_under_two_names_is_refused_under_both(
    monkeypatch, capsys, variable, value, named
):
    monkeypatch.setenv(variable, value)

    assert main(["members", "guild"]) == 2

    assert f"  {named}: " in capsys.readouterr().err


def test_a_bad_date_setting_says_the_expected_form(monkeypatch, capsys):
    monkeypatch.setenv("MENTORFLOW_AS_OF", "yesterday")

    assert main(["members", "guild"]) == 2

    assert "expected a date like 2018-06-30" in capsys.readouterr().err


# -- Kafka security ---------------------------------------------------------------

PASSWORD = "hunter2-not-in-any-message"
SASL = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_username": "mentorflow-svc",
    "sasl_password": PASSWORD,
}


def kafka_settings(**fields: Any) -> KafkaSettings:
    return KafkaSettings(bootstrap="broker:9093", **fields)


def test_kafka_security_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca_file = write_test_ca(tmp_path)
    for name, value in {**SASL, "ssl_cafile": str(ca_file)}.items():
        monkeypatch.setenv(f"MENTORFLOW_KAFKA_{name.upper()}", value)

    settings = KafkaSettings()

    assert settings.security_protocol == "SASL_SSL"
    assert settings.sasl_mechanism == "SCRAM-SHA-512"
    assert settings.sasl_username == "mentorflow-svc"
    assert isinstance(settings.sasl_password, SecretStr)
    assert settings.sasl_password.get_secret_value() == PASSWORD
    assert settings.ssl_cafile == ca_file


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ({"sasl_username": None}, "MENTORFLOW_KAFKA_SASL_USERNAME"),
        ({"sasl_username": ""}, "MENTORFLOW_KAFKA_SASL_USERNAME"),
        ({"sasl_password": None}, "MENTORFLOW_KAFKA_SASL_PASSWORD"),
        ({"sasl_password": ""}, "MENTORFLOW_KAFKA_SASL_PASSWORD"),
    ],
    ids=["no-username", "empty-username", "no-password", "empty-password"],
)
def test_a_sasl_mechanism_without_its_credentials_is_refused_naming_the_field(
    mechanism: str, missing: dict[str, Any], variable: str
) -> None:
    fields = {**SASL, "sasl_mechanism": mechanism} | missing
    fields = {name: value for name, value in fields.items() if value is not None}

    with pytest.raises(ValidationError) as caught:
        kafka_settings(**fields)

    [error] = caught.value.errors()
    assert error["loc"] == (variable.removeprefix("MENTORFLOW_KAFKA_").lower(),)
    assert f"SASL mechanism {mechanism} needs" in error["msg"]
    assert variable in error["msg"]


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
def test_a_sasl_protocol_without_a_mechanism_is_refused(protocol: str) -> None:
    with pytest.raises(ValidationError, match="MENTORFLOW_KAFKA_SASL_MECHANISM"):
        kafka_settings(security_protocol=protocol)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_a_sasl_mechanism_outside_a_sasl_protocol_is_refused(protocol: str) -> None:
    fields = {**SASL, "security_protocol": protocol}

    with pytest.raises(ValidationError) as caught:
        kafka_settings(**fields)

    # Only the mechanism is blamed: the credentials follow from it.
    [error] = caught.value.errors()
    assert error["loc"] == ("sasl_mechanism",)
    assert (
        f"needs security_protocol SASL_SSL or SASL_PLAINTEXT, got {protocol}"
        in (error["msg"])
    )


@pytest.mark.parametrize("field", ["sasl_username", "sasl_password"])
def test_credentials_that_no_mechanism_sends_are_refused(field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        kafka_settings(security_protocol="SSL", **{field: SASL[field]})

    [error] = caught.value.errors()
    assert error["loc"] == (field,)
    assert (
        f"MENTORFLOW_KAFKA_{field.upper()} is set, but security_protocol SSL"
        in (error["msg"])
    )


def test_a_ca_file_without_tls_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="only read over TLS"):
        kafka_settings(ssl_cafile=write_test_ca(tmp_path))


def test_a_ca_file_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="expected an existing CA file"):
        kafka_settings(security_protocol="SSL", ssl_cafile=tmp_path / "missing.pem")


def test_the_kafka_password_never_shows_in_repr_or_dumps() -> None:
    settings = kafka_settings(**SASL)

    assert isinstance(settings.sasl_password, SecretStr)
    for shown in (
        repr(settings),
        str(settings),
        repr(settings.sasl_password),
        str(settings.sasl_password),
        str(settings.model_dump()),
        settings.model_dump_json(),
    ):
        assert PASSWORD not in shown


def test_a_refused_kafka_setting_names_the_variable_and_never_echoes_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MENTORFLOW_KAFKA_BOOTSTRAP", "broker:9093")
    monkeypatch.setenv("MENTORFLOW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("MENTORFLOW_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("MENTORFLOW_KAFKA_SASL_PASSWORD", PASSWORD)

    assert main(["members", "guild"]) == 2

    error = capsys.readouterr().err
    assert "MENTORFLOW_KAFKA_SASL_USERNAME" in error
    assert PASSWORD not in error


# -- PostgreSQL TLS ---------------------------------------------------------------


def postgres_settings(url: str) -> PostgresSettings:
    return PostgresSettings.model_validate({"url": url})


def test_the_postgres_url_keeps_its_tls_options(tmp_path: Path) -> None:
    root = write_test_ca(tmp_path)
    url = (
        f"postgresql://svc:{PASSWORD}@db:5432/app"
        f"?sslmode=verify-full&sslrootcert={root}"
    )

    settings = postgres_settings(url)

    assert settings.url is not None
    options = conninfo_to_dict(settings.url.get_secret_value())
    assert (options["sslmode"], options["sslrootcert"]) == ("verify-full", str(root))
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in settings.model_dump_json()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://db/app?sslmode=require",
        "postgresql://db/app?sslmode=verify-full&sslrootcert=system",
        "host=db dbname=app sslmode=verify-ca sslrootcert=system",
        # Without verification libpq does not read the file: it need not exist.
        "postgresql://db/app?sslmode=require&sslrootcert=/nowhere/root.crt",
    ],
)
def test_postgres_tls_options_that_libpq_takes_are_accepted(url: str) -> None:
    assert postgres_settings(url).url is not None


def test_an_unknown_sslmode_is_refused_with_the_modes_libpq_takes() -> None:
    with pytest.raises(ValidationError) as caught:
        postgres_settings("postgresql://db/app?sslmode=verify")

    assert caught.value.errors()[0]["msg"].endswith(
        "expected sslmode to be one of disable, allow, prefer, require, verify-ca,"
        " verify-full, got 'verify'"
    )


@pytest.mark.parametrize("sslmode", ["verify-ca", "verify-full"])
def test_a_verifying_sslmode_with_a_missing_root_certificate_is_refused(
    sslmode: str, tmp_path: Path
) -> None:
    missing = tmp_path / "root.crt"

    with pytest.raises(ValidationError, match=f"sslrootcert '{missing}', which is not"):
        postgres_settings(
            f"postgresql://db/app?sslmode={sslmode}&sslrootcert={missing}"
        )


def test_an_unknown_url_option_is_named() -> None:
    with pytest.raises(ValidationError, match='invalid URI query parameter: "sslmdoe"'):
        postgres_settings("postgresql://db/app?sslmdoe=require")


@pytest.mark.parametrize(
    "url",
    [
        # libpq's own message would quote the password's bad escape.
        "postgresql://svc:s3cr3t%zz@db/app",
        "postgresql://svc:s3cr3t@db/app?sslmode=bogus",
        "mysql://svc:s3cr3t@db/app",
    ],
    ids=["does-not-parse", "bad-sslmode", "not-postgresql"],
)
def test_a_refused_url_is_never_echoed(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        postgres_settings(url)

    assert "s3cr3t" not in caught.value.errors()[0]["msg"]
    assert "s3cr3t" not in str(caught.value)


# -- topics -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "taken_by"),
    [
        ("dead_letter_topic", "PERSON_TOPIC"),
        ("dead_letter_topic", "CONFIG_TOPIC"),
        ("membership_topic", "PERSON_TOPIC"),
        ("config_topic", "PERSON_TOPIC"),
    ],
)
def test_a_topic_used_twice_is_refused_naming_both_variables(field, taken_by):
    # A dead-letter topic the worker consumes would dead-letter its own letters.
    taken = getattr(KafkaSettings(), taken_by.lower())

    with pytest.raises(ValidationError) as refused:
        KafkaSettings(**{field: taken})

    message = str(refused.value)
    assert f"MENTORFLOW_KAFKA_{taken_by}" in message
    assert f"MENTORFLOW_KAFKA_{field.upper()}" in message


@pytest.mark.parametrize("name", ["", "hr person events", "hr/events", "..", "x" * 250])
def test_a_topic_name_kafka_refuses_is_refused(name):
    with pytest.raises(ValidationError, match="expected a Kafka topic name"):
        KafkaSettings(person_topic=name)


def test_the_command_line_names_a_topic_used_twice(monkeypatch, capsys):
    monkeypatch.setenv("MENTORFLOW_KAFKA_DEAD_LETTER_TOPIC", "hr.person-events")

    assert main(["members", "guild"]) == 2

    error = capsys.readouterr().err
    assert "MENTORFLOW_KAFKA_DEAD_LETTER_TOPIC: " in error
    assert "already MENTORFLOW_KAFKA_PERSON_TOPIC" in error


# -- names the clients need ---------------------------------------------------------


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_consumer_group_is_refused_naming_the_variable(name):
    # faust would only refuse it with a traceback once the worker starts.
    with pytest.raises(ValidationError, match="MENTORFLOW_KAFKA_CONSUMER_GROUP"):
        KafkaSettings(consumer_group=name)


@pytest.mark.parametrize("host", ["", " "])
def test_an_empty_web_host_is_refused_rather_than_listening_everywhere(host):
    with pytest.raises(ValidationError, match="MENTORFLOW_WEB_HOST"):
        WorkerSettings(web_host=host)
