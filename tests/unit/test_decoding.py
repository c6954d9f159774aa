"""Decoding a Kafka record: a typed event, or a precise rejection that becomes a dead letter."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import jsoncodec
from contracts.events import ADMIN_EVENTS, PROVIDER_SYNC_EVENTS, ModelSynced, SetAvailability
from contracts.meta import MAX_META_BYTES
from tests.unit.builders import SYNC_TOPIC, record, wire
from worker import decoding
from worker.decoding import (
    KEY_ID_HEADER,
    REWRITE_GROWTH,
    SIGNATURE_HEADER,
    Record,
    adapter_for,
    decode,
    sign,
)
from worker.domain.model import Rejection, RejectionKind

KEYS = {"k1": b"secret-one", "k2": b"secret-two"}


def synced_body(model_id: str = "m1", **meta: Any) -> dict[str, Any]:
    data = {"id": model_id, "name": "M", "provider": "openai", "meta": meta}
    return wire("model.synced", data)


def admin_body(model_id: str = "m1") -> dict[str, Any]:
    return wire("model.set_availability", {"id": model_id, "isAvailable": True})


def rejection(result: object) -> Rejection:
    assert isinstance(result, Rejection), f"expected a rejection, got {result!r}"
    return result


def signed(body: dict[str, Any], key_id: str = "k1", secret: bytes | None = None) -> Record:
    value = json.dumps(body).encode()
    headers = sign(value, key_id, secret if secret is not None else KEYS[key_id])
    return record(value, headers=headers)


# --- success ---------------------------------------------------------------------------------


def test_a_valid_provider_sync_record_decodes_to_its_typed_event() -> None:
    event = decode(record(synced_body(displayName="M"), topic=SYNC_TOPIC), PROVIDER_SYNC_EVENTS)
    assert isinstance(event, ModelSynced)
    assert event.data.meta == {"displayName": "M"}


def test_a_valid_admin_record_decodes_to_its_typed_event() -> None:
    event = decode(record(admin_body()), ADMIN_EVENTS)
    assert isinstance(event, SetAvailability)
    assert event.data.is_available is True


def test_the_input_topic_selects_the_adapter() -> None:
    assert adapter_for("admin", "provider-sync", "admin") is ADMIN_EVENTS
    assert adapter_for("provider-sync", "provider-sync", "admin") is PROVIDER_SYNC_EVENTS
    with pytest.raises(ValueError):
        adapter_for("lifecycle", "provider-sync", "admin")


# --- invalid_json / invalid_encoding -------------------------------------------------------


@pytest.mark.parametrize("value", [None, b""])
def test_an_empty_value_is_invalid_json(value: bytes | None) -> None:
    assert rejection(decode(record(value), ADMIN_EVENTS)).kind is RejectionKind.INVALID_JSON


@pytest.mark.parametrize("value", [b"{", b"not json", b'{"a": 1,}', b"\x00", b"[1, 2"])
def test_malformed_json_is_invalid_json(value: bytes) -> None:
    assert rejection(decode(record(value), ADMIN_EVENTS)).kind is RejectionKind.INVALID_JSON


@pytest.mark.parametrize("value", [b"\xff\xfe{}", b'{"type": "\xc3\x28"}'])
def test_a_value_that_is_not_utf8_is_invalid_encoding(value: bytes) -> None:
    result = rejection(decode(record(value), ADMIN_EVENTS))
    assert result.kind is RejectionKind.INVALID_ENCODING


def test_a_duplicated_key_in_a_valid_event_is_invalid_json() -> None:
    text = json.dumps(admin_body())
    value = text.replace('"source": "tests"', '"source": "tests", "source": "other"').encode()
    assert value != text.encode()
    result = rejection(decode(record(value), ADMIN_EVENTS))
    assert result.kind is RejectionKind.INVALID_JSON
    assert "source" in result.message


def test_a_duplicated_key_inside_data_is_invalid_json() -> None:
    text = json.dumps(admin_body())
    value = text.replace('"isAvailable": true', '"isAvailable": true, "isAvailable": false')
    result = rejection(decode(record(value.encode()), ADMIN_EVENTS))
    assert result.kind is RejectionKind.INVALID_JSON


def test_a_duplicated_key_is_invalid_json_even_when_the_last_value_breaks_the_contract() -> None:
    text = json.dumps(admin_body())
    value = text.replace('"schemaVersion": 1', '"schemaVersion": 1, "schemaVersion": 2')
    result = rejection(decode(record(value.encode()), ADMIN_EVENTS))
    assert result.kind is RejectionKind.INVALID_JSON


def test_a_key_duplicated_through_a_json_escape_is_invalid_json() -> None:
    text = json.dumps(admin_body())
    value = text.replace('"isAvailable": true', '"isAvailable": true, "\\u0069sAvailable": false')
    assert json.loads(value)["data"] == {"id": "m1", "isAvailable": False}
    result = rejection(decode(record(value.encode()), ADMIN_EVENTS))
    assert result.kind is RejectionKind.INVALID_JSON


def test_the_same_text_as_a_key_and_as_a_value_is_not_a_duplicate() -> None:
    body = admin_body()
    body["source"] = "isAvailable"
    body["actor"] = '"isAvailable": x'
    assert isinstance(decode(record(body), ADMIN_EVENTS), SetAvailability)


def _sync_text() -> str:
    body = synced_body(
        displayName="M",
        contextLength=8192,
        capabilities=["chat"],
        providerMetadata={"family": "gpt", "limits": {"rpm": 60}, "tags": [{"k": "v"}]},
    )
    return json.dumps(body, separators=(",", ":"))


#: The same document with whitespace where JSON allows it (the body has no "," or ":" in strings).
LAYOUTS = {
    "compact": lambda text: text,
    "spaced": lambda text: text.replace('":', '": ').replace(',"', ', "'),
    "newlines": lambda text: text.replace('{"', '{\n  "').replace(',"', ',\n  "'),
    "space before colon": lambda text: text.replace('":', '" :'),
}
#: (a key of the sync as written in the compact layout, the same key given twice)
SYNC_DUPLICATES = {
    "envelope": ('"source":"tests"', '"source":"tests","source":"other"'),
    "data": ('"name":"M"', '"name":"M","name":"N"'),
    "meta": ('"contextLength":8192', '"contextLength":8192,"contextLength":4096'),
    "nested meta": ('"rpm":60', '"rpm":60,"rpm":61'),
    "object in a list": ('"k":"v"', '"k":"v","k":"w"'),
    "escaped": ('"family":"gpt"', '"family":"gpt","f\\u0061mily":"gpt"'),
    "tab before the colon": ('"rpm":60', '"rpm":60,"rpm"\t:61'),
    "newline before the colon": ('"source":"tests"', '"source":"tests","source"\n:"other"'),
    "breaking the contract": ('"contextLength":8192', '"contextLength":8192,"contextLength":0'),
}


def sync_record(value: str) -> Record:
    return record(value.encode(), key=b"m1", topic=SYNC_TOPIC)


@pytest.fixture
def second_parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The messages the full duplicate-key pass reads during the test, in order."""
    seen: list[bytes] = []
    full_pass = decoding._has_duplicate_keys
    monkeypatch.setattr(decoding, "_has_duplicate_keys", lambda v: seen.append(v) or full_pass(v))
    return seen


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("where", SYNC_DUPLICATES)
def test_a_duplicated_key_anywhere_in_a_provider_sync_is_invalid_json(
    where: str, layout: str
) -> None:
    text, duplicated = SYNC_DUPLICATES[where]
    compact = _sync_text()
    assert compact.count(text) == 1

    value = LAYOUTS[layout](compact.replace(text, duplicated))
    result = rejection(decode(sync_record(value), PROVIDER_SYNC_EVENTS))

    assert result.kind is RejectionKind.INVALID_JSON
    assert "duplicate keys" in result.message


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_provider_sync_without_duplicates_decodes_in_every_layout(layout: str) -> None:
    compact = _sync_text()
    value = LAYOUTS[layout](compact)
    assert json.loads(value) == json.loads(compact)
    assert isinstance(decode(sync_record(value), PROVIDER_SYNC_EVENTS), ModelSynced)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_provider_sync_is_parsed_once_when_its_keys_prove_none_is_repeated(
    layout: str, second_parses: list[bytes]
) -> None:
    decode(sync_record(LAYOUTS[layout](_sync_text())), PROVIDER_SYNC_EVENTS)

    assert second_parses == []


@pytest.mark.parametrize("duplicated", [True, False])
def test_a_register_is_parsed_once_and_its_duplicated_meta_key_still_found(
    duplicated: bool, second_parses: list[bytes]
) -> None:
    data = {"id": "m1", "name": "M", "provider": "openai", "meta": {"displayName": "M"}}
    value = json.dumps(wire("model.register", data), separators=(",", ":"))
    if duplicated:
        value = value.replace('"displayName":"M"', '"displayName":"M","displayName":"N"')

    result = decode(record(value.encode()), ADMIN_EVENTS)

    if duplicated:
        assert rejection(result).kind is RejectionKind.INVALID_JSON
    else:
        assert not isinstance(result, Rejection)
        assert second_parses == []


def test_key_like_text_inside_provider_sync_strings_is_not_a_duplicate() -> None:
    body = synced_body(description='"displayName":"x", "a": 1', displayName='":')
    value = json.dumps(body, separators=(",", ":"))
    assert isinstance(decode(sync_record(value), PROVIDER_SYNC_EVENTS), ModelSynced)


def dump_repeating(value: Any, repeat_in: int, seen: list[int]) -> str:
    """Compact JSON, with the first key of the ``repeat_in``-th object (in document order)
    written twice; ``seen`` counts the objects written so far."""
    if isinstance(value, dict):
        index = len(seen)
        seen.append(index)
        pairs = [f"{json.dumps(k)}:{dump_repeating(v, repeat_in, seen)}" for k, v in value.items()]
        if index == repeat_in and pairs:
            pairs.insert(0, f"{json.dumps(next(iter(value)))}:0")
        return "{" + ",".join(pairs) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump_repeating(v, repeat_in, seen) for v in value) + "]"
    return json.dumps(value)


json_values = st.recursive(
    st.integers(0, 9) | st.text('ab:",\\', max_size=4),
    lambda children: (
        st.lists(children, max_size=2)
        | st.dictionaries(st.text('ab":', min_size=1, max_size=3), children, min_size=1, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    provider_metadata=st.dictionaries(st.text("xyz", min_size=1), json_values, min_size=1),
    pick=st.integers(min_value=0, max_value=1000),
)
def test_any_key_given_twice_in_a_provider_sync_is_found(
    provider_metadata: dict[str, Any], pick: int
) -> None:
    body = synced_body(providerMetadata=provider_metadata)
    objects: list[int] = []
    dump_repeating(body, -1, objects)

    value = dump_repeating(body, pick % len(objects), [])
    result = rejection(decode(sync_record(value), PROVIDER_SYNC_EVENTS))

    assert result.kind is RejectionKind.INVALID_JSON
    assert "duplicate keys" in result.message


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(provider_metadata=st.dictionaries(st.text("xyz", min_size=1), json_values, min_size=1))
def test_a_provider_sync_with_no_key_given_twice_is_never_taken_for_one(
    provider_metadata: dict[str, Any],
) -> None:
    value = dump_repeating(synced_body(providerMetadata=provider_metadata), -1, [])
    assert isinstance(decode(sync_record(value), PROVIDER_SYNC_EVENTS), ModelSynced)


# --- unknown_type ------------------------------------------------------------------------------


def test_an_unknown_type_is_unknown_type() -> None:
    body = wire("model.exploded", {"id": "m1"})
    assert rejection(decode(record(body), ADMIN_EVENTS)).kind is RejectionKind.UNKNOWN_TYPE


def test_a_missing_type_is_unknown_type() -> None:
    body = wire("model.archive", {"id": "m1"}, omit=("type",))
    assert rejection(decode(record(body), ADMIN_EVENTS)).kind is RejectionKind.UNKNOWN_TYPE


def test_a_provider_sync_type_on_the_admin_topic_is_unknown_type() -> None:
    body = synced_body() | {"actor": "alice"}
    assert rejection(decode(record(body), ADMIN_EVENTS)).kind is RejectionKind.UNKNOWN_TYPE


def test_an_admin_type_on_the_provider_sync_topic_is_unknown_type() -> None:
    result = decode(record(admin_body(), topic=SYNC_TOPIC), PROVIDER_SYNC_EVENTS)
    assert rejection(result).kind is RejectionKind.UNKNOWN_TYPE


# --- contract_violation --------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"[]", b"1", b'"text"', b"null"])
def test_json_that_is_not_an_object_is_a_contract_violation(value: bytes) -> None:
    kind = rejection(decode(record(value), ADMIN_EVENTS)).kind
    assert kind is RejectionKind.CONTRACT_VIOLATION


def test_a_contract_violation_carries_every_error_with_its_field_path_as_json() -> None:
    body = synced_body(contextLength=0)
    body["source"] = ""
    result = rejection(decode(record(body, topic=SYNC_TOPIC), PROVIDER_SYNC_EVENTS))
    assert result.kind is RejectionKind.CONTRACT_VIOLATION
    detail = json.loads(json.dumps(list(result.detail)))
    paths = {tuple(error["loc"][-3:]) for error in detail}
    assert ("data", "meta", "contextLength") in paths
    assert any(error["loc"][-1] == "source" for error in detail)
    assert all(error["msg"] and error["type"] for error in detail)
    assert "data.meta.contextLength" in result.message


def test_an_admin_owned_key_in_a_provider_sync_is_a_contract_violation_naming_the_key() -> None:
    body = synced_body(requiredTier="free")
    result = rejection(decode(record(body, topic=SYNC_TOPIC), PROVIDER_SYNC_EVENTS))
    assert result.kind is RejectionKind.CONTRACT_VIOLATION
    assert result.detail[0]["loc"][-2:] == ["data", "meta"]
    assert "requiredTier" in result.detail[0]["msg"]


def test_an_admin_event_without_actor_is_a_contract_violation_at_actor() -> None:
    body = wire("model.archive", {"id": "m1"}, omit=("actor",))
    result = rejection(decode(record(body), ADMIN_EVENTS))
    assert result.kind is RejectionKind.CONTRACT_VIOLATION
    assert result.detail[0]["loc"][-1] == "actor"


def test_the_rejection_message_stays_short_for_huge_errors() -> None:
    body = wire("model.set_tier", {"id": "m1", "requiredTier": "pro"})
    body["data"].update({f"unexpected{i}": i for i in range(200)})
    result = rejection(decode(record(body), ADMIN_EVENTS))
    assert result.kind is RejectionKind.CONTRACT_VIOLATION
    assert len(result.message) <= 500
    assert len(result.detail) == 200


def test_a_small_message_whose_numbers_outgrow_the_meta_cap_once_stored_is_a_violation() -> None:
    # 20 KB on the wire; 76 KB once stored, where every 1e15 is written 1000000000000000.0
    body = synced_body(providerMetadata={"x": "__N__"})
    value = json.dumps(body).replace('"__N__"', "[" + ",".join(["1e15"] * 4000) + "]")
    assert len(value) < MAX_META_BYTES // 3

    result = rejection(decode(sync_record(value), PROVIDER_SYNC_EVENTS))

    assert result.kind is RejectionKind.CONTRACT_VIOLATION
    assert "bytes serialized" in json.dumps(result.detail)


def _short_numbers() -> list[str]:
    """Every short way of writing a JSON number, where growth on rewriting is largest."""
    mantissas = [f"{d}{f}" for d in range(20) for f in ("", ".0", ".5", ".25")]
    exponents = ["", *(f"{s}{n}" for s in ("e", "E+", "e-") for n in range(331))]
    return [f"{sign}{m}{e}" for sign in ("", "-") for m in mantissas for e in exponents]


def test_a_number_is_at_most_rewrite_growth_times_longer_once_serialized_again() -> None:
    worst = 0.0
    for text in _short_numbers():
        number = json.loads(text)
        if number in (float("inf"), float("-inf")):
            continue  # refused as non-finite, never stored
        longest = max(len(jsoncodec.dumps(number)), len(json.dumps(number)))
        worst = max(worst, longest / len(text))
    assert 4 < worst <= REWRITE_GROWTH  # 1e15 -> 1000000000000000.0


# --- Kafka key --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["m2", "", "M1", "m1 "])
def test_the_kafka_key_must_equal_the_model_id(key: str) -> None:
    result = rejection(decode(record(admin_body("m1"), key=key), ADMIN_EVENTS))
    assert result.kind is RejectionKind.CONTRACT_VIOLATION
    assert result.detail[0]["loc"] == ["key"]


def test_a_record_without_a_kafka_key_is_a_contract_violation() -> None:
    result = rejection(decode(record(admin_body("m1"), key=None), ADMIN_EVENTS))
    assert result.kind is RejectionKind.CONTRACT_VIOLATION


def test_a_non_utf8_kafka_key_is_rejected_without_crashing() -> None:
    result = rejection(decode(record(admin_body("m1"), key=b"\xff"), ADMIN_EVENTS))
    assert result.kind is RejectionKind.CONTRACT_VIOLATION


# --- signatures ---------------------------------------------------------------------------------


def test_a_correctly_signed_admin_event_is_accepted() -> None:
    assert isinstance(decode(signed(admin_body()), ADMIN_EVENTS, admin_keys=KEYS), SetAvailability)


def test_any_configured_key_may_sign() -> None:
    assert isinstance(
        decode(signed(admin_body(), "k2"), ADMIN_EVENTS, admin_keys=KEYS), SetAvailability
    )


def test_an_unsigned_admin_event_is_unauthenticated_when_keys_are_configured() -> None:
    result = decode(record(admin_body()), ADMIN_EVENTS, admin_keys=KEYS)
    assert rejection(result).kind is RejectionKind.UNAUTHENTICATED


def test_a_signature_without_key_id_is_unauthenticated() -> None:
    good = signed(admin_body())
    headers = tuple(h for h in good.headers if h[0] != KEY_ID_HEADER)
    result = decode(record(good.value, headers=headers), ADMIN_EVENTS, admin_keys=KEYS)
    assert rejection(result).kind is RejectionKind.UNAUTHENTICATED


def test_a_signature_with_an_unknown_key_id_is_unauthenticated() -> None:
    result = decode(signed(admin_body(), "k9", b"secret-one"), ADMIN_EVENTS, admin_keys=KEYS)
    assert rejection(result).kind is RejectionKind.UNAUTHENTICATED


def test_a_signature_made_with_the_wrong_secret_is_unauthenticated() -> None:
    result = decode(signed(admin_body(), "k1", b"guess"), ADMIN_EVENTS, admin_keys=KEYS)
    assert rejection(result).kind is RejectionKind.UNAUTHENTICATED


def test_a_value_changed_after_signing_is_unauthenticated() -> None:
    good = signed(admin_body())
    tampered = good.value.replace(b'"isAvailable": true', b'"isAvailable": false')
    assert tampered != good.value
    result = decode(record(tampered, headers=good.headers), ADMIN_EVENTS, admin_keys=KEYS)
    assert rejection(result).kind is RejectionKind.UNAUTHENTICATED


def test_a_signature_for_another_key_id_does_not_verify() -> None:
    value = json.dumps(admin_body()).encode()
    headers = [(KEY_ID_HEADER, b"k2"), sign(value, "k1", KEYS["k1"])[1]]
    result = decode(record(value, headers=headers), ADMIN_EVENTS, admin_keys=KEYS)
    assert rejection(result).kind is RejectionKind.UNAUTHENTICATED


def test_the_signature_is_hmac_sha256_hex_of_the_value_bytes() -> None:
    import hashlib
    import hmac

    headers = dict(sign(b"payload", "k1", b"s"))
    assert headers[KEY_ID_HEADER] == b"k1"
    assert (
        headers[SIGNATURE_HEADER] == hmac.new(b"s", b"payload", hashlib.sha256).hexdigest().encode()
    )


def test_signatures_are_not_checked_when_no_keys_are_configured() -> None:
    assert isinstance(decode(record(admin_body()), ADMIN_EVENTS, admin_keys=None), SetAvailability)
    assert isinstance(decode(record(admin_body()), ADMIN_EVENTS, admin_keys={}), SetAvailability)


def test_a_signed_event_must_still_satisfy_the_contract() -> None:
    body = admin_body()
    body["data"]["isAvailable"] = "yes"
    result = decode(signed(body), ADMIN_EVENTS, admin_keys=KEYS)
    assert rejection(result).kind is RejectionKind.CONTRACT_VIOLATION


# --- robustness ----------------------------------------------------------------------------


def test_deeply_nested_json_is_rejected_without_crashing() -> None:
    value = b'{"x":' * 100_000 + b"1" + b"}" * 100_000
    assert isinstance(decode(record(value), ADMIN_EVENTS), Rejection)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.binary(max_size=200), key=st.none() | st.binary(max_size=8))
def test_decoding_never_raises_on_arbitrary_bytes(value: bytes, key: bytes | None) -> None:
    for adapter in (ADMIN_EVENTS, PROVIDER_SYNC_EVENTS):
        result = decode(Record("t", 0, 0, key, value), adapter)
        assert isinstance(result, Rejection)


@settings(max_examples=100)
@given(
    data=st.dictionaries(
        st.sampled_from(["id", "name", "provider", "meta", "isAvailable", "x"]),
        st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.just({}),
        max_size=5,
    ),
    event_type=st.sampled_from(["model.synced", "model.set_availability", "model.withdrawn"]),
)
def test_decoding_never_raises_on_arbitrary_data_objects(
    data: dict[str, Any], event_type: str
) -> None:
    body = wire(event_type, data, actor="alice")
    for adapter in (ADMIN_EVENTS, PROVIDER_SYNC_EVENTS):
        decode(record(body, key=str(data.get("id"))), adapter)
