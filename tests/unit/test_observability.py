"""Metrics, log formats, the HTTP endpoints and the CLI surface, without services."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from typer.core import TyperGroup
from typer.testing import CliRunner

from contracts.meta import Tier, TierRestrictionMode
from worker.cli import ModeChoice, TierChoice, app
from worker.observability.http import HealthServer
from worker.observability.logs import configure_logging, log_batch
from worker.observability.metrics import WorkerMetrics
from worker.persistence.registry import BatchReport, EventResult
from worker.settings import load_settings

SYNC = "model-registry.provider-sync.v1"
E1, E2, E3 = (uuid.UUID(int=n) for n in (1, 2, 3))


def report() -> BatchReport:
    return BatchReport(
        results=[
            EventResult(SYNC, "model.synced", "applied", E1, "gpt-4o"),
            EventResult(SYNC, "model.synced", "applied", E2, "gpt-4.1"),
            EventResult(SYNC, "model.synced", "duplicate", E1, "gpt-4o"),
            EventResult(SYNC, "model.synced", "stale", E3, "gpt-4o"),
            EventResult(SYNC, "?", "rejected"),
        ]
    )


# --- metrics ----------------------------------------------------------------------------------


def test_batch_outcomes_are_counted_with_rejected_shown_as_dead_lettered() -> None:
    metrics = WorkerMetrics()

    metrics.record_batch(report(), records=5, seconds=0.02)

    def events(**labels: str) -> float:
        return metrics.value("modelreg_events_total", topic=SYNC, **labels)

    assert events(type="model.synced", outcome="applied") == 2
    assert events(type="model.synced", outcome="duplicate") == 1
    assert events(type="model.synced", outcome="stale") == 1
    assert events(type="unknown", outcome="dead_lettered") == 1
    assert events(type="unknown", outcome="rejected") == 0
    assert metrics.value("modelreg_batch_size_sum") == 5
    assert metrics.value("modelreg_batch_apply_seconds_count") == 1


def test_each_relay_drain_counts_once_and_adds_its_rows_to_the_published() -> None:
    metrics = WorkerMetrics()

    metrics.record_drain(1)
    metrics.record_drain(5)

    assert metrics.value("modelreg_outbox_drains_total") == 2
    assert metrics.value("modelreg_outbox_published_total") == 6


def test_each_worker_has_its_own_registry() -> None:
    one, two = WorkerMetrics(), WorkerMetrics()

    one.record_retry()

    assert one.value("modelreg_database_retries_total") == 1
    assert two.value("modelreg_database_retries_total") == 0


def test_latency_runs_from_the_record_timestamp_and_never_goes_negative() -> None:
    metrics = WorkerMetrics()

    metrics.record_committed([9_000, 10_500, None], now=10.0)  # 1 s ago, 0.5 s ahead (skew)

    assert metrics.value("modelreg_event_latency_seconds_count") == 2
    assert metrics.value("modelreg_event_latency_seconds_sum") == 1.0


def test_fetch_delay_is_the_age_of_the_oldest_record_of_each_fetched_batch() -> None:
    metrics = WorkerMetrics()

    metrics.record_fetched([9_800, 9_000, None, 9_900], now=10.0)  # oldest: 1 s ago
    metrics.record_fetched([10_200], now=10.0)  # ahead of the clock (skew): 0
    metrics.record_fetched([None], now=10.0)  # no timestamp: nothing to observe

    assert metrics.value("modelreg_fetch_delay_seconds_count") == 2
    assert metrics.value("modelreg_fetch_delay_seconds_sum") == 1.0


def test_lag_replaces_the_partitions_of_the_previous_scrape() -> None:
    metrics = WorkerMetrics()

    metrics.set_lag([(SYNC, 0, 4), (SYNC, 1, 0)])
    metrics.set_lag([(SYNC, 1, 2)])  # partition 0 was revoked

    assert metrics.value("modelreg_consumer_lag", topic=SYNC, partition=1) == 2
    assert b'partition="0"' not in metrics.render()


# --- logs -------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_are_one_object_per_line_with_event_fields(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging(load_settings(log_format="json", log_level="DEBUG"), stream=out)

    log_batch(logging.getLogger("modelreg.worker"), report(), records=5, seconds=0.012)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 6  # five events at debug, one summary at info
    first = lines[0]
    assert first["level"] == "DEBUG" and first["logger"] == "modelreg.worker"
    assert (first["eventId"], first["modelId"], first["type"], first["outcome"]) == (
        "00000000-0000-0000-0000-000000000001",
        "gpt-4o",
        "model.synced",
        "applied",
    )
    summary = lines[-1]
    assert summary["level"] == "INFO"
    assert summary["outcomes"] == {"applied": 2, "duplicate": 1, "stale": 1, "rejected": 1}
    assert "applied=2 duplicate=1 rejected=1 stale=1" in summary["message"]


def test_json_logs_carry_exceptions_in_one_field(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging(load_settings(log_format="json"), stream=out)

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("modelreg.test").exception("failed")

    (entry,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert entry["message"] == "failed"
    assert "RuntimeError: boom" in entry["exception"]


def test_text_logs_at_info_count_outcomes_but_do_not_list_events(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging(load_settings(), stream=out)

    log_batch(logging.getLogger("modelreg.worker"), report(), records=5, seconds=0.012)

    (line,) = out.getvalue().splitlines()
    assert " INFO modelreg.worker: applied a batch of 5 records in 12 ms: applied=2" in line


# --- HTTP -------------------------------------------------------------------------------------


async def _ready() -> list[str]:
    return []


async def _not_ready() -> list[str]:
    return ["no partitions assigned"]


async def _metrics() -> tuple[bytes, str]:
    return b"modelreg_up 1\n", "text/plain; version=0.0.4"


async def _request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    response = await reader.read()
    writer.close()
    return response


async def test_the_http_server_answers_probes_and_scrapes() -> None:
    server = HealthServer(0, readiness=_not_ready, metrics=_metrics, host="127.0.0.1")
    await server.start()
    try:
        assert server.port
        get = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
        healthz = await _request(server.port, get % b"/healthz")
        readyz = await _request(server.port, get % b"/readyz")
        metrics = await _request(server.port, get % b"/metrics")
        head = await _request(server.port, b"HEAD /healthz HTTP/1.1\r\n\r\n")
        post = await _request(server.port, b"POST /metrics HTTP/1.1\r\n\r\n")
        garbage = await _request(server.port, b"\x00\x01\r\n\r\n")
    finally:
        await server.stop()

    assert healthz.startswith(b"HTTP/1.1 200 OK\r\n") and healthz.endswith(b"\r\n\r\nok\n")
    assert readyz.startswith(b"HTTP/1.1 503 ") and b"no partitions assigned" in readyz
    assert b"Content-Type: text/plain; version=0.0.4" in metrics
    assert metrics.endswith(b"modelreg_up 1\n")
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
    assert post.startswith(b"HTTP/1.1 405")
    assert garbage == b""


async def test_readiness_is_200_when_nothing_is_wrong() -> None:
    server = HealthServer(0, readiness=_ready, metrics=_metrics)

    response = await server.route("GET", "/readyz?verbose=1")

    assert (response.status, response.body) == (200, b"ready\n")


# --- CLI surface ------------------------------------------------------------------------------


def _commands(group: TyperGroup, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        path = (*prefix, name)
        yield path
        if isinstance(command, TyperGroup):
            yield from _commands(command, path)


def test_every_command_has_help() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    paths = list(_commands(root))
    assert {
        ("migrate",),
        ("worker",),
        ("demo",),
        ("sync",),
        ("doctor",),
        ("publish", "set-tier"),
        ("models", "resolve"),
        ("contracts", "export"),
    } <= set(paths)
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_cli_choices_are_the_contract_enums() -> None:
    assert [c.value for c in TierChoice] == [t.value for t in Tier]
    assert [c.value for c in ModeChoice] == [m.value for m in TierRestrictionMode]


# --- packaging --------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_the_image_serves_http_and_checks_liveness() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    final_stage = dockerfile[dockerfile.rindex("\nFROM ") :]
    assert "ENV MODELREG_HTTP_PORT=8080" in final_stage
    assert "EXPOSE 8080" in final_stage
    healthcheck = final_stage[final_stage.index("HEALTHCHECK") :].split("\nENTRYPOINT")[0]
    assert "/healthz" in healthcheck and "MODELREG_HTTP_PORT" in healthcheck


def test_compose_checks_the_worker_through_liveness() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    worker = services["worker"]
    assert worker["environment"]["MODELREG_HTTP_PORT"] == "8080"
    assert "http://127.0.0.1:8080/healthz" in " ".join(worker["healthcheck"]["test"])
    assert services["migrate"]["healthcheck"] == {"disable": True}
