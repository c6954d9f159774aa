"""Runtime configuration, read from ``MODELREG_*`` environment variables.

One pydantic-settings model so that every entry point (worker, CLI, demo) reads the same
names, and a bad value is reported as one readable line instead of a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

PROVIDER_SYNC_TOPIC = "model-registry.provider-sync.v1"
ADMIN_TOPIC = "model-registry.admin.v1"
LIFECYCLE_TOPIC = "model-registry.lifecycle.v1"
DEAD_LETTER_TOPIC = "model-registry.dead-letter.v1"


class ConfigError(Exception):
    """A setting is missing or malformed; the message is meant for the operator as is."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELREG_", extra="ignore")

    database_url: str = Field(
        "postgresql://localhost:5432/postgres",
        description="libpq connection string or URL of the registry database.",
        repr=False,  # it may carry a password
    )
    kafka_bootstrap_servers: str = Field(
        "localhost:9092", description="Comma-separated host:port list of Kafka brokers."
    )
    kafka_group_id: str = Field("model-registry", min_length=1)
    kafka_idempotent_producer: bool = Field(
        True, description="Enable the idempotent producer (brokers without InitProducerId: off)."
    )
    kafka_session_timeout_ms: int = Field(
        10_000,
        ge=1_000,
        description="How long the group waits for a silent worker before reassigning it.",
    )
    kafka_heartbeat_interval_ms: int = Field(3_000, ge=100)
    kafka_fetch_max_wait_ms: int = Field(
        50,
        ge=1,
        description=(
            "Longest a fetch waits on the broker for new records. Apache Kafka answers as soon as"
            " a record arrives; some Kafka-compatible brokers can hold a fetch for the whole wait,"
            " which then bounds the latency."
        ),
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None

    provider_sync_topic: str = PROVIDER_SYNC_TOPIC
    admin_topic: str = ADMIN_TOPIC
    lifecycle_topic: str = LIFECYCLE_TOPIC
    dead_letter_topic: str = DEAD_LETTER_TOPIC

    batch_max_records: int = Field(1000, ge=1, le=100_000)
    batch_timeout_ms: int = Field(
        50,
        ge=1,
        le=60_000,
        description=(
            "How long a poll waits for records before the consumer loop goes round again. A"
            " batch never waits to fill: whatever is fetched is taken at once, and a poll returns"
            " as soon as a fetch brings records."
        ),
    )
    batch_read_ahead: bool = Field(
        True,
        description=(
            "Apply batches on one connection held for the purpose, sending the next batch's"
            " reads right behind each commit so the database reads while the worker decodes."
            " Off: each batch takes a pooled connection and reads after it is decoded."
        ),
    )
    gc_young_threshold: int = Field(
        50_000,
        ge=0,
        description=(
            "Allocations between two collections of Python's youngest generation (Python's"
            " default: 700). A batch holds tens of thousands of objects at a time, nearly all"
            " freed by reference counting once it is written; at 700 the cyclic collector runs"
            " thousands of times per burst. 0 leaves Python's setting."
        ),
    )
    shutdown_timeout_s: float = Field(30.0, gt=0)
    retry_max_backoff_s: float = Field(10.0, gt=0)
    outbox_poll_interval_s: float = Field(1.0, gt=0)
    outbox_min_drain_interval_s: float = Field(
        0.05,
        ge=0,
        le=10,
        description=(
            "Shortest time from the start of one outbox drain to the next. A quiet outbox is"
            " drained as soon as a change is committed; under steady traffic the rows of the"
            " transactions committed meanwhile go out in one drain, not one drain (and one"
            " database commit) each. 0: drain on every notification."
        ),
    )
    sunset_interval_s: float = Field(60.0, gt=0)
    migrate_on_start: bool = True

    admin_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='JSON object of admin signing keys, key id -> secret: {"k1": "..."}.',
    )

    http_port: int | None = Field(None, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _servers_look_like_host_port(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_is_libpq(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if "://" in value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL or a libpq key=value string")
        return value

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",")]

    @property
    def input_topics(self) -> tuple[str, str]:
        return (self.provider_sync_topic, self.admin_topic)


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad setting, naming the environment variable, never its (secret) value."""
    lines = []
    for item in error.errors():
        name = "MODELREG_" + "_".join(str(p) for p in item["loc"]).upper()
        lines.append(f"{name}: {item['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error)) from None
    except SettingsError as error:
        # e.g. MODELREG_ADMIN_KEYS that is not JSON; the cause names the variable, not its value.
        raise ConfigError(f"invalid configuration: {error}") from None


def environment_for(
    settings: Settings, inherited: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The environment in which ``modelreg worker`` runs with exactly ``settings``.

    ``inherited`` minus its own ``MODELREG_*`` variables, plus one per setting that is set
    (secrets in clear: this is what the child process needs), unbuffered output.
    """
    env = {k: v for k, v in inherited.items() if not k.startswith("MODELREG_")}
    for name, value in settings.model_dump(exclude={"admin_keys"}).items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"MODELREG_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    if settings.admin_keys:
        keys = {k: v.get_secret_value() for k, v in settings.admin_keys.items()}
        env["MODELREG_ADMIN_KEYS"] = json.dumps(keys)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
