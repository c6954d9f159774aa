"""The JSON Schemas kept in the repository are exactly what the contracts generate."""

from __future__ import annotations

import json

from contracts.schema import SCHEMA_DIR, render_all


def test_committed_schemas_are_up_to_date() -> None:
    expected = render_all()
    committed = {p.name: p.read_text(encoding="utf-8") for p in SCHEMA_DIR.glob("*.json")}
    stale = sorted(name for name in expected if committed.get(name) != expected[name])
    extra = sorted(set(committed) - set(expected))
    assert not stale and not extra, (
        f"run `modelreg contracts export {SCHEMA_DIR}`; stale: {stale}, extra: {extra}"
    )


def test_every_inbound_event_type_has_a_schema_naming_its_fields_in_camel_case() -> None:
    schemas = {name: json.loads(text) for name, text in render_all().items()}
    set_tier = schemas["model.set_tier.schema.json"]
    data = set_tier["$defs"]["SetTierData"]["properties"]
    assert {"requiredTier", "tierRestrictionMode", "allowedTiers", "reason"} <= set(data)
    assert "actor" in set_tier["required"]
    assert schemas["model.synced.schema.json"]["$defs"]["ModelSyncedData"]["properties"]["meta"][
        "$ref"
    ] == ("model-meta.schema.json")
