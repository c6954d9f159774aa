"""Passwords and keys never reach the operator's screen or the logs, whatever goes wrong.

The secrets are distinctive strings; every error a user can provoke (unreachable database, bad
settings, an outage while running) is provoked, and its whole output searched for them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from worker.persistence.errors import is_transient
from worker.settings import ConfigError, load_settings
from worker.transport.app import BatchProcessor

DB_PASSWORD = "db-pw-7f3a9c1e"
SASL_PASSWORD = "sasl-pw-2b8d4e6f"
ADMIN_SECRET = "admin-key-9e1c5a3b"
SECRETS = (DB_PASSWORD, SASL_PASSWORD, ADMIN_SECRET)
ROOT = Path(__file__).resolve().parents[2]

UNREACHABLE_DB = f"postgresql://registry:{DB_PASSWORD}@127.0.0.1:1/registry"


def secret_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    env.update(
        MODELREG_DATABASE_URL=UNREACHABLE_DB,
        MODELREG_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        MODELREG_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        MODELREG_KAFKA_SASL_MECHANISM="SCRAM-SHA-256",
        MODELREG_KAFKA_SASL_USERNAME="registry",
        MODELREG_KAFKA_SASL_PASSWORD=SASL_PASSWORD,
        MODELREG_ADMIN_KEYS=json.dumps({"k1": ADMIN_SECRET}),
        MODELREG_LOG_LEVEL="DEBUG",
        COLUMNS="200",
    )
    env.update(overrides)
    return env


def modelreg(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in:\n{text}"


@pytest.mark.parametrize(
    "database_url",
    [
        UNREACHABLE_DB,
        f"postgresql://registry:{DB_PASSWORD}@no-such-host.invalid:5432/registry",
        f"postgresql://registry:{DB_PASSWORD}@127.0.0.1:notaport/registry",
        f"host=127.0.0.1 port=1 user=registry password={DB_PASSWORD}",
        f"mysql://registry:{DB_PASSWORD}@127.0.0.1/registry",
        f"postgresql://registry:{DB_PASSWORD}@127.0.0.1:1/registry?sslmode=bogus",
    ],
    ids=["refused", "unknown-host", "bad-port", "key-value", "wrong-scheme", "bad-sslmode"],
)
def test_modelreg_migrate_with_a_bad_database_fails_in_one_line_without_the_password(
    database_url: str,
) -> None:
    result = modelreg(["migrate"], secret_env(MODELREG_DATABASE_URL=database_url))

    assert result.returncode == 1
    assert result.stderr.strip(), "the operator is told what went wrong"
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert_no_secret(result.stdout + result.stderr)


def test_modelreg_worker_with_an_unreachable_database_does_not_show_any_secret() -> None:
    result = modelreg(["worker"], secret_env())

    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr
    assert_no_secret(result.stdout + result.stderr)


def test_modelreg_worker_with_an_unreachable_sasl_broker_does_not_show_any_secret(
    database_url: str,
) -> None:
    # A reachable database (its URL carrying the password), so the broker is what fails.
    url = make_conninfo(database_url, password=DB_PASSWORD)
    result = modelreg(["worker", "--no-migrate"], secret_env(MODELREG_DATABASE_URL=url))

    assert result.returncode == 1
    assert "cannot connect to Kafka" in result.stderr
    assert_no_secret(result.stdout + result.stderr)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODELREG_ADMIN_KEYS", f'["{ADMIN_SECRET}"]'),
        ("MODELREG_ADMIN_KEYS", f'{{"k1": "{ADMIN_SECRET}", broken'),
        ("MODELREG_KAFKA_SASL_MECHANISM", SASL_PASSWORD),
        ("MODELREG_KAFKA_BOOTSTRAP_SERVERS", "not a server list"),
        ("MODELREG_BATCH_MAX_RECORDS", "many"),
    ],
    ids=["admin-keys-not-an-object", "admin-keys-not-json", "mechanism", "servers", "batch"],
)
def test_invalid_settings_are_reported_without_any_secret(name: str, value: str) -> None:
    result = modelreg(["migrate"], secret_env(**{name: value}))

    assert result.returncode == 1
    assert name in result.stderr or name.removeprefix("MODELREG_").lower() in result.stderr
    assert_no_secret(result.stdout + result.stderr)


def test_a_config_error_message_names_the_setting_not_its_value() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(admin_keys=[ADMIN_SECRET], kafka_sasl_password=SASL_PASSWORD)
    assert "MODELREG_ADMIN_KEYS" in str(raised.value)
    assert_no_secret(str(raised.value))


def _settings() -> Any:
    return load_settings(
        database_url=UNREACHABLE_DB,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="registry",
        kafka_sasl_password=SASL_PASSWORD,
        admin_keys={"k1": ADMIN_SECRET, "k2": ADMIN_SECRET + "-next"},
    )


def test_sasl_password_and_admin_keys_are_masked_in_settings() -> None:
    settings = _settings()
    for text in (repr(settings.kafka_sasl_password), repr(settings.admin_keys)):
        assert_no_secret(text)
    assert_no_secret(settings.model_dump_json(exclude={"database_url"}))


def test_the_database_password_is_masked_in_the_repr_of_settings() -> None:
    settings = _settings()
    assert_no_secret(repr(settings))
    assert_no_secret(str(settings))


async def test_the_outage_log_scrubs_the_database_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """libpq may echo connection parameters; the worker's outage warning must not."""
    settings = _settings().model_copy(update={"retry_max_backoff_s": 0.01})
    attempts = 0

    async def failing_apply(*_: Any) -> Any:
        nonlocal attempts
        attempts += 1
        if attempts == 3:
            processor.stopping.set()
        raise psycopg.OperationalError(
            f'connection to server at "127.0.0.1" failed: password={DB_PASSWORD} rejected'
        )

    processor = BatchProcessor(settings, failing_apply)

    class AnyConnection:
        def connection(self, timeout: float) -> Any:
            class Ctx:
                async def __aenter__(self) -> None:
                    return None

                async def __aexit__(self, *exc: object) -> None:
                    return None

            return Ctx()

    processor.pool = AnyConnection()  # type: ignore[assignment]
    caplog.set_level(logging.DEBUG)

    assert await processor.process([]) is False  # stopped while the database was away

    assert is_transient(psycopg.OperationalError("x"))
    warnings = [r.getMessage() for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(warnings) == 1, "an outage is logged once, not per retry"
    assert "***" in warnings[0]
    assert_no_secret("\n".join(r.getMessage() for r in caplog.records))
    assert_no_secret(caplog.text)
