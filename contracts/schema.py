"""JSON Schema of every wire type, so publishers in other languages validate what they send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from contracts import events
from contracts.meta import ModelMeta

SCHEMA_DIR = Path(__file__).parent / "schemas"

#: file stem -> the model or union it documents
DOCUMENTS: dict[str, Any] = {
    "model-meta": ModelMeta,
    "provider-sync-event": events.ProviderSyncEvent,
    "admin-event": events.AdminEvent,
    "lifecycle-event": events.LifecycleEvent,
    **{
        cls.model_fields["type"].annotation.__args__[0]: cls  # type: ignore[union-attr]
        for cls in (
            events.ModelSynced,
            events.ModelWithdrawn,
            events.Register,
            events.PatchMeta,
            events.SetTier,
            events.MarkLegacy,
            events.ClearLegacy,
            events.Archive,
            events.Unarchive,
            events.SetAvailability,
        )
    },
}


def json_schema(target: Any) -> dict[str, Any]:
    """The validation-mode schema with camelCase names, as the worker parses it."""
    if isinstance(target, type) and issubclass(target, BaseModel):
        schema = target.model_json_schema(by_alias=True, mode="validation")
    else:
        schema = TypeAdapter(target).json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _external_refs(text: str) -> str:
    # pydantic resolves every "$ref" itself; cross-file references are written as "x-ref".
    return text.replace('"x-ref":', '"$ref":')


def render_all() -> dict[str, str]:
    """File name -> file text, deterministic so the committed copies can be checked."""
    return {
        f"{stem}.schema.json": _external_refs(
            json.dumps(json_schema(target), indent=2, sort_keys=True) + "\n"
        )
        for stem, target in DOCUMENTS.items()
    }


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
