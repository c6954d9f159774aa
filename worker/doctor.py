"""``modelreg doctor``: is this environment able to run the worker, and is the worker keeping up?

Every check yields one line. A failure means the worker cannot run (or cannot run correctly);
a warning means it runs but something deserves a look (consumer lag). Checks that depend on an
earlier one (migrations on the database, topics on the broker) are reported as failed with the
reason instead of being silently skipped, so the output always has the same lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from worker.persistence.db import DatabaseUnavailable, connect, describe_conninfo
from worker.persistence.errors import conninfo_password, safe_reason
from worker.persistence.migrate import MigrationError, pending
from worker.settings import ConfigError, Settings, load_settings
from worker.transport.clients import client_options
from worker.transport.topics import missing_topics

BROKER_TIMEOUT_S: Final = 10.0


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str

    @property
    def symbol(self) -> str:
        return {Status.OK: "✓", Status.WARN: "!", Status.FAIL: "✗"}[self.status]

    def line(self) -> str:
        return f"{self.symbol} {self.name}: {self.detail}"


def _ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def _fail(name: str, detail: str) -> Check:
    return Check(name, Status.FAIL, detail)


def check_settings(overrides: dict[str, Any] | None = None) -> tuple[Check, Settings | None]:
    try:
        settings = load_settings(**(overrides or {}))
    except ConfigError as error:
        return _fail("settings", str(error)), None
    return _ok("settings", f"valid (group {settings.kafka_group_id})"), settings


def check_database(settings: Settings) -> list[Check]:
    """Reachability, then the migration state (which needs the database)."""
    where = describe_conninfo(settings.database_url)
    try:
        with connect(settings.database_url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except DatabaseUnavailable as error:
        return [_fail("database", str(error)), _fail("migrations", "not checked: no database")]
    version = row[0] if row else "?"
    checks = [_ok("database", f"reachable at {where} (PostgreSQL {version})")]
    try:
        missing = pending(settings.database_url)
    except (DatabaseUnavailable, MigrationError) as error:
        return [*checks, _fail("migrations", str(error))]
    if missing:
        checks.append(
            _fail(
                "migrations",
                f"{len(missing)} pending ({', '.join(missing)}); run `modelreg migrate`",
            )
        )
    else:
        checks.append(_ok("migrations", "all applied"))
    return checks


async def _committed_lag(
    settings: Settings, admin: AIOKafkaAdminClient, partitions: list[TopicPartition]
) -> Check:
    """Sum of (end offset - committed offset) over the input partitions, for the worker group."""
    committed = await admin.list_consumer_group_offsets(
        settings.kafka_group_id, partitions=partitions
    )
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        begins = await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()
    lag = 0
    never = 0
    for tp in partitions:
        meta = committed.get(tp)
        offset = meta.offset if meta is not None and meta.offset >= 0 else None
        if offset is None:
            never += 1
            offset = begins.get(tp, 0)
        lag += max(0, ends.get(tp, 0) - offset)
    group = settings.kafka_group_id
    if never == len(partitions):
        if lag:
            return Check(
                "consumer lag",
                Status.WARN,
                f"group {group} has committed nothing yet"
                f" and {lag} records wait (is a worker running?)",
            )
        return _ok("consumer lag", f"group {group}: no records yet")
    if lag:
        return Check(
            "consumer lag",
            Status.WARN,
            f"group {group} is {lag} records behind on {len(partitions)} partitions",
        )
    return _ok("consumer lag", f"group {group} is caught up ({len(partitions)} partitions)")


async def check_broker(settings: Settings) -> list[Check]:
    """Reachability, the four topics, and the worker group's lag on the input topics."""
    try:
        options = client_options(settings)
    except ConfigError as error:
        return [_fail("broker", str(error))]
    servers = settings.kafka_bootstrap_servers
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=int(BROKER_TIMEOUT_S * 1000))
    try:
        await asyncio.wait_for(admin.start(), BROKER_TIMEOUT_S)
    except Exception as error:
        return [
            _fail("broker", f"cannot connect to Kafka at {servers}: {safe_reason(error)}"),
            _fail("topics", "not checked: no broker"),
            _fail("consumer lag", "not checked: no broker"),
        ]
    try:
        checks = [_ok("broker", f"reachable at {servers}")]
        existing = await asyncio.wait_for(admin.list_topics(), BROKER_TIMEOUT_S)
        missing = missing_topics(existing, settings)
        if missing:
            checks.append(_fail("topics", f"missing: {', '.join(missing)}"))
            checks.append(_fail("consumer lag", "not checked: input topics missing"))
            return checks
        partitions = await _partitions(admin, list(settings.input_topics))
        counts = {t: sum(1 for tp in partitions if tp.topic == t) for t in settings.input_topics}
        described = ", ".join(f"{t} ({n} partitions)" for t, n in counts.items())
        checks.append(_ok("topics", f"all 4 exist; input: {described}"))
        try:
            checks.append(
                await asyncio.wait_for(
                    _committed_lag(settings, admin, partitions), BROKER_TIMEOUT_S
                )
            )
        except Exception as error:
            checks.append(Check("consumer lag", Status.WARN, f"unknown: {safe_reason(error)}"))
        return checks
    except Exception as error:
        return [_fail("broker", f"Kafka at {servers} failed a request: {safe_reason(error)}")]
    finally:
        await admin.close()


async def _partitions(admin: AIOKafkaAdminClient, topics: list[str]) -> list[TopicPartition]:
    described = await asyncio.wait_for(admin.describe_topics(topics), BROKER_TIMEOUT_S)
    return sorted(
        TopicPartition(str(t["topic"]), int(p["partition"]))
        for t in described
        for p in t.get("partitions", [])
    )


def run_checks(
    overrides: dict[str, Any] | None = None, report: Callable[[Check], None] | None = None
) -> list[Check]:
    """Every check, in order; ``report`` sees each as soon as it is known (for live output)."""
    results: list[Check] = []
    secrets: list[str] = []

    def add(*checks: Check) -> None:
        for check in checks:
            detail = check.detail
            for secret in secrets:  # never print a password, even inside a driver's message
                detail = detail.replace(secret, "***")
            scrubbed = Check(check.name, check.status, detail)
            results.append(scrubbed)
            if report is not None:
                report(scrubbed)

    first, settings = check_settings(overrides)
    add(first)
    if settings is None:
        return results
    password = conninfo_password(settings.database_url)
    if password:
        secrets.append(password)
    add(*check_database(settings))
    add(*asyncio.run(check_broker(settings)))
    return results
