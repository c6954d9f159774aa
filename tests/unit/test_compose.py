"""The local stack (docker-compose.yml + Dockerfile) wires the services as documented.

No Docker needed: these read the files, so a broken dependency chain or a worker that cannot be
scaled is caught in CI on machines without a Docker engine.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return dict(compose["services"])


def env(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {str(k): str(v) for k, v in environment.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service["depends_on"].items()}


def test_the_stack_has_kafka_postgres_a_migration_and_the_worker(services: dict[str, Any]) -> None:
    assert {"kafka", "postgres", "migrate", "worker"} <= set(services)


def test_kafka_is_a_single_kraft_node_advertised_inside_the_network(
    services: dict[str, Any],
) -> None:
    kafka = services["kafka"]
    settings = env(kafka)
    assert kafka["image"].startswith("apache/kafka:")
    assert set(settings["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert settings["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in settings["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert settings["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_postgres_is_version_16(services: dict[str, Any]) -> None:
    assert re.fullmatch(r"postgres:16(\.\d+)?(-\w+)?", services["postgres"]["image"])


@pytest.mark.parametrize("name", ["kafka", "postgres"])
def test_kafka_and_postgres_have_health_checks(services: dict[str, Any], name: str) -> None:
    check = services[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert check["retries"] >= 10


def test_migrate_runs_once_when_postgres_is_healthy(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert depends_on(migrate)["postgres"] == "service_healthy"
    assert migrate.get("restart", "no") == "no"
    assert env(migrate)["MODELREG_DATABASE_URL"].startswith("postgresql://")


def test_worker_starts_after_a_successful_migration_on_a_healthy_kafka(
    services: dict[str, Any],
) -> None:
    worker = services["worker"]
    settings = env(worker)
    assert worker["command"] == ["worker"]
    assert depends_on(worker)["migrate"] == "service_completed_successfully"
    assert depends_on(worker)["kafka"] == "service_healthy"
    assert settings["MODELREG_MIGRATE_ON_START"] == "false"
    assert settings["MODELREG_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert settings["MODELREG_DATABASE_URL"] == env(services["migrate"])["MODELREG_DATABASE_URL"]


def test_worker_can_be_scaled(services: dict[str, Any]) -> None:
    """`--scale worker=3` fails on a fixed container name or a published host port."""
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


def test_app_services_are_built_from_the_dockerfile(services: dict[str, Any]) -> None:
    for name in ("migrate", "worker"):
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context / "Dockerfile").is_file()


def test_the_image_runs_modelreg_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [line.strip() for line in dockerfile.splitlines() if line.strip()]
    final_stage = instructions[
        max(i for i, line in enumerate(instructions) if line.startswith("FROM")) :
    ]
    assert final_stage[0].split()[1] == "python:3.11-slim"
    assert 'ENTRYPOINT ["modelreg"]' in final_stage
    assert 'CMD ["worker"]' in final_stage
    users = [line.split()[1] for line in final_stage if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
