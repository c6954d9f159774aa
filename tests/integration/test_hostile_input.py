"""Hostile input never stalls or crashes the batch: each bad record becomes one clear dead letter.

Every case drives ``apply_batch`` with raw bytes against a real PostgreSQL holding one known
model, then checks three things: the call returns promptly (no endless retry inside), exactly
one dead letter with the expected ``error.type`` is queued for the record's offset, and the
registry is byte-for-byte what it was.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from worker.decoding import Record
from worker.persistence.registry import DEAD_LETTER_MAX_VALUE, apply_batch
from worker.settings import ADMIN_TOPIC, DEAD_LETTER_TOPIC, PROVIDER_SYNC_TOPIC, Settings

SETTINGS = Settings()
#: A hostile record must be settled well within this; a retry loop would blow it.
RETURNS_WITHIN_S = 10.0
_offsets = iter(range(10**9))

SEED_META = {"displayName": "Seed", "contextLength": 8192, "capabilities": ["chat"]}


def envelope(event_type: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventId": str(uuid.uuid4()),
        "type": event_type,
        "schemaVersion": 1,
        "occurredAt": "2026-01-01T00:00:00+00:00",
        "source": "hostile-tests",
        "data": data,
    }
    if event_type not in ("model.synced", "model.withdrawn"):
        body["actor"] = "admin@example.com"
    return body | extra


def synced(model_id: str = "m1", **meta: Any) -> dict[str, Any]:
    data = {"id": model_id, "name": model_id, "provider": "acme", "meta": meta}
    return envelope("model.synced", data, occurredAt="2026-02-01T00:00:00+00:00")


def topic_of(event_type: Any) -> str:
    return PROVIDER_SYNC_TOPIC if event_type in ("model.synced", "model.withdrawn") else ADMIN_TOPIC


def raw_record(
    value: bytes | None, *, key: bytes | None = b"m1", topic: str = PROVIDER_SYNC_TOPIC
) -> Record:
    return Record(topic, 0, next(_offsets), key, value)


def body_record(body: dict[str, Any], *, key: str | None = None) -> Record:
    data = body.get("data")
    model_id = key or (data.get("id") if isinstance(data, dict) else None) or "m1"
    return raw_record(
        json.dumps(body).encode(), key=str(model_id).encode(), topic=topic_of(body.get("type"))
    )


@pytest.fixture
async def conn(clean_db: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as connection:
        await apply_batch(
            connection,
            [
                body_record(
                    envelope(
                        "model.synced",
                        {"id": "m1", "name": "Seed", "provider": "acme", "meta": SEED_META},
                    )
                )
            ],
            SETTINGS,
        )
        yield connection


async def registry(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT m.*, s.last_synced_at, s.withdrawn FROM models m"
            " LEFT JOIN model_sync_state s ON s.model_id = m.id ORDER BY m.id"
        )
        return await cur.fetchall()


async def dead_letters_for(
    conn: psycopg.AsyncConnection[Any], record: Record
) -> list[tuple[bytes, dict[str, str]]]:
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT value, headers FROM outbox WHERE topic = %s AND dedup_key = %s",
            (DEAD_LETTER_TOPIC, f"dead-letter:{record.topic}:{record.partition}:{record.offset}"),
        )
        return [(bytes(value), dict(headers)) for value, headers in await cur.fetchall()]


async def assert_dead_lettered(
    conn: psycopg.AsyncConnection[Any], record: Record, error_type: str
) -> dict[str, str]:
    """Apply ``record`` alone; it must come back quickly as one dead letter, registry untouched.

    Returns the dead letter's headers for further checks.
    """
    before = await registry(conn)
    report = await asyncio.wait_for(apply_batch(conn, [record], SETTINGS), RETURNS_WITHIN_S)
    assert [r.outcome for r in report.results] == ["rejected"]
    letters = await dead_letters_for(conn, record)
    assert len(letters) == 1, "exactly one dead letter per bad record"
    value, headers = letters[0]
    assert headers["error.type"] == error_type, headers
    assert headers["original.offset"] == str(record.offset)
    if len(record.value or b"") <= DEAD_LETTER_MAX_VALUE:
        assert value == (record.value or b""), "the dead letter keeps the original bytes"
    assert await registry(conn) == before, "a rejected record changes nothing in the registry"
    return headers


# --- encoding and framing ---------------------------------------------------------------------


async def test_invalid_utf8_is_an_invalid_encoding_dead_letter(conn: Any) -> None:
    value = json.dumps(synced(description="café"), ensure_ascii=False).encode()
    value = value.replace("é".encode(), b"\xe9")  # Latin-1, not UTF-8
    headers = await assert_dead_lettered(conn, raw_record(value), "invalid_encoding")
    assert "UTF-8" in headers["error.message"]


async def test_an_empty_value_is_an_invalid_json_dead_letter(conn: Any) -> None:
    headers = await assert_dead_lettered(conn, raw_record(b""), "invalid_json")
    assert "empty" in headers["error.message"]


async def test_a_tombstone_without_value_is_an_invalid_json_dead_letter(conn: Any) -> None:
    await assert_dead_lettered(conn, raw_record(None), "invalid_json")


async def test_a_10_mb_value_is_dead_lettered_with_its_first_512_kib(conn: Any) -> None:
    value = json.dumps(synced(description="x" * (10 * 1024 * 1024))).encode()
    record = raw_record(value)

    headers = await assert_dead_lettered(conn, record, "contract_violation")

    [(stored, _)] = await dead_letters_for(conn, record)
    assert len(stored) == DEAD_LETTER_MAX_VALUE == 512 * 1024
    assert value.startswith(stored)
    assert headers["error.value_truncated"] == "true"
    assert headers["original.size"] == str(len(value))


@pytest.mark.parametrize(
    "value",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        json.dumps(synced()).encode()[:-1] + b', "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
    ids=["array", "object", "inside-an-envelope"],
)
async def test_json_nested_100_000_deep_is_invalid_json_not_a_crash(
    conn: Any, value: bytes
) -> None:
    headers = await assert_dead_lettered(conn, raw_record(value), "invalid_json")
    assert "recursion" in headers["error.message"].lower()


# --- numbers, keys, characters ----------------------------------------------------------------


async def test_a_small_sync_whose_numbers_outgrow_the_meta_cap_once_stored_is_refused(
    conn: Any,
) -> None:
    # 20 KB on the wire; stored, every 1e15 becomes 1000000000000000.0 and meta 76 KB (> 64 KiB).
    # A new model: no merge with a stored meta would measure the result.
    text = json.dumps(synced("m-new", providerMetadata={"x": "__N__"}))
    value = text.replace('"__N__"', "[" + ",".join(["1e15"] * 4000) + "]").encode()

    record = raw_record(value, key=b"m-new")
    headers = await assert_dead_lettered(conn, record, "contract_violation")

    assert "bytes serialized" in headers["error.detail"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
async def test_non_finite_numbers_are_contract_violations(conn: Any, number: str) -> None:
    for key in ("contextLength", "inputCostPerMillionTokens", "providerMetadata"):
        placeholder = "__NUMBER__"
        meta = {key: {"x": placeholder} if key == "providerMetadata" else placeholder}
        value = json.dumps(synced(**meta)).replace(f'"{placeholder}"', number).encode()

        headers = await assert_dead_lettered(conn, raw_record(value), "contract_violation")
        assert "data.meta" in headers["error.message"], key


async def test_a_non_finite_admin_only_number_is_a_contract_violation(conn: Any) -> None:
    body = envelope("model.patch_meta", {"id": "m1", "meta": {"creditsPer1kTokens": "__N__"}})
    value = json.dumps(body).replace('"__N__"', "Infinity").encode()
    await assert_dead_lettered(conn, raw_record(value, topic=ADMIN_TOPIC), "contract_violation")


@pytest.mark.parametrize(
    ("text", "duplicated"),
    [
        ('"source": "hostile-tests"', '"source": "a", "source": "b"'),
        ('"contextLength": 1', '"contextLength": 1, "contextLength": 999999'),
    ],
    ids=["envelope", "meta"],
)
async def test_duplicate_keys_are_invalid_json(conn: Any, text: str, duplicated: str) -> None:
    value = json.dumps(synced(contextLength=1)).replace(text, duplicated).encode()
    assert value.count(duplicated.encode()) == 1

    headers = await assert_dead_lettered(conn, raw_record(value), "invalid_json")
    assert "duplicate keys" in headers["error.message"]


NUL_CASES = {
    "name": synced() | {"data": {"id": "m1", "name": "a\u0000b", "provider": "acme", "meta": {}}},
    "meta-value": synced(description="before\u0000after"),
    "meta-key": synced(providerMetadata={"bad\u0000key": 1}),
    "nested-meta": synced(providerMetadata={"a": [{"b": "\u0000"}]}),
    "source": synced() | {"source": "\u0000"},
    "actor": envelope("model.archive", {"id": "m1"}, actor="eve\u0000"),
    "reason": envelope("model.archive", {"id": "m1", "reason": "r\u0000"}),
    "patch": envelope("model.patch_meta", {"id": "m1", "meta": {"note": "\u0000"}}),
    "register": envelope(
        "model.register", {"id": "m1", "name": "m1", "provider": "acme", "meta": {"k": "\u0000"}}
    ),
}


@pytest.mark.parametrize("body", list(NUL_CASES.values()), ids=list(NUL_CASES))
async def test_a_nul_character_is_a_clear_contract_violation_not_an_endless_retry(
    conn: Any, body: dict[str, Any]
) -> None:
    record = body_record(body)
    assert b"\\u0000" in (record.value or b"")

    headers = await assert_dead_lettered(conn, record, "contract_violation")
    assert "\x00" not in json.dumps(headers), "headers must themselves be storable"


# --- sizes and shapes -------------------------------------------------------------------------


async def test_a_10000_element_capabilities_array_is_a_contract_violation(conn: Any) -> None:
    body = synced(capabilities=["a"] * 10_000)  # 40 KB: under the 64 KiB meta limit
    headers = await assert_dead_lettered(conn, body_record(body), "contract_violation")
    assert "capabilities" in headers["error.detail"]


async def test_an_id_of_101_characters_is_a_contract_violation(conn: Any) -> None:
    model_id = "a" * 101
    headers = await assert_dead_lettered(conn, body_record(synced(model_id)), "contract_violation")
    assert headers["error.message"].endswith("data.id")


async def test_an_id_of_100_characters_is_the_longest_accepted(conn: Any) -> None:
    model_id = "a" * 100
    report = await apply_batch(conn, [body_record(synced(model_id))], SETTINGS)

    assert [r.outcome for r in report.results] == ["applied"]
    assert [row[0] for row in await registry(conn)] == [model_id, "m1"]


SQL_LOOKING = [
    "'; DROP TABLE models; --",
    "x' OR '1'='1",
    "$$; DELETE FROM processed_events; $$",
    "Robert'); TRUNCATE outbox;--",
]


@pytest.mark.parametrize("text", SQL_LOOKING)
async def test_sql_looking_strings_are_stored_verbatim_as_data(conn: Any, text: str) -> None:
    body = envelope(
        "model.register",
        {"id": "m2", "name": text, "provider": "acme", "meta": {"description": text, text: text}},
    )
    report = await apply_batch(conn, [body_record(body)], SETTINGS)

    assert [r.outcome for r in report.results] == ["applied"]
    async with conn.cursor() as cur:
        await cur.execute("SELECT name, meta FROM models WHERE id = 'm2'")
        assert await cur.fetchall() == [(text, {"description": text, text: text})]
        await cur.execute("SELECT count(*) FROM models")
        assert await cur.fetchone() == (2,)


@pytest.mark.parametrize("text", SQL_LOOKING)
async def test_sql_looking_ids_are_contract_violations(conn: Any, text: str) -> None:
    await assert_dead_lettered(conn, body_record(synced(text)), "contract_violation")


# --- wrong types for every field --------------------------------------------------------------

VALID = {
    "model.synced": synced(
        contextLength=8192, capabilities=["chat"], inputCostPerMillionTokens=1.5
    ),
    "model.withdrawn": envelope(
        "model.withdrawn", {"id": "m1"}, occurredAt="2026-03-01T00:00:00+00:00"
    ),
    "model.register": envelope(
        "model.register",
        {"id": "m1", "name": "m1", "provider": "acme", "meta": {"displayName": "M1"}},
    ),
    "model.patch_meta": envelope("model.patch_meta", {"id": "m1", "meta": {"version": "2"}}),
    "model.set_tier": envelope(
        "model.set_tier",
        {
            "id": "m1",
            "requiredTier": "pro",
            "tierRestrictionMode": "whitelist",
            "allowedTiers": ["pro"],
            "reason": "r",
        },
    ),
    "model.mark_legacy": envelope(
        "model.mark_legacy",
        {"id": "m1", "deprecationNotice": "n", "sunsetDate": "2030-01-01T00:00:00+00:00"},
    ),
    "model.clear_legacy": envelope("model.clear_legacy", {"id": "m1"}),
    "model.archive": envelope("model.archive", {"id": "m1", "reason": "r"}),
    "model.unarchive": envelope("model.unarchive", {"id": "m1"}),
    "model.set_availability": envelope(
        "model.set_availability", {"id": "m1", "isAvailable": False}
    ),
}

#: Values of the wrong JSON type for a field of the given JSON type.
WRONG: dict[type, list[Any]] = {
    str: [7, True, None, [], {}],
    int: ["8192", True, 1.5, None, [], {}],
    float: ["1.5", True, None, [], {}],
    bool: ["false", 0, None, [], {}],
    list: ["chat", 1, None, {}],
    dict: ["x", 1, True, None, []],
}
SPECIAL: dict[str, list[Any]] = {
    "schemaVersion": ["1", True, 1.0, 2, None],
    "occurredAt": [1767225600, 1.5, True, [], None],
    "sunsetDate": [1767225600, 1.5, True, []],
}
#: By design: a price may be a decimal string (see the test below).
LAX_META = {("inputCostPerMillionTokens", '"1.5"')}
#: Optional fields: null is their "absent", not a wrong type.
NULLABLE = {"actor", "reason", "allowedTiers", "deprecationNotice", "sunsetDate"}


def wrong_values(path: tuple[str, ...], value: Any) -> list[Any]:
    if path[-1] in SPECIAL:
        return SPECIAL[path[-1]]
    candidates = WRONG[type(value) if type(value) in WRONG else str]
    if path[-1] in NULLABLE or len(path) == 3:  # a null meta key is an absent one
        candidates = [c for c in candidates if c is not None]
    return [c for c in candidates if (path[-1], json.dumps(c)) not in LAX_META]


def field_paths(body: dict[str, Any]) -> list[tuple[tuple[str, ...], Any]]:
    """Every envelope field, every data field, and every key of the meta object."""
    paths = [((name,), value) for name, value in body.items() if name != "data"]
    for name, value in body["data"].items():
        paths.append((("data", name), value))
        if name == "meta":
            paths += [(("data", "meta", key), item) for key, item in value.items()]
    return paths


def with_value(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    copy["eventId"] = str(uuid.uuid4())  # each case is its own event, not a replay
    target = copy
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    return copy


@pytest.mark.parametrize("event_type", list(VALID))
async def test_a_wrong_type_for_any_field_is_dead_lettered(conn: Any, event_type: str) -> None:
    """One record per (field, wrong value); all of them in one batch, each settled alone."""
    cases = [
        (path, wrong, with_value(VALID[event_type], path, wrong))
        for path, value in field_paths(VALID[event_type])
        for wrong in wrong_values(path, value)
    ]
    records = [raw_record(json.dumps(b).encode(), topic=topic_of(event_type)) for *_, b in cases]
    before = await registry(conn)

    report = await asyncio.wait_for(apply_batch(conn, records, SETTINGS), RETURNS_WITHIN_S)

    problems = []
    for (path, wrong, _), record, result in zip(cases, records, report.results, strict=True):
        where = f"{'.'.join(path)}={json.dumps(wrong)}"
        letters = await dead_letters_for(conn, record)
        if result.outcome != "rejected" or len(letters) != 1:
            problems.append(f"{where}: {result.outcome}, {len(letters)} dead letter(s)")
            continue
        headers = letters[0][1]
        expected = "unknown_type" if path == ("type",) else "contract_violation"
        if headers["error.type"] != expected:
            problems.append(f"{where}: {headers['error.type']}, expected {expected}")
        elif expected == "contract_violation" and path[-1] not in headers["error.detail"]:
            problems.append(f"{where}: detail does not name the field: {headers['error.detail']}")
    assert problems == []
    assert len(cases) >= 10
    assert await registry(conn) == before


async def test_a_price_given_as_a_decimal_string_is_stored_as_that_exact_number(
    conn: Any,
) -> None:
    """Prices are decimals: the JSON Schema allows a decimal string, for exact publishers."""
    report = await apply_batch(
        conn, [body_record(synced(inputCostPerMillionTokens="1.50"))], SETTINGS
    )
    assert [r.outcome for r in report.results] == ["applied"]
    async with conn.cursor() as cur:
        await cur.execute("SELECT meta->'inputCostPerMillionTokens' FROM models")
        assert await cur.fetchall() == [(1.5,)]


async def test_every_valid_base_event_of_the_wrong_type_matrix_is_accepted(conn: Any) -> None:
    """The matrix above means something only if the unmodified events are valid."""
    records = [raw_record(json.dumps(b).encode(), topic=topic_of(t)) for t, b in VALID.items()]
    report = await apply_batch(conn, records, SETTINGS)
    assert [r.outcome for r in report.results] == ["applied"] * len(records)


# --- dates that PostgreSQL can store but not give back ---------------------------------------


@pytest.mark.parametrize(
    "occurred_at",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-14:00", "1969-12-31T23:59:59+00:00"],
)
async def test_an_occurred_at_outside_1970_to_9999_utc_is_a_contract_violation(
    conn: Any, occurred_at: str
) -> None:
    """Regression: 0001-01-01T00:00+14:00 is 1 BC in UTC; it used to be stored, after which
    reading the model back failed and every later event of the model was dead-lettered."""
    body = synced() | {"occurredAt": occurred_at}
    headers = await assert_dead_lettered(conn, body_record(body), "contract_violation")
    assert "occurredAt" in headers["error.detail"]

    later = await apply_batch(conn, [body_record(synced(version="2"))], SETTINGS)
    assert [r.outcome for r in later.results] == ["applied"], "the model is not poisoned"


# --- provider sync stays in its lane ----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"meta": {"requiredTier": "enterprise"}},
        {"meta": {"legacyReplacementModelId": "m0"}},
        {"isArchived": True},
        {"isAvailable": False},
        {"isLegacy": True},
    ],
    ids=["admin-meta-key", "legacy-meta-key", "isArchived", "isAvailable", "isLegacy"],
)
async def test_a_provider_sync_cannot_touch_admin_fields_or_lifecycle_flags(
    conn: Any, data: dict[str, Any]
) -> None:
    body = synced()
    body["data"] = body["data"] | data
    await assert_dead_lettered(conn, body_record(body), "contract_violation")


async def test_an_admin_event_on_the_provider_sync_topic_is_an_unknown_type(conn: Any) -> None:
    body = envelope("model.archive", {"id": "m1"})
    record = raw_record(json.dumps(body).encode(), topic=PROVIDER_SYNC_TOPIC)
    await assert_dead_lettered(conn, record, "unknown_type")


async def test_a_batch_of_hostile_records_settles_every_one_and_applies_the_good_one(
    conn: Any,
) -> None:
    bad = [
        raw_record(b"\xff"),
        raw_record(b""),
        raw_record(b"[" * 100_000),
        body_record(synced(description="\u0000")),
        body_record(synced("a" * 101)),
    ]
    good = body_record(synced(version="ok"))
    report = await asyncio.wait_for(apply_batch(conn, [*bad, good], SETTINGS), RETURNS_WITHIN_S)

    assert [r.outcome for r in report.results] == ["rejected"] * len(bad) + ["applied"]
    for record in bad:
        assert len(await dead_letters_for(conn, record)) == 1
    assert (await registry(conn))[0][6]["version"] == "ok"
