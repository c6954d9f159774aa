"""`modelreg` commands against the real PostgreSQL and broker, as an operator runs them.

Each test gets its own database and its own four topics; the CLI reads them from the same
MODELREG_* environment an operator would set. No worker runs here: these tests check what the
commands send to the broker and read from the database (the worker's side is in tests/e2e).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from tests.support.events import OutputRecord, read_topic
from worker.catalog.formats import load_catalog
from worker.cli import app
from worker.decoding import KEY_ID_HEADER
from worker.embedded import free_port
from worker.settings import load_settings
from worker.transport.topics import ensure_topics

DATA = Path(__file__).resolve().parents[2] / "worker" / "catalog" / "data"
LITELLM_SAMPLE = DATA / "litellm_sample.json"
MODELSDEV_OPENAI = DATA / "modelsdev" / "openai"
CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"

runner = CliRunner()


class Cli:
    """Runs `modelreg` with a test's environment; knows its database and topics."""

    def __init__(self, env: dict[str, str], bootstrap: str) -> None:
        self.env = env
        self.bootstrap = bootstrap
        self.settings = load_settings(
            **{k.removeprefix("MODELREG_").lower(): v for k, v in env.items()}
        )

    def __call__(self, *args: str, **env: str) -> Any:
        result = runner.invoke(app, list(args), env={**self.env, **env})
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def read(self, topic: str, expect: int) -> list[OutputRecord]:
        return asyncio.run(read_topic(self.bootstrap, topic, expect=expect, settle=0.5))

    def insert_model(self, model_id: str, provider: str = "openai", **columns: Any) -> None:
        meta = columns.pop("meta", {})
        values = {"is_available": True, "is_legacy": False, "is_archived": False, **columns}
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO models (id, name, provider, is_available, is_legacy, is_archived,"
                " meta, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, now())",
                (
                    model_id,
                    model_id,
                    provider,
                    values["is_available"],
                    values["is_legacy"],
                    values["is_archived"],
                    json.dumps(meta),
                ),
            )


def _env(database_url: str, bootstrap: str, idempotent: bool) -> dict[str, str]:
    tag = secrets.token_hex(4)
    return {
        "MODELREG_DATABASE_URL": database_url,
        "MODELREG_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MODELREG_KAFKA_IDEMPOTENT_PRODUCER": str(idempotent).lower(),
        "MODELREG_KAFKA_GROUP_ID": f"cli-{tag}",
        "MODELREG_PROVIDER_SYNC_TOPIC": f"cli-{tag}.provider-sync",
        "MODELREG_ADMIN_TOPIC": f"cli-{tag}.admin",
        "MODELREG_LIFECYCLE_TOPIC": f"cli-{tag}.lifecycle",
        "MODELREG_DEAD_LETTER_TOPIC": f"cli-{tag}.dead-letter",
    }


@pytest.fixture
def cli(clean_db: str, kafka_bootstrap: str, kafka_supports_idempotence: bool) -> Iterator[Cli]:
    """A migrated, empty database and the four topics (3 partitions each)."""
    tool = Cli(_env(clean_db, kafka_bootstrap, kafka_supports_idempotence), kafka_bootstrap)
    asyncio.run(ensure_topics(kafka_bootstrap, tool.settings, partitions=3))
    yield tool


def events_of(records: list[OutputRecord]) -> list[dict[str, Any]]:
    return sorted((r.json() for r in records), key=lambda e: (e["type"], e["data"]["id"]))


# --- migrate ----------------------------------------------------------------------------------


def test_migrate_applies_every_migration_once(
    empty_database_url: str, kafka_bootstrap: str
) -> None:
    cli = Cli(_env(empty_database_url, kafka_bootstrap, False), kafka_bootstrap)

    first = cli("migrate")
    second = cli("migrate")

    assert first.exit_code == 0, first.output
    assert "applied 0001_models.sql" in first.output
    assert second.exit_code == 0
    assert "is up to date" in second.output


# --- sync -------------------------------------------------------------------------------------


def test_sync_publishes_one_synced_event_per_model_of_the_provider(cli: Cli) -> None:
    expected = {m.id for m in load_catalog(LITELLM_SAMPLE, provider="openai").models}

    result = cli("sync", str(LITELLM_SAMPLE), "--provider", "openai")

    assert result.exit_code == 0, result.output
    assert f"openai: {len(expected)} synced, 0 withdrawn, 1 skipped" in result.stdout
    assert "skipped 1024-x-1024/dall-e-2" in result.stderr  # image pricing is not per token
    records = cli.read(cli.settings.provider_sync_topic, expect=len(expected))
    events = events_of(records)
    assert {e["data"]["id"] for e in events} == expected
    assert {e["type"] for e in events} == {"model.synced"}
    assert all(r.key == r.json()["data"]["id"].encode() for r in records)
    assert len({e["occurredAt"] for e in events}) == 1  # one run, one observation


def test_sync_withdraws_registered_models_the_catalog_no_longer_lists(cli: Cli) -> None:
    cli.insert_model("gpt-3.5-turbo")
    cli.insert_model("claude-2", provider="anthropic")  # another provider: untouched

    result = cli("sync", str(LITELLM_SAMPLE), "-p", "openai")

    assert result.exit_code == 0, result.output
    assert "1 withdrawn" in result.stdout
    records = cli.read(cli.settings.provider_sync_topic, expect=6)
    withdrawn = [e["data"]["id"] for e in events_of(records) if e["type"] == "model.withdrawn"]
    assert withdrawn == ["gpt-3.5-turbo"]


def test_sync_no_withdraw_only_publishes_the_catalog(cli: Cli) -> None:
    cli.insert_model("gpt-3.5-turbo")

    result = cli("sync", str(LITELLM_SAMPLE), "-p", "openai", "--no-withdraw")

    assert result.exit_code == 0, result.output
    assert "0 withdrawn" in result.stdout


def test_sync_reads_a_models_dev_provider_directory(cli: Cli) -> None:
    result = cli("sync", str(MODELSDEV_OPENAI))

    assert result.exit_code == 0, result.output
    assert "openai: 3 synced, 0 withdrawn, 0 skipped" in result.stdout


def test_sync_dry_run_sends_nothing(cli: Cli) -> None:
    cli.insert_model("gpt-3.5-turbo")

    result = cli("sync", str(LITELLM_SAMPLE), "-p", "openai", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "dry run, nothing sent: openai: 5 synced, 1 withdrawn" in result.stdout
    assert "would withdraw gpt-3.5-turbo" in result.stdout
    assert cli.read(cli.settings.provider_sync_topic, expect=0) == []


def test_sync_of_a_litellm_file_needs_a_provider(cli: Cli) -> None:
    result = cli("sync", str(LITELLM_SAMPLE))

    assert result.exit_code == 2
    assert "--provider" in result.stderr


def test_sync_refuses_a_file_that_is_not_a_catalog(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "catalog.json"
    bad.write_text("{not json")

    result = cli("sync", str(bad), "-p", "openai")

    assert result.exit_code == 2
    assert "not valid JSON" in result.stderr


def test_sync_reports_an_unreachable_broker_in_one_line(cli: Cli) -> None:
    result = cli(
        "sync",
        str(LITELLM_SAMPLE),
        "-p",
        "openai",
        MODELREG_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
    )

    assert result.exit_code == 1
    assert "cannot connect to Kafka" in result.stderr
    assert "Traceback" not in result.output


# --- publish ----------------------------------------------------------------------------------


def test_publish_set_tier_sends_a_validated_admin_event(cli: Cli) -> None:
    result = cli(
        "publish", "set-tier", "gpt-4.1", "pro", "--actor", "ops@example.com", "--reason", "cost"
    )

    assert result.exit_code == 0, result.output
    assert "sent model.set_tier" in result.stdout
    (record,) = cli.read(cli.settings.admin_topic, expect=1)
    event = record.json()
    assert record.key == b"gpt-4.1"
    assert event["actor"] == "ops@example.com"
    assert event["data"] == {
        "id": "gpt-4.1",
        "requiredTier": "pro",
        "tierRestrictionMode": "minimum",
        "reason": "cost",
    }
    assert KEY_ID_HEADER not in record.headers


def test_publish_signs_admin_events_when_admin_keys_are_configured(cli: Cli) -> None:
    result = cli(
        "publish",
        "archive",
        "gpt-4o",
        "--actor",
        "ops@example.com",
        MODELREG_ADMIN_KEYS='{"k1": "s3cret"}',
    )

    assert result.exit_code == 0, result.output
    assert "signed with key k1" in result.stdout
    (record,) = cli.read(cli.settings.admin_topic, expect=1)
    assert record.headers[KEY_ID_HEADER] == "k1"
    assert "s3cret" not in result.output


@pytest.mark.parametrize(
    ("action", "key", "command"),
    [
        ("register", "requiredTier", "set-tier"),
        ("patch-meta", "legacyReplacementModelId", "mark-legacy"),
    ],
)
def test_publish_refuses_tier_and_legacy_keys_in_meta_before_sending(
    cli: Cli, action: str, key: str, command: str
) -> None:
    extra = ["--name", "X", "--provider", "acme"] if action == "register" else []
    meta = json.dumps({key: "pro", "displayName": "X"})

    result = cli("publish", action, "x-1", "--actor", "ops", "--meta", meta, *extra)

    assert result.exit_code == 2
    assert key in result.stderr and command in result.stderr
    assert cli.read(cli.settings.admin_topic, expect=0) == []


def test_publish_reports_contract_violations_with_the_field(cli: Cli) -> None:
    result = cli("publish", "mark-legacy", "gpt-4o", "--actor", "ops", "--sunset", "next tuesday")

    assert result.exit_code == 2
    assert "sunsetDate" in result.stderr


def test_publish_dry_run_prints_the_event(cli: Cli) -> None:
    result = cli(
        "publish", "set-availability", "gpt-4o", "--unavailable", "--actor", "ops", "--dry-run"
    )

    assert result.exit_code == 0, result.output
    event = json.loads(result.stdout)
    assert event["type"] == "model.set_availability"
    assert event["data"] == {"id": "gpt-4o", "isAvailable": False}
    assert cli.read(cli.settings.admin_topic, expect=0) == []


def test_every_admin_action_has_a_publish_command(cli: Cli) -> None:
    from worker.publishing import ADMIN_BUILDERS

    for action in ADMIN_BUILDERS:
        assert cli("publish", action, "--help").exit_code == 0, action


# --- models -----------------------------------------------------------------------------------


@pytest.fixture
def registry(cli: Cli) -> Cli:
    cli.insert_model(
        "gpt-4o",
        is_legacy=True,
        meta={"capabilities": ["chat", "vision"], "legacyReplacementModelId": "gpt-4.1"},
    )
    cli.insert_model("gpt-4.1", meta={"capabilities": ["chat", "vision"], "requiredTier": "pro"})
    cli.insert_model("o3-mini", meta={"capabilities": ["chat", "reasoning"]})
    cli.insert_model("claude-2", provider="anthropic", is_archived=True, is_available=False)
    return cli


def test_models_list_filters_by_capability(registry: Cli) -> None:
    result = registry("models", "list", "--capability", "vision")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "provider", "tier", "state"]
    assert [line.split()[0] for line in lines[2:-1]] == ["gpt-4.1", "gpt-4o"]
    assert lines[-1] == "(2 models)"


@pytest.mark.parametrize(
    ("args", "ids"),
    [
        (["--tier", "pro"], ["gpt-4.1"]),
        (["--tier", "free", "--provider", "openai"], ["gpt-4o", "o3-mini"]),
        (["--legacy"], ["gpt-4o"]),
        (["--archived"], ["claude-2"]),
        (["--available", "--not-legacy"], ["gpt-4.1", "o3-mini"]),
        (["--provider", "anthropic"], ["claude-2"]),
    ],
)
def test_models_list_json_applies_every_filter(
    registry: Cli, args: list[str], ids: list[str]
) -> None:
    result = registry("models", "list", "--json", *args)

    assert result.exit_code == 0, result.output
    assert [m["id"] for m in json.loads(result.stdout)] == ids


def test_models_show_prints_one_model_as_json(registry: Cli) -> None:
    result = registry("models", "show", "gpt-4.1")

    assert result.exit_code == 0, result.output
    model = json.loads(result.stdout)
    assert model["id"] == "gpt-4.1"
    assert model["meta"]["requiredTier"] == "pro"


def test_models_show_of_an_unknown_model_fails(registry: Cli) -> None:
    result = registry("models", "show", "nope")

    assert result.exit_code == 1
    assert "no model 'nope'" in result.stderr


def test_models_resolve_follows_the_legacy_replacement(registry: Cli) -> None:
    text = registry("models", "resolve", "gpt-4o")
    as_json = registry("models", "resolve", "gpt-4o", "--json")

    assert text.exit_code == 0, text.output
    assert text.stdout.startswith("gpt-4.1")
    assert json.loads(as_json.stdout) == {
        "requested": "gpt-4o",
        "resolved": "gpt-4.1",
        "replaced": True,
        "chain": ["gpt-4o", "gpt-4.1"],
        "unresolved": None,
    }


def test_models_resolve_fails_when_no_usable_model_is_at_the_end(registry: Cli) -> None:
    result = registry("models", "resolve", "claude-2")

    assert result.exit_code == 1
    assert "dead_end" in result.stderr


def test_models_commands_say_to_migrate_an_empty_database(
    empty_database_url: str, kafka_bootstrap: str
) -> None:
    cli = Cli(_env(empty_database_url, kafka_bootstrap, False), kafka_bootstrap)

    result = cli("models", "list")

    assert result.exit_code == 1
    assert "modelreg migrate" in result.stderr


# --- contracts --------------------------------------------------------------------------------


def test_contracts_export_writes_what_the_repository_holds(tmp_path: Path) -> None:
    result = runner.invoke(app, ["contracts", "export", str(tmp_path)])

    assert result.exit_code == 0, result.output
    exported = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json"))
    committed = sorted(p.relative_to(CONTRACTS).as_posix() for p in CONTRACTS.rglob("*.json"))
    assert exported == committed
    for name in exported:
        assert (tmp_path / name).read_text() == (CONTRACTS / name).read_text(), name


# --- worker -----------------------------------------------------------------------------------


def test_the_worker_command_names_missing_topics_in_one_line(cli: Cli) -> None:
    absent = f"absent-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        **cli.env,
        "MODELREG_PROVIDER_SYNC_TOPIC": f"{absent}.provider-sync",
        "MODELREG_DEAD_LETTER_TOPIC": f"{absent}.dead-letter",
    }

    # A subprocess, bounded: the command runs until stopped once it has started.
    result = subprocess.run(
        [str(Path(sys.executable).with_name("modelreg")), "worker", "--no-migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    reason = result.stderr.strip().splitlines()[-1]  # after the worker's own log lines
    assert f"topics missing at {cli.bootstrap}: {absent}.provider-sync, {absent}.dead-letter." in (
        reason
    )


# --- doctor -----------------------------------------------------------------------------------


def test_doctor_passes_on_a_ready_environment(cli: Cli) -> None:
    result = cli("doctor")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "✓ settings",
        "✓ database",
        "✓ migrations",
        "✓ broker",
        "✓ topics",
        "✓ consumer lag",
    ]


def test_doctor_warns_about_lag_without_failing(cli: Cli) -> None:
    assert cli("sync", str(LITELLM_SAMPLE), "-p", "openai").exit_code == 0

    result = cli("doctor")

    assert result.exit_code == 0, result.output
    lag = result.stdout.splitlines()[-1]
    assert lag.startswith("! consumer lag:")
    waiting = re.search(r"(\d+) records wait", lag)
    # Not exactly 5: Tansu reports end offsets per record batch, not per record.
    assert waiting is not None and int(waiting.group(1)) > 0, lag


def test_doctor_fails_on_pending_migrations(empty_database_url: str, kafka_bootstrap: str) -> None:
    cli = Cli(_env(empty_database_url, kafka_bootstrap, False), kafka_bootstrap)

    result = cli("doctor")

    assert result.exit_code == 1
    assert "✗ migrations:" in result.stdout
    assert "modelreg migrate" in result.stdout
    assert "✗ topics: missing" in result.stdout


def test_doctor_fails_on_unreachable_services_one_line_each(cli: Cli) -> None:
    result = cli(
        "doctor",
        MODELREG_DATABASE_URL=f"postgresql://nobody:pw-xyz@127.0.0.1:{free_port()}/x",
        MODELREG_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
    )

    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 6
    assert "✗ database: cannot connect" in result.stdout
    assert "✗ broker: cannot connect" in result.stdout
    assert "pw-xyz" not in result.output


def test_doctor_reports_bad_settings(cli: Cli) -> None:
    result = cli("doctor", MODELREG_BATCH_MAX_RECORDS="lots")

    assert result.exit_code == 1
    assert result.stdout.startswith("✗ settings: invalid configuration: MODELREG_BATCH_MAX_RECORDS")
