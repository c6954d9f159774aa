"""Soak test: a steady event rate into a real ``modelreg worker`` process, for minutes.

Publishes ``--rate`` events per second for ``--duration`` seconds (provider syncs and admin
events over a few hundred models), samples the worker's RSS and the consumer group's lag every
``--every`` seconds, then reports the RSS trend (least-squares slope) and how long the lag took
to return to zero after the load stopped.

    python bench/soak.py                        # 2,000 events/s for 5 minutes, embedded services
    python bench/soak.py --duration 30          # a short try
    MODELREG_DATABASE_URL=... MODELREG_KAFKA_BOOTSTRAP_SERVERS=... python bench/soak.py

With both ``MODELREG_DATABASE_URL`` and ``MODELREG_KAFKA_BOOTSTRAP_SERVERS`` set, those services
are used (the database is migrated; topics and group get a unique name); otherwise an embedded
PostgreSQL and Tansu broker are started and stopped. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker.embedded import embedded_postgres, tansu_broker  # noqa: E402
from worker.persistence.migrate import migrate  # noqa: E402
from worker.settings import Settings, environment_for, load_settings  # noqa: E402
from worker.transport.topics import ensure_topics  # noqa: E402

BASE = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Sample:
    elapsed_s: float
    published: int
    rss_mb: float
    lag: int


# --- services and the worker process --------------------------------------------------------


@contextlib.contextmanager
def services(work_dir: Path) -> Iterator[tuple[str, str, bool]]:
    """(database URL, bootstrap servers, idempotent producer) from the env, else embedded."""
    database = os.environ.get("MODELREG_DATABASE_URL")
    bootstrap = os.environ.get("MODELREG_KAFKA_BOOTSTRAP_SERVERS")
    if database and bootstrap:
        idempotent = os.environ.get("MODELREG_KAFKA_IDEMPOTENT_PRODUCER", "true") == "true"
        yield database, bootstrap, idempotent
        return
    with embedded_postgres(work_dir / "pgdata") as db, tansu_broker() as kafka:
        yield db, kafka, False


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --- load -------------------------------------------------------------------------------------


class Load:
    """A reproducible stream of valid events: syncs with rising clocks, and admin changes."""

    def __init__(self, settings: Settings, models: int = 400) -> None:
        self.settings = settings
        self.rng = random.Random(1)
        self.sync_models = [f"soak-sync-{i}" for i in range(models)]
        self.admin_models = [f"soak-admin-{i}" for i in range(models // 4)]
        self.clock = dict.fromkeys(self.sync_models, 0.0)
        self.registered: set[str] = set()

    def _envelope(self, kind: str, model: str, data: Mapping[str, object], at: float) -> bytes:
        body: dict[str, object] = {
            "eventId": str(uuid.uuid4()),
            "type": kind,
            "schemaVersion": 1,
            "occurredAt": (BASE + timedelta(seconds=at)).isoformat(),
            "source": "soak",
            "data": {"id": model, **data},
        }
        if not kind.startswith("model.synced") and kind != "model.withdrawn":
            body["actor"] = "soak@example.com"
        return json.dumps(body).encode()

    def next(self) -> tuple[str, bytes, bytes]:
        """(topic, key, value) of the next event."""
        rng = self.rng
        if rng.random() < 0.7:
            model = rng.choice(self.sync_models)
            self.clock[model] += rng.uniform(0.5, 2)
            at = self.clock[model]
            if rng.random() < 0.9:
                meta = {"version": str(rng.randint(1, 9)), "contextLength": rng.randint(1, 64)}
                data = {"name": model, "provider": "soak", "meta": meta}
                value = self._envelope("model.synced", model, data, at)
            else:
                value = self._envelope("model.withdrawn", model, {}, at)
            return self.settings.provider_sync_topic, model.encode(), value
        model = rng.choice(self.admin_models)
        if model not in self.registered:
            self.registered.add(model)
            data = {"name": model, "provider": "soak", "meta": {}}
            value = self._envelope("model.register", model, data, 0)
        else:
            choice = rng.randrange(4)
            if choice == 0:
                value = self._envelope(
                    "model.patch_meta", model, {"meta": {"description": f"d{rng.randint(0, 9)}"}}, 0
                )
            elif choice == 1:
                value = self._envelope("model.mark_legacy", model, {"deprecationNotice": "old"}, 0)
            elif choice == 2:
                value = self._envelope("model.clear_legacy", model, {}, 0)
            else:
                available = rng.random() < 0.5
                value = self._envelope(
                    "model.set_availability", model, {"isAvailable": available}, 0
                )
        return self.settings.admin_topic, model.encode(), value


async def consumer_lag(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, settings: Settings
) -> int:
    tps = [
        TopicPartition(topic, p)
        for topic in settings.input_topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    ends = await consumer.end_offsets(tps)
    committed = await admin.list_consumer_group_offsets(settings.kafka_group_id, partitions=tps)
    lag = 0
    for tp in tps:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else 0
        lag += max(0, ends[tp] - done)
    return lag


async def soak(args: argparse.Namespace, database: str, bootstrap: str, idempotent: bool) -> int:
    tag = secrets.token_hex(3)
    settings = load_settings(
        database_url=database,
        kafka_bootstrap_servers=bootstrap,
        kafka_idempotent_producer=idempotent,
        kafka_group_id=f"soak-{tag}",
        provider_sync_topic=f"soak-{tag}.provider-sync",
        admin_topic=f"soak-{tag}.admin",
        lifecycle_topic=f"soak-{tag}.lifecycle",
        dead_letter_topic=f"soak-{tag}.dead-letter",
        migrate_on_start=False,
        log_level="WARNING",
    )
    migrate(database)
    await ensure_topics(bootstrap, settings, partitions=args.partitions)
    log_path = Path(tempfile.gettempdir()) / f"soak-worker-{tag}.log"
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker"],
            cwd=REPO,
            env=environment_for(settings),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    print(f"worker pid {worker.pid}, log {log_path}")
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=idempotent, acks="all", linger_ms=5
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await producer.start()
    await admin.start()
    await consumer.start()
    await consumer._client.force_metadata_update()
    samples: list[Sample] = []
    load = Load(settings)
    published = 0
    try:
        # Warm-up: the worker is up once its consumer group has committed something.
        await producer.send_and_wait(*_args(load.next()))
        published = 1
        while await consumer_lag(admin, consumer, settings) > 0:
            if worker.poll() is not None:
                raise SystemExit(f"worker exited with {worker.returncode}; see {log_path}")
            await asyncio.sleep(0.5)

        print(f"{'t(s)':>6} {'published':>10} {'rate/s':>8} {'rss MB':>8} {'lag':>8}")
        started = time.monotonic()
        next_sample = started
        tick = 0.05
        last_published, last_t = published, started
        while (now := time.monotonic()) - started < args.duration:
            due = int((now - started) * args.rate) + 1
            futures = []
            while published < due:
                futures.append(await producer.send(*_args(load.next())))
                published += 1
            if futures:
                await asyncio.gather(*futures)
            if now >= next_sample:
                lag = await consumer_lag(admin, consumer, settings)
                sample = Sample(now - started, published, rss_mb(worker.pid), lag)
                samples.append(sample)
                rate = (published - last_published) / max(now - last_t, 1e-9)
                last_published, last_t = published, now
                print(
                    f"{sample.elapsed_s:6.0f} {published:10d} {rate:8.0f}"
                    f" {sample.rss_mb:8.1f} {lag:8d}",
                    flush=True,
                )
                next_sample += args.every
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - now)))
        load_end = time.monotonic()
        achieved = published / (load_end - started)
        while (lag := await consumer_lag(admin, consumer, settings)) > 0:
            if time.monotonic() - load_end > 300:
                print(f"lag still {lag} after 300 s")
                break
            await asyncio.sleep(0.1)
        drained_s = time.monotonic() - load_end
    finally:
        await consumer.stop()
        await admin.close()
        await producer.stop()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)

    report(samples, achieved, drained_s, args)
    print(f"worker exit code after SIGTERM: {code}")
    return 0


def _args(item: tuple[str, bytes, bytes]) -> tuple[str, bytes, bytes]:
    topic, key, value = item
    return topic, value, key


def report(
    samples: list[Sample], achieved: float, drained_s: float, args: argparse.Namespace
) -> None:
    # Skip the warm-up (first fifth) for the trend: caches and pools fill there.
    steady = samples[len(samples) // 5 :] if len(samples) >= 5 else samples
    xs = [s.elapsed_s / 60 for s in steady]
    ys = [s.rss_mb for s in steady]
    slope = statistics.linear_regression(xs, ys).slope if len(steady) >= 2 else float("nan")
    lags = [s.lag for s in samples]
    print()
    print(f"target rate          {args.rate} events/s for {args.duration} s")
    print(f"achieved rate        {achieved:.0f} events/s")
    print(f"RSS                  {min(ys):.1f} .. {max(ys):.1f} MB (steady part)")
    print(f"RSS slope            {slope:+.2f} MB/min (least squares, after warm-up)")
    print(
        f"lag during load      max {max(lags, default=0)}, mean {statistics.fmean(lags or [0]):.0f}"
    )
    print(f"lag back to zero     {drained_s:.2f} s after the load stopped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=2000, help="events per second")
    parser.add_argument("--duration", type=int, default=300, help="seconds of load")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--partitions", type=int, default=6, help="partitions per input topic")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="modelreg-soak-") as work,
        services(Path(work)) as (
            database,
            bootstrap,
            idempotent,
        ),
    ):
        return asyncio.run(soak(args, database, bootstrap, idempotent))


if __name__ == "__main__":
    raise SystemExit(main())
