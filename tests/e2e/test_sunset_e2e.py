"""Legacy models past their sunset date are archived by the running worker, announced once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.events import lifecycle_event_id, sunset_causation_id
from tests.e2e.conftest import Env
from tests.support import events as ev
from tests.support.events import RawPublisher, read_topic


async def test_a_legacy_model_past_its_sunset_is_archived_and_announced_once_by_two_workers(
    e2e: Env,
) -> None:
    sunset = datetime.now(UTC) - timedelta(minutes=1)
    await e2e.start_worker(sunset_interval_s=0.2)
    await e2e.start_worker(sunset_interval_s=0.2)
    async with RawPublisher(e2e.bootstrap, e2e.settings) as publisher:
        await publisher.publish([ev.synced("old"), ev.synced("new")])
        await e2e.wait_processed(2)  # the replacement exists before it is named
        await publisher.publish(
            [ev.mark_legacy("old", replacement="new", sunset=sunset.isoformat())]
        )

    async def archived() -> bool:
        rows = await e2e.query("SELECT is_archived, is_available FROM models WHERE id = 'old'")
        return bool(rows) and rows[0] == (True, False)

    await e2e.wait_for(archived, 60, "the sunset archiver")
    await e2e.wait_processed(3)

    out = [r.json() for r in await read_topic(e2e.bootstrap, e2e.settings.lifecycle_topic)]
    archived_events = [e for e in out if e["type"] == "model.archived"]
    cause = sunset_causation_id("old", datetime.fromisoformat(sunset.isoformat()))
    assert [e["modelId"] for e in archived_events] == ["old"]
    assert archived_events[0]["causationId"] == str(cause)
    assert archived_events[0]["eventId"] == str(lifecycle_event_id(cause, "model.archived", "old"))
    assert (await e2e.query("SELECT is_archived FROM models WHERE id = 'new'")) == [(False,)]
