"""Admin events are authenticated end to end: HMAC-SHA256 of the value bytes, key id in a header.

The worker runs with two admin keys (the old and the new one during a rotation). Anything not
signed by one of them is dead-lettered as ``unauthenticated`` and changes nothing; provider-sync
events are not signed at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from pydantic import SecretStr

import worker.publishing as publishing
from tests.e2e.conftest import Env
from tests.support import events as ev
from tests.support.events import Message, publish, read_topic
from worker.decoding import KEY_ID_HEADER, SIGNATURE_HEADER, sign
from worker.publishing import Publisher, register_event

OLD_KEY = ("2025-q4", b"old-secret-4f1d")
NEW_KEY = ("2026-q1", b"new-secret-8a2c")


def signed(message: Message, key: tuple[str, bytes]) -> Message:
    return Message(
        message.kind, message.key, message.value, tuple(sign(message.value, *key)), message.body
    )


def with_headers(message: Message, **headers: bytes) -> Message:
    return Message(message.kind, message.key, message.value, tuple(headers.items()), message.body)


def hmac_hex(secret: bytes, value: bytes) -> bytes:
    return hmac.new(secret, value, hashlib.sha256).hexdigest().encode()


@pytest.fixture
async def env(e2e: Env) -> Env:
    e2e.settings = e2e.settings.model_copy(
        update={"admin_keys": {k: SecretStr(v.decode()) for k, v in (OLD_KEY, NEW_KEY)}}
    )
    await e2e.start_worker()
    return e2e


async def models(env: Env) -> dict[str, tuple[Any, ...]]:
    rows = await env.query("SELECT id, is_available, is_archived, meta FROM models ORDER BY id")
    return {r[0]: tuple(r[1:]) for r in rows}


async def test_events_signed_with_either_key_are_applied(env: Env) -> None:
    messages = [
        signed(ev.register("m-old", meta={"displayName": "Old"}), OLD_KEY),
        signed(ev.register("m-new", meta={"displayName": "New"}), NEW_KEY),
    ]
    await publish(env.bootstrap, env.settings, messages)
    await env.wait_processed(2)

    assert set(await models(env)) == {"m-old", "m-new"}
    assert await read_topic(env.bootstrap, env.settings.dead_letter_topic, settle=0.5) == []


async def test_forged_admin_events_are_dead_lettered_as_unauthenticated_and_change_nothing(
    env: Env,
) -> None:
    await publish(env.bootstrap, env.settings, [signed(ev.register("m1"), NEW_KEY)])
    await env.wait_processed(1)
    before = await models(env)

    archive = ev.archive("m1")
    other = ev.set_availability("m1", False)
    forged = {
        "unsigned": archive,
        "key id only": with_headers(archive, **{KEY_ID_HEADER: NEW_KEY[0].encode()}),
        "signature only": with_headers(
            archive, **{SIGNATURE_HEADER: hmac_hex(NEW_KEY[1], archive.value)}
        ),
        "unknown key id": signed(archive, ("2024-q1", NEW_KEY[1])),
        "bad signature": with_headers(
            archive, **{KEY_ID_HEADER: NEW_KEY[0].encode(), SIGNATURE_HEADER: b"0" * 64}
        ),
        "signature of other bytes": with_headers(
            archive,
            **{
                KEY_ID_HEADER: NEW_KEY[0].encode(),
                SIGNATURE_HEADER: sign(other.value, *NEW_KEY)[1][1],
            },
        ),
        "right id, wrong secret": signed(other, (NEW_KEY[0], OLD_KEY[1])),
        "tampered after signing": Message(
            archive.kind,
            archive.key,
            archive.value.replace(b'"source": "tests"', b'"source": "evil"'),
            tuple(sign(archive.value, *NEW_KEY)),
        ),
    }
    await publish(env.bootstrap, env.settings, forged.values())

    letters = await read_topic(env.bootstrap, env.settings.dead_letter_topic, expect=len(forged))
    assert len(letters) == len(forged)
    assert {r.headers["error.type"] for r in letters} == {"unauthenticated"}
    assert sorted(r.value for r in letters) == sorted(m.value for m in forged.values())
    assert await models(env) == before, "no forged event changed the registry"
    assert await read_topic(env.bootstrap, env.settings.lifecycle_topic, settle=0.3) == []
    assert await env.processed_count() == 1, "forged event ids are not even claimed"


async def test_provider_sync_events_need_no_signature(env: Env) -> None:
    await publish(
        env.bootstrap,
        env.settings,
        [ev.synced("gpt-x", meta={"version": "1"}), ev.withdrawn("gpt-x", occurred_at=ev.at(5))],
    )
    await env.wait_processed(2)

    assert (await models(env))["gpt-x"][0] is False, "the withdrawal was applied"
    assert await read_topic(env.bootstrap, env.settings.dead_letter_topic, settle=0.5) == []


async def test_an_admin_event_cannot_dodge_the_signature_via_the_provider_sync_topic(
    env: Env,
) -> None:
    await publish(env.bootstrap, env.settings, [ev.synced("gpt-x")])
    await env.wait_processed(1)
    sneaky = ev.archive("gpt-x")
    await publish(env.bootstrap, env.settings, [Message("sync", sneaky.key, sneaky.value)])

    [letter] = await read_topic(env.bootstrap, env.settings.dead_letter_topic, expect=1)
    assert letter.headers["error.type"] == "unknown_type"
    assert (await models(env))["gpt-x"][1] is False, "not archived"


def test_the_publisher_signs_with_worker_decoding_sign() -> None:
    """Publishers and worker share one implementation of the signature."""
    source = json.dumps(publishing.signing_headers.__code__.co_names)
    assert "sign" in source
    assert publishing.sign is sign


async def test_the_project_publisher_signs_admin_events_so_the_worker_accepts_them(
    env: Env,
) -> None:
    settings = env.settings.model_copy(
        update={"admin_keys": {NEW_KEY[0]: SecretStr(NEW_KEY[1].decode())}}
    )
    event = register_event(
        "m-pub", name="m-pub", provider="acme", meta={"displayName": "P"}, actor="ops@example.com"
    )
    async with Publisher(settings) as publisher:
        await publisher.publish_event(event)
    await env.wait_processed(1)

    assert "m-pub" in await models(env)
    assert await read_topic(env.bootstrap, env.settings.dead_letter_topic, settle=0.5) == []
