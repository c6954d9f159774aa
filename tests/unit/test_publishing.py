"""Event builders refuse contract violations before anything is sent, naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from contracts.events import ADMIN_EVENTS, PROVIDER_SYNC_EVENTS
from worker.catalog.formats import CatalogModel
from worker.decoding import Record, decode, verify_signature
from worker.domain.model import Rejection
from worker.publishing import (
    ADMIN_BUILDERS,
    ContractError,
    encode,
    mark_legacy_event,
    patch_meta_event,
    producer_options,
    register_event,
    set_tier_event,
    signing_headers,
    synced_event,
    topic_for,
    withdrawn_event,
)
from worker.settings import load_settings


def test_synced_and_withdrawn_events_decode_as_the_worker_decodes() -> None:
    model = CatalogModel("gpt-4o", "gpt-4o", "openai", {"contextLength": 128000})
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for event in (synced_event(model, occurred_at=at), withdrawn_event("gpt-4o", "job")):
        record = Record("t", 0, 0, b"gpt-4o", encode(event))
        assert not isinstance(decode(record, PROVIDER_SYNC_EVENTS), Rejection)
    assert synced_event(model, occurred_at=at)["occurredAt"] == "2026-01-01T00:00:00+00:00"


def test_synced_event_refuses_admin_owned_meta() -> None:
    model = CatalogModel("gpt-4o", "gpt-4o", "openai", {"requiredTier": "pro"})
    with pytest.raises(ContractError, match=r"data\.meta: .*not allowed: requiredTier"):
        synced_event(model)


def test_violations_name_every_field_path() -> None:
    with pytest.raises(ContractError) as caught:
        register_event("bad id", name="", provider="Acme", meta={"contextLength": 0}, actor="ops")
    paths = [path for path, _ in caught.value.problems]
    assert paths == ["data.id", "data.name", "data.provider", "data.meta.contextLength"]
    assert str(caught.value).startswith("model.register event violates the contract: data.id")
    with pytest.raises(ContractError, match=r"data\.allowedTiers"):
        set_tier_event("m", "pro", mode="whitelist", allowed_tiers=["gold"], actor="ops")
    with pytest.raises(ContractError, match=r"data\.sunsetDate"):
        mark_legacy_event("m", sunset_date="2026-01-01", actor="ops")
    with pytest.raises(ContractError, match=r"^model\.patch_meta event .*data\.meta"):
        patch_meta_event("m", {}, actor="ops")
    with pytest.raises(ContractError, match="actor"):
        patch_meta_event("m", {"a": 1}, actor="")


def test_every_admin_action_has_a_builder_that_needs_an_actor() -> None:
    assert sorted(ADMIN_BUILDERS) == [
        "archive",
        "clear-legacy",
        "mark-legacy",
        "patch-meta",
        "register",
        "set-availability",
        "set-tier",
        "unarchive",
    ]
    event = ADMIN_BUILDERS["set-availability"]("gpt-4o", False, actor="ops")
    assert event["data"] == {"id": "gpt-4o", "isAvailable": False}
    assert topic_for(event, load_settings()) == load_settings().admin_topic
    record = Record("t", 0, 0, b"gpt-4o", encode(event))
    assert not isinstance(decode(record, ADMIN_EVENTS), Rejection)


def test_signing_uses_the_first_key_and_only_for_admin_events() -> None:
    settings = load_settings(admin_keys={"new": SecretStr("s1"), "old": SecretStr("s0")})
    event = ADMIN_BUILDERS["archive"]("gpt-4o", actor="ops")
    value = encode(event)
    headers = signing_headers(event["type"], value, settings)
    record = Record("t", 0, 0, b"gpt-4o", value, tuple(headers))
    assert verify_signature(record, {"new": b"s1"}) is None
    assert signing_headers("model.synced", value, settings) == []
    assert signing_headers(event["type"], value, load_settings(admin_keys={})) == []


def test_encode_is_compact_utf8_json() -> None:
    event = {"a": "é", "b": [1, 2]}
    assert encode(event) == '{"a":"é","b":[1,2]}'.encode()
    assert json.loads(encode(event)) == event


def test_producer_options_from_settings() -> None:
    plain = producer_options(load_settings(kafka_idempotent_producer=False))
    assert plain["enable_idempotence"] is False
    assert plain["acks"] == "all"
    assert "sasl_mechanism" not in plain and "ssl_context" not in plain
    sasl = producer_options(
        load_settings(
            kafka_bootstrap_servers="b1:9093,b2:9093",
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="svc",
            kafka_sasl_password=SecretStr("pw"),
        )
    )
    assert sasl["bootstrap_servers"] == ["b1:9093", "b2:9093"]
    assert (sasl["sasl_mechanism"], sasl["sasl_plain_username"]) == ("SCRAM-SHA-512", "svc")
    assert sasl["sasl_plain_password"] == "pw"
    assert sasl["ssl_context"] is not None
