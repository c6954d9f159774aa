"""Hostile input through the real worker and broker: nothing crashes it, nothing stalls it.

Hypothesis generates envelopes and meta, valid and invalid, and mutates them into raw bytes.
They are published in a few batches to a running worker. Afterwards every message has ended
in exactly one of two ways: applied (its effect is in the registry, which equals the in-memory
fold of the same messages) or dead-lettered (exactly one dead letter for its offset). A final
valid sentinel is applied, so the worker is still consuming.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from contracts.meta import PROVIDER_OWNED_KEYS
from tests.e2e.conftest import Env
from tests.support import events as ev
from tests.support.events import Message, read_topic
from tests.support.fold import fold

SYNC_IDS = ["s-1", "s-2", "s-3"]  # touched only from the provider-sync topic
ADMIN_IDS = ["a-1", "a-2", "a-3"]  # touched only from the admin topic
EVENT_ID = "__fresh_event_id__"
PLACEHOLDER = "__number__"

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "\x00", "pro", "chat", "'; DROP TABLE models; --", "é\ud7ff"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
good_meta_values: dict[str, st.SearchStrategy[Any]] = {
    "displayName": st.text(min_size=1, max_size=30),
    "description": st.text(max_size=50),
    "version": st.text(max_size=10),
    "capabilities": st.lists(st.sampled_from(["chat", "vision", "tools"]), unique=True),
    "contextLength": st.integers(min_value=1, max_value=2**20),
    "inputCostPerMillionTokens": st.decimals(min_value=0, max_value=100, places=2).map(float),
    "providerMetadata": st.dictionaries(st.text(max_size=5), json_scalars, max_size=3),
    "requiredTier": st.sampled_from(["free", "pro", "pro_max", "enterprise", "gold"]),
}


@st.composite
def meta(draw: st.DrawFn, provider_only: bool) -> dict[str, Any]:
    keys = sorted(PROVIDER_OWNED_KEYS & good_meta_values.keys()) if provider_only else None
    keys = keys or sorted(good_meta_values)
    chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=4))
    result = {}
    for key in chosen:  # one value in four is arbitrary JSON, mostly of the wrong type
        wild = draw(st.integers(0, 3)) == 0
        result[key] = draw(json_values if wild else good_meta_values[key])
    if draw(st.integers(0, 9)) == 0:  # now and then an admin key in a sync, or a stray key
        result[draw(st.sampled_from(["requiredTier", "isArchived", "x-extra"]))] = "pro"
    return result


@st.composite
def valid_body(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A plausible event: right shape, ids from a small pool, sometimes invalid meta."""
    kind = draw(st.sampled_from(["sync", "admin"]))
    second = draw(st.integers(min_value=0, max_value=10_000))
    if kind == "sync":
        model_id = draw(st.sampled_from(SYNC_IDS))
        event_type = draw(st.sampled_from(["model.synced", "model.synced", "model.withdrawn"]))
        data: dict[str, Any] = {"id": model_id}
        if event_type == "model.synced":
            data |= {"name": model_id, "provider": "acme", "meta": draw(meta(True))}
    else:
        model_id = draw(st.sampled_from(ADMIN_IDS))
        event_type = draw(
            st.sampled_from(
                [
                    "model.register",
                    "model.register",
                    "model.patch_meta",
                    "model.set_tier",
                    "model.mark_legacy",
                    "model.clear_legacy",
                    "model.archive",
                    "model.unarchive",
                    "model.set_availability",
                ]
            )
        )
        data = {"id": model_id}
        if event_type == "model.register":
            data |= {"name": model_id, "provider": "acme", "meta": draw(meta(False))}
        elif event_type == "model.patch_meta":
            data["meta"] = draw(meta(False)) or {"version": "1"}
        elif event_type == "model.set_tier":
            data["requiredTier"] = draw(st.sampled_from(["free", "pro", "enterprise"]))
        elif event_type == "model.mark_legacy":
            data["deprecationNotice"] = draw(st.text(max_size=20))
        elif event_type == "model.set_availability":
            data["isAvailable"] = draw(st.booleans())
    body: dict[str, Any] = {
        "eventId": EVENT_ID,
        "type": event_type,
        "schemaVersion": 1,
        "occurredAt": ev.at(second),
        "source": "hypothesis",
        "data": data,
    }
    if kind == "admin":
        body["actor"] = "fuzz@example.com"
    return kind, body


@st.composite
def hostile_message(draw: st.DrawFn) -> Message:
    kind, body = draw(valid_body())
    key: bytes | None = body["data"]["id"].encode()
    mutations = ["drop", "replace", "data", "bytes", "truncate", "json", "key", "number", "dup"]
    mutation = draw(st.sampled_from(["none"] * 6 + mutations))  # valid-looking 40% of the time
    if mutation == "drop":
        body.pop(draw(st.sampled_from(sorted(body))))
    elif mutation == "replace":
        body[draw(st.sampled_from(sorted(body)))] = draw(json_values)
    elif mutation == "data":
        body["data"][draw(st.sampled_from(sorted(body["data"])))] = draw(json_values)
    elif mutation == "json":
        body = draw(json_values)
    elif mutation == "key":
        key = draw(st.none() | st.binary(max_size=8) | st.sampled_from([b"a-1", b"s-1"]))
    value = _encode(body)
    if mutation == "bytes":
        value = draw(st.binary(max_size=64))
    elif mutation == "truncate":
        value = value[: draw(st.integers(0, max(0, len(value) - 1)))]
    elif mutation == "number" and isinstance(body, dict):
        number = draw(st.sampled_from([b"NaN", b"Infinity", b"1e400", b"-0", b"1" * 400]))
        value = _encode(body | {"data": {**body.get("data", {}), "x": PLACEHOLDER}})
        value = value.replace(f'"{PLACEHOLDER}"'.encode(), number)
    elif mutation == "dup":
        value = value.replace(b'"source": ', b'"source": "dup", "source": ', 1)
    return Message(kind, key, value)  # type: ignore[arg-type]


def _encode(body: Any) -> bytes:
    text = json.dumps(body, ensure_ascii=False)
    while EVENT_ID in text:  # every event gets its own id: a replay is another test's business
        text = text.replace(EVENT_ID, str(uuid.uuid4()), 1)
    return text.encode("utf-8", "surrogatepass")


def generate(count: int) -> list[Message]:
    """``count`` hypothesis examples, generated up front (no shrinking: checked end to end)."""
    found: list[Message] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_message())
    def collect(message: Message) -> None:
        found.append(message)

    collect()
    return found


async def publish_tracked(env: Env, messages: list[Message]) -> list[tuple[str, int, int]]:
    """Publish in order; return each message's (topic, partition, offset)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=env.bootstrap, enable_idempotence=False, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                m.topic(env.settings), value=m.value, key=m.key, headers=list(m.headers)
            )
            for m in messages
        ]
        return [(md.topic, md.partition, md.offset) for md in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


async def registry_rows(env: Env) -> dict[str, tuple[Any, ...]]:
    rows = await env.query(
        "SELECT id, name, provider, is_available, is_legacy, is_archived, meta FROM models"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def exact_numbers(rows: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    """The rows with the numbers of their meta as decimals, compared by value.

    jsonb keeps a number's decimal value and prints it without an exponent: the float 1e23
    reads back as the integer 10**23, which that float (99999999999999991611392) does not equal.
    """
    return {
        model_id: (
            *row[:-1],
            json.loads(json.dumps(row[-1]), parse_float=Decimal, parse_int=Decimal),
        )
        for model_id, row in rows.items()
    }


async def test_generated_hostile_messages_each_end_applied_or_dead_lettered(e2e: Env) -> None:
    messages = generate(150)
    assert len(messages) >= 100
    await e2e.start_worker()

    positions: list[tuple[str, int, int]] = []
    for start in range(0, len(messages), 50):  # a few batches, while the worker consumes
        positions += await publish_tracked(e2e, messages[start : start + 50])
    sentinel = ev.synced("sentinel", meta={"version": "last"})
    positions += await publish_tracked(e2e, [sentinel])

    async def sentinel_applied() -> bool:
        return bool(await e2e.query("SELECT 1 FROM models WHERE id = 'sentinel'"))

    await e2e.wait_for(sentinel_applied, 60, "the sentinel after the hostile messages")
    expected = fold([*messages, sentinel], e2e.settings)
    await e2e.wait_processed(len(expected.event_ids), timeout=60)

    letters = await read_topic(
        e2e.bootstrap, e2e.settings.dead_letter_topic, expect=len(expected.dead_letters)
    )
    per_position = Counter(
        (
            r.headers["original.topic"],
            int(r.headers["original.partition"]),
            int(r.headers["original.offset"]),
        )
        for r in letters
    )
    assert max(per_position.values(), default=1) == 1, "at most one dead letter per record"
    processed = {str(r[0]) for r in await e2e.query("SELECT event_id FROM processed_events")}

    unaccounted = []
    for message, position in zip([*messages, sentinel], positions, strict=True):
        dead = per_position[position] == 1
        event_id = _event_id(message)
        applied = event_id is not None and event_id in processed
        if not (dead or applied):
            unaccounted.append((position, message.key, message.value[:200]))
    assert unaccounted == [], "every message is applied or dead-lettered"
    assert len(letters) == len(expected.dead_letters)
    assert Counter(r.value for r in letters) == Counter(m.value for m in expected.dead_letters)
    assert exact_numbers(await registry_rows(e2e)) == exact_numbers(expected.rows()), (
        "the registry reflects what was applied"
    )


def _event_id(message: Message) -> str | None:
    try:
        body = json.loads(message.value)
        return str(uuid.UUID(body["eventId"]))
    except Exception:
        return None


async def test_a_10_mb_record_is_dead_lettered_and_the_worker_moves_on(e2e: Env) -> None:
    """As big as the broker accepts: Tansu has no limit; Kafka's default is about 1 MB."""
    await e2e.start_worker()
    big = ev.synced("big", meta={"description": "x" * 10_000_000})
    producer = AIOKafkaProducer(
        bootstrap_servers=e2e.bootstrap,
        enable_idempotence=False,
        acks="all",
        max_request_size=16 * 1024 * 1024,
    )
    await producer.start()
    try:
        for size in (10_000_000, 900_000):
            message = ev.synced("big", meta={"description": "x" * size})
            try:
                await producer.send_and_wait(
                    message.topic(e2e.settings), value=message.value, key=message.key
                )
                big = message
                break
            except MessageSizeTooLargeError:
                continue
        else:
            raise AssertionError("the broker accepted neither 10 MB nor 900 kB")
    finally:
        await producer.stop()
    after = ev.synced("after-big", meta={"version": "1"})
    await ev.publish(e2e.bootstrap, e2e.settings, [after])

    await e2e.wait_processed(1, timeout=60)
    [letter] = await read_topic(e2e.bootstrap, e2e.settings.dead_letter_topic, expect=1)
    assert letter.headers["error.type"] == "contract_violation"
    assert letter.headers["original.size"] == str(len(big.value))
    assert big.value.startswith(letter.value)
    assert [r[0] for r in await e2e.query("SELECT id FROM models")] == ["after-big"]
