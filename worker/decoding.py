"""Turn one Kafka record into a typed event, or into the reason it cannot be one.

Everything a publisher can get wrong is caught here, before the database is touched, and
described precisely enough (field paths included) to fix the event without reading logs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from contracts.events import ADMIN_EVENTS, PROVIDER_SYNC_EVENTS, InboundEvent
from contracts.meta import MAX_META_BYTES, META_KEY_COUNT, RAW_MESSAGE_BOUNDED
from worker.domain.model import Rejection, RejectionKind
from worker.values import value_object

SIGNATURE_HEADER = "modelreg-signature"
KEY_ID_HEADER = "modelreg-key-id"


@value_object
class Record:
    """One consumed Kafka record, as raw as it arrived."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def _detail(error: ValidationError) -> tuple[Mapping[str, Any], ...]:
    return tuple(
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in error.errors(include_url=False, include_input=False)
    )


def _reject_validation(error: ValidationError, value: bytes) -> Rejection:
    errors = error.errors(include_url=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as bad:
            return Rejection(RejectionKind.INVALID_ENCODING, f"value is not valid UTF-8: {bad}")
        return Rejection(RejectionKind.INVALID_JSON, first["msg"])
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return Rejection(RejectionKind.UNKNOWN_TYPE, first["msg"], _detail(error))
    fields = ", ".join(".".join(map(str, e["loc"][1:] or e["loc"])) or "(root)" for e in errors)
    return Rejection(
        RejectionKind.CONTRACT_VIOLATION,
        f"{len(errors)} contract violation(s): {fields}"[:500],
        _detail(error),
    )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        keys = [k for k, _ in pairs]
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"duplicate keys in a JSON object: {', '.join(duplicated)}")
    return obj


_STRICT_KEYS = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _has_duplicate_keys(value: bytes) -> str | None:
    """Ambiguous JSON (same key twice, escapes included) is rejected, not resolved by whim."""
    try:
        # one decoder for all (json.loads would build a new one per call), on text (invalid
        # UTF-8 is reported by the validation that follows)
        _STRICT_KEYS.decode(value.decode("utf-8"))
    except ValueError as error:
        return str(error) if "duplicate keys" in str(error) else None
    except RecursionError:
        return None
    return None


#: How much longer a JSON document's text can get once parsed and serialized again: strings
#: and layout never grow, but a number can (``1e15`` becomes ``1000000000000000.0``, 4.5 times).
REWRITE_GROWTH: Final = 5


def _raw_bounded(value: bytes) -> bool:
    """True when the raw message alone proves meta small and NUL-free.

    A message under a fifth of the meta cap cannot hold an oversized meta once meta is
    serialized again (:data:`REWRITE_GROWTH`), and a NUL can only arrive escaped.
    """
    return len(value) <= MAX_META_BYTES // REWRITE_GROWTH and b"\\u0000" not in value


#: Whitespace JSON allows between tokens (inside strings it is just text).
_JSON_SPACE = b" \t\n\r"


def _keys_all_parsed(value: bytes, event: InboundEvent, meta_keys: int | None) -> bool:
    """True when every key of the raw message is in the parsed event, so none was given twice.

    Parsing keeps one copy of a duplicate key, so the keys parsed (the envelope's, ``data``'s and
    those of its meta, nested objects included) are at most the keys written. With whitespace
    removed, every key written ends in ``":``, and string values can only add more. So when the
    count of ``":`` equals the keys parsed, no key was dropped. Anything else (an object outside
    meta, ``":`` inside a string) leaves the answer to the full duplicate-key pass.
    """
    if meta_keys is None:
        return False
    parsed = len(event.model_fields_set) + len(event.data.model_fields_set) + meta_keys
    return value.translate(None, _JSON_SPACE).count(b'":') == parsed


def _duplicate_keys(value: bytes) -> Rejection | None:
    duplicate = _has_duplicate_keys(value)
    return None if duplicate is None else Rejection(RejectionKind.INVALID_JSON, duplicate)


def verify_signature(record: Record, keys: Mapping[str, bytes]) -> Rejection | None:
    """HMAC-SHA256 of the value bytes, hex, with the key id in its own header."""
    key_id = record.header(KEY_ID_HEADER)
    signature = record.header(SIGNATURE_HEADER)
    if key_id is None or signature is None:
        return Rejection(RejectionKind.UNAUTHENTICATED, "admin event is not signed")
    secret = keys.get(key_id.decode("utf-8", "replace"))
    if secret is None:
        return Rejection(RejectionKind.UNAUTHENTICATED, "admin event is signed with an unknown key")
    expected = hmac.new(secret, record.value or b"", hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().lower()):
        return Rejection(RejectionKind.UNAUTHENTICATED, "admin event signature does not match")
    return None


def sign(value: bytes, key_id: str, secret: bytes) -> list[tuple[str, bytes]]:
    """Headers a publisher adds to an admin event when the worker requires signatures."""
    digest = hmac.new(secret, value, hashlib.sha256).hexdigest()
    return [(KEY_ID_HEADER, key_id.encode()), (SIGNATURE_HEADER, digest.encode())]


def decode(
    record: Record,
    adapter: TypeAdapter[InboundEvent],
    *,
    admin_keys: Mapping[str, bytes] | None = None,
) -> InboundEvent | Rejection:
    """Decode a record with the adapter of its topic; never raises for bad input."""
    value = record.value
    if not value:
        return Rejection(RejectionKind.INVALID_JSON, "value is empty")
    if admin_keys:
        unauthenticated = verify_signature(record, admin_keys)
        if unauthenticated is not None:
            return unauthenticated
    # Duplicate keys are reported before anything else, but looked for only when the parsed
    # event cannot prove there are none: a second parse of every message costs a fifth of it.
    context: dict[str, Any] = {RAW_MESSAGE_BOUNDED: _raw_bounded(value), META_KEY_COUNT: None}
    try:
        event = adapter.validate_json(value, context=context)
    except ValidationError as error:
        return _duplicate_keys(value) or _reject_validation(error, value)
    except (RecursionError, ValueError) as error:
        return _duplicate_keys(value) or Rejection(
            RejectionKind.INVALID_JSON, f"value cannot be parsed: {error}"[:500]
        )
    if not _keys_all_parsed(value, event, context[META_KEY_COUNT]):
        duplicate = _duplicate_keys(value)
        if duplicate is not None:
            return duplicate
    key = record.key.decode("utf-8", "replace") if record.key is not None else None
    if key != event.data.id:
        return Rejection(
            RejectionKind.CONTRACT_VIOLATION,
            f"Kafka key must be the model id {event.data.id!r}, got {key!r}",
            ({"loc": ["key"], "msg": "must equal data.id", "type": "key_mismatch"},),
        )
    return event


def adapter_for(
    topic: str, provider_sync_topic: str, admin_topic: str
) -> TypeAdapter[InboundEvent]:
    if topic == admin_topic:
        return ADMIN_EVENTS
    if topic == provider_sync_topic:
        return PROVIDER_SYNC_EVENTS
    raise ValueError(f"not an input topic: {topic}")
