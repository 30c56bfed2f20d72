"""The Dockerfile and compose.yaml agree with the code they deploy.

Docker does not run on the test machines, so these tests read the files and
check them against the settings, the command line and the package metadata.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from infra.settings import KafkaSettings, PostgresSettings, WorkerSettings
from workers.cli import _parser

ROOT = Path(__file__).parents[2]
SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    PostgresSettings,
    KafkaSettings,
    WorkerSettings,
)


def setting_names() -> set[str]:
    """Every environment variable some settings class reads."""
    names = set()
    for settings_class in SETTINGS_CLASSES:
        prefix = settings_class.model_config.get("env_prefix", "")
        for name, field in settings_class.model_fields.items():
            names.add(f"{prefix}{name}".upper())
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names.update(str(choice).upper() for choice in alias.choices)
            elif isinstance(alias, str):
                names.add(alias.upper())
    return names


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def instruction(keyword: str) -> list[str]:
    return [rest for found, rest in dockerfile() if found == keyword]


def docker_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for rest in instruction("ENV"):
        for pair in shlex.split(rest):
            name, _, value = pair.partition("=")
            values[name] = value
    return values


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, as a mapping whether listed or mapped."""
    found = service.get("environment") or {}
    if isinstance(found, list):
        found = dict(item.split("=", 1) for item in found)
    return {str(name): str(value) for name, value in found.items()}


def mentorflow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if "build" in service or str(service.get("image", "")).startswith("mentorflow")
    }


def test_compose_runs_kafka_postgres_a_worker_and_a_relay(compose):
    services = compose["services"]

    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert str(services["postgres"]["image"]).startswith("postgres:15")
    commands = {name: s["command"] for name, s in mentorflow_services(compose).items()}
    assert sorted(commands.values()) == [["relay"], ["worker"]]


def test_every_mentorflow_variable_in_compose_is_a_setting(compose):
    known = setting_names()

    for name, service in mentorflow_services(compose).items():
        variables = [v for v in environment(service) if v.startswith("MENTORFLOW_")]
        assert variables, f"service {name} sets no mentorflow setting"
        unknown = sorted(set(variables) - known)
        assert not unknown, f"service {name} sets unknown settings {unknown}"


def test_compose_settings_parse(compose, monkeypatch):
    for service in mentorflow_services(compose).values():
        for name, value in environment(service).items():
            monkeypatch.setenv(name, value)
        for settings_class in SETTINGS_CLASSES:
            settings_class()


def test_compose_points_the_services_at_each_other(compose):
    services = compose["services"]
    postgres = environment(services["postgres"])
    kafka = environment(services["kafka"])

    for name, service in mentorflow_services(compose).items():
        env = environment(service)
        url = urlsplit(env["MENTORFLOW_POSTGRES_URL"])
        assert (url.hostname, url.username, url.password, url.path) == (
            "postgres",
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            "/" + postgres["POSTGRES_DB"],
        )
        assert f"PLAINTEXT://{env['MENTORFLOW_KAFKA_BOOTSTRAP']}" in (
            kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
        )
        assert {"kafka", "postgres"} <= set(service["depends_on"]), name


def test_a_worker_without_its_relay_has_a_relay_service_beside_it(compose):
    services = mentorflow_services(compose)
    workers = [s for s in services.values() if s["command"] == ["worker"]]
    relays = [s for s in services.values() if s["command"] == ["relay"]]

    for worker in workers:
        in_worker = environment(worker).get("MENTORFLOW_RELAY_IN_WORKER", "true")
        if in_worker.lower() in ("false", "0", "no", "off"):
            assert relays


def test_the_service_commands_are_commands_of_the_cli(compose):
    for service in mentorflow_services(compose).values():
        args = _parser().parse_args(service["command"])
        assert args.run.__doc__


def test_the_image_runs_the_console_script_as_a_non_root_user():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]

    (entrypoint,) = instruction("ENTRYPOINT")
    (command,) = instruction("CMD")
    program, *arguments = json.loads(entrypoint) + json.loads(command)
    assert program in scripts
    assert scripts[program] == "workers.cli:main"
    assert _parser().parse_args(arguments).command == "worker"

    (user,) = instruction("USER")
    assert user.split(":")[0] not in ("root", "0")


def test_the_image_installs_the_package_with_the_pinned_constraints():
    (base,) = instruction("FROM")
    assert base == "python:3.11-slim"
    installs = [run for run in instruction("RUN") if "pip install" in run]
    assert any("-c infra/constraints.txt ." in run for run in installs)

    for copy in instruction("COPY"):
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY names missing {source}"


def test_the_exposed_and_published_ports_are_the_configured_web_port(compose):
    env = docker_env()
    port = int(env["MENTORFLOW_WEB_PORT"])
    assert env["MENTORFLOW_WEB_HOST"] == "0.0.0.0"
    assert {name for name in env if name.startswith("MENTORFLOW_")} <= setting_names()
    assert [int(p.split("/")[0]) for p in instruction("EXPOSE")] == [port]
    (healthcheck,) = instruction("HEALTHCHECK")
    assert f"127.0.0.1:{port}/healthz" in healthcheck

    (worker,) = [
        s for s in mentorflow_services(compose).values() if s["command"] == ["worker"]
    ]
    worker_port = int(environment(worker).get("MENTORFLOW_WEB_PORT", port))
    published = [str(mapping).rsplit(":", 1)[-1] for mapping in worker["ports"]]
    assert published == [str(worker_port)]
    assert f"127.0.0.1:{worker_port}/readyz" in " ".join(worker["healthcheck"]["test"])
