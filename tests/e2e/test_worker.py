"""The worker end to end: real broker, real PostgreSQL, the FastStream app running in-process."""

from __future__ import annotations

from tests.e2e.conftest import Env
from tests.support import events as ev
from tests.support.events import read_topic


async def test_smoke(e2e: Env) -> None:
    await e2e.start_worker()
    await ev.publish(e2e.bootstrap, e2e.settings, [ev.register("m1"), ev.mark_legacy("m1")])
    await e2e.wait_processed(2)
    rows = await e2e.query("SELECT id, is_legacy FROM models")
    assert rows == [("m1", True)]
    lifecycle = await read_topic(e2e.bootstrap, e2e.settings.lifecycle_topic, expect=1)
    assert [r.json()["type"] for r in lifecycle] == ["model.marked_legacy"]
