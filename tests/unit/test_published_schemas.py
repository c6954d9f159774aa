"""The JSON Schemas and the AsyncAPI document kept in the repository are exactly what the
contracts generate."""

from __future__ import annotations

import json

from contracts.schema import SCHEMA_DIR, render_all
from worker.settings import Settings
from worker.transport.asyncapi import ASYNCAPI_FILE, asyncapi_document, render_asyncapi

CONTRACTS_DIR = SCHEMA_DIR.parent
EXPORT = f"run `modelreg contracts export {CONTRACTS_DIR}`"


def test_committed_schemas_are_up_to_date() -> None:
    expected = render_all()
    committed = {p.name: p.read_text(encoding="utf-8") for p in SCHEMA_DIR.glob("*.json")}
    stale = sorted(name for name in expected if committed.get(name) != expected[name])
    extra = sorted(set(committed) - set(expected))
    assert not stale and not extra, f"{EXPORT}; stale: {stale}, extra: {extra}"


def test_every_inbound_event_type_has_a_schema_naming_its_fields_in_camel_case() -> None:
    schemas = {name: json.loads(text) for name, text in render_all().items()}
    set_tier = schemas["model.set_tier.schema.json"]
    data = set_tier["$defs"]["SetTierData"]["properties"]
    assert {"requiredTier", "tierRestrictionMode", "allowedTiers", "reason"} <= set(data)
    assert "actor" in set_tier["required"]
    assert schemas["model.synced.schema.json"]["$defs"]["ModelSyncedData"]["properties"]["meta"][
        "$ref"
    ] == ("model-meta.schema.json")


def test_committed_asyncapi_document_is_up_to_date() -> None:
    committed = (CONTRACTS_DIR / ASYNCAPI_FILE).read_text(encoding="utf-8")
    assert committed == render_asyncapi(), f"{EXPORT}: {ASYNCAPI_FILE} is out of date"


def test_asyncapi_documents_the_four_topics_with_their_direction() -> None:
    defaults = Settings.model_construct()
    document = asyncapi_document()
    channels = {c["address"]: name for name, c in document["channels"].items()}
    actions = {
        channels[document["channels"][op["channel"]["$ref"].split("/")[-1]]["address"]]: op[
            "action"
        ]
        for op in document["operations"].values()
    }
    assert set(channels) == {
        defaults.provider_sync_topic,
        defaults.admin_topic,
        defaults.lifecycle_topic,
        defaults.dead_letter_topic,
    }
    assert actions == {
        "provider-sync": "receive",
        "admin": "receive",
        "lifecycle": "send",
        "dead-letter": "send",
    }
    assert document["asyncapi"].startswith("3.")


def test_asyncapi_payloads_are_the_contract_types() -> None:
    schemas = asyncapi_document()["components"]["schemas"]
    assert {"ModelSynced", "ModelWithdrawn", "SetTier", "MarkLegacy", "LifecycleEvent"} <= set(
        schemas
    )
    assert "requiredTier" in schemas["SetTierData"]["properties"]


def test_asyncapi_follows_the_configured_topic_names() -> None:
    settings = Settings.model_construct(lifecycle_topic="acme.lifecycle")
    addresses = {c["address"] for c in asyncapi_document(settings)["channels"].values()}
    assert "acme.lifecycle" in addresses
