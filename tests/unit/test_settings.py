"""Bad configuration is reported in one line that names the variable and never its secret."""

from __future__ import annotations

import pytest

from worker.settings import ConfigError, load_settings


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("MODELREG_KAFKA_BOOTSTRAP_SERVERS", "not a server", "MODELREG_KAFKA_BOOTSTRAP_SERVERS"),
        ("MODELREG_DATABASE_URL", "mysql://x", "MODELREG_DATABASE_URL"),
        ("MODELREG_BATCH_MAX_RECORDS", "0", "MODELREG_BATCH_MAX_RECORDS"),
        ("MODELREG_LOG_FORMAT", "xml", "MODELREG_LOG_FORMAT"),
        ("MODELREG_ADMIN_KEYS", "{not json", "admin_keys"),
        ("MODELREG_ADMIN_KEYS", '{"k1": 5}', "MODELREG_ADMIN_KEYS"),
    ],
)
def test_a_malformed_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert "\n" not in message
    assert named in message


def test_secrets_are_not_in_the_repr_of_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELREG_DATABASE_URL", "postgresql://u:db-s3cret@h/db")
    monkeypatch.setenv("MODELREG_KAFKA_SASL_PASSWORD", "sasl-s3cret")
    monkeypatch.setenv("MODELREG_ADMIN_KEYS", '{"k1": "hmac-s3cret"}')
    text = repr(load_settings())
    assert "s3cret" not in text


def test_defaults_name_the_four_topics_of_the_wire_contract() -> None:
    settings = load_settings()
    assert (
        settings.provider_sync_topic,
        settings.admin_topic,
        settings.lifecycle_topic,
        settings.dead_letter_topic,
    ) == (
        "model-registry.provider-sync.v1",
        "model-registry.admin.v1",
        "model-registry.lifecycle.v1",
        "model-registry.dead-letter.v1",
    )
