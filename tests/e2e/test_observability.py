"""A running worker's HTTP endpoints: liveness, readiness and Prometheus metrics that move."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import Env, RunningWorker
from tests.support.events import publish, raw, synced

pytestmark = pytest.mark.asyncio


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def get(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(_get, port, path)


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in metrics.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if head.split("{")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


async def ready_worker(env: Env) -> tuple[RunningWorker, int]:
    running = await env.start_worker(http_port=0)
    port = running.worker.http_port
    assert port is not None and port > 0

    async def ready() -> bool:
        return (await get(port, "/readyz"))[0] == 200

    await env.wait_for(ready, 30, "/readyz 200")
    return running, port


async def test_liveness_and_readiness_answer_200_once_partitions_are_assigned(e2e: Env) -> None:
    _, port = await ready_worker(e2e)

    assert await get(port, "/healthz") == (200, "ok\n")
    assert await get(port, "/readyz") == (200, "ready\n")
    assert (await get(port, "/nope"))[0] == 404


async def test_metrics_count_events_by_topic_type_and_outcome(e2e: Env) -> None:
    _, port = await ready_worker(e2e)
    sync_topic = e2e.settings.provider_sync_topic
    labels = {"topic": sync_topic, "type": "model.synced"}
    before = (await get(port, "/metrics"))[1]
    first = synced("m-1")

    await publish(
        e2e.bootstrap,
        e2e.settings,
        [first, synced("m-2"), synced("m-3"), raw("sync", b"m-4", b"{not json")],
    )
    await e2e.wait_processed(3)
    await publish(e2e.bootstrap, e2e.settings, [first])  # the same eventId again
    await e2e.wait_for(
        lambda: _counted(port, sync_topic, "duplicate"), 30, "the duplicate to be counted"
    )
    status, after = await get(port, "/metrics")

    assert status == 200
    assert sample(before, "modelreg_events_total", **labels, outcome="applied") == 0
    assert sample(after, "modelreg_events_total", **labels, outcome="applied") == 3
    assert sample(after, "modelreg_events_total", **labels, outcome="duplicate") == 1
    assert (
        sample(
            after,
            "modelreg_events_total",
            topic=sync_topic,
            type="unknown",
            outcome="dead_lettered",
        )
        == 1
    )
    assert sample(after, "modelreg_batch_size_count") >= 2
    assert sample(after, "modelreg_event_latency_seconds_count") == 5
    assert sample(after, "modelreg_fetch_delay_seconds_count") >= 1
    assert sample(after, "modelreg_batch_apply_seconds_count") >= 2
    assert "modelreg_outbox_backlog" in after
    assert "modelreg_database_retries_total 0.0" in after


async def test_the_outbox_counters_match_the_rows_the_relay_marked_sent(e2e: Env) -> None:
    _, port = await ready_worker(e2e)
    dead_letters = [raw("sync", f"m-{i}".encode(), b"{not json") for i in range(3)]

    await publish(e2e.bootstrap, e2e.settings, [synced("m-ok"), *dead_letters])
    await e2e.wait_processed(1)
    await e2e.wait_for(
        lambda: _published_at_least(port, 3), 30, "the dead letters to be counted as published"
    )
    metrics = (await get(port, "/metrics"))[1]
    [(sent,)] = await e2e.query("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL")

    assert sample(metrics, "modelreg_outbox_published_total") == sent >= 3
    assert 1 <= sample(metrics, "modelreg_outbox_drains_total") <= sent


async def _published_at_least(port: int, rows: int) -> bool:
    metrics = (await get(port, "/metrics"))[1]
    return sample(metrics, "modelreg_outbox_published_total") >= rows


async def _counted(port: int, topic: str, outcome: str) -> bool:
    metrics = (await get(port, "/metrics"))[1]
    return sample(metrics, "modelreg_events_total", topic=topic, outcome=outcome) > 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_curl_of_metrics_shows_the_applied_counter_move(e2e: Env) -> None:
    _, port = await ready_worker(e2e)
    url = f"http://127.0.0.1:{port}/metrics"

    def curl() -> str:
        return subprocess.run(
            ["curl", "-sf", url], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    before = await asyncio.to_thread(curl)
    await publish(e2e.bootstrap, e2e.settings, [synced("c-1"), synced("c-2")])
    await e2e.wait_processed(2)
    after = await asyncio.to_thread(curl)

    applied = {"topic": e2e.settings.provider_sync_topic, "outcome": "applied"}
    assert sample(before, "modelreg_events_total", **applied) == 0
    assert sample(after, "modelreg_events_total", **applied) == 2


async def test_consumer_lag_gauge_covers_the_assigned_partitions(e2e: Env) -> None:
    _, port = await ready_worker(e2e)
    await publish(e2e.bootstrap, e2e.settings, [synced("l-1")])
    await e2e.wait_processed(1)

    metrics = (await get(port, "/metrics"))[1]

    lags = [line for line in metrics.splitlines() if line.startswith("modelreg_consumer_lag{")]
    assert lags, metrics
    assert all(line.endswith(" 0.0") for line in lags), lags


async def test_every_processed_event_is_logged_at_debug_with_its_ids(
    e2e: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="modelreg.worker")
    await e2e.start_worker()
    message = synced("log-1")

    await publish(e2e.bootstrap, e2e.settings, [message])
    await e2e.wait_processed(1)

    (line,) = [r for r in caplog.records if getattr(r, "eventId", None) == message.event_id]
    assert line.levelno == logging.DEBUG
    assert (line.modelId, line.type, line.outcome) == ("log-1", "model.synced", "applied")  # type: ignore[attr-defined]
    summaries = [r for r in caplog.records if r.levelno == logging.INFO and "applied=" in r.message]
    assert summaries


async def test_the_endpoints_close_with_the_worker(e2e: Env) -> None:
    running, port = await ready_worker(e2e)

    await running.stop()

    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
