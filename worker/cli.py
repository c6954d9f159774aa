"""``modelreg``: the operator's entry point. Each command is a thin call into a module.

Expected failures (bad configuration, unreachable database or broker, a broken migration) end
with one red line on stderr and a non-zero exit code, never a traceback. Exit codes: 1 for
trouble with the environment (database, broker, a check that failed), 2 for bad input (a
catalog or an event that violates the contract; also typer's usage errors).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from worker.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    import psycopg

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    no_args_is_help=True,
    help="Registry of LLM models: worker and operator tools.",
    context_settings=HELP_OPTIONS,
)
publish_app = typer.Typer(
    no_args_is_help=True,
    help="Publish one admin action to the admin topic (validated first, signed if keys are set).",
    context_settings=HELP_OPTIONS,
)
models_app = typer.Typer(
    no_args_is_help=True, help="Read the registry (read-only SQL).", context_settings=HELP_OPTIONS
)
contracts_app = typer.Typer(
    no_args_is_help=True, help="The wire contract as files.", context_settings=HELP_OPTIONS
)
app.add_typer(publish_app, name="publish")
app.add_typer(models_app, name="models")
app.add_typer(contracts_app, name="contracts")

EXIT_ENVIRONMENT = 1
EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_ENVIRONMENT) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    typer.secho(message, fg=typer.colors.YELLOW, err=True)


def settings_or_fail(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as error:
        fail(str(error))


def configure_logging(settings: Settings) -> None:
    from worker.observability.logs import configure_logging as configure

    configure(settings)


@app.command()
def migrate() -> None:
    """Apply pending database migrations (MODELREG_DATABASE_URL) and list what was applied."""
    from worker.persistence.db import DatabaseUnavailable, describe_conninfo
    from worker.persistence.migrate import MigrationError
    from worker.persistence.migrate import migrate as run_migrations

    settings = settings_or_fail()
    try:
        applied = run_migrations(settings.database_url)
    except (DatabaseUnavailable, MigrationError) as error:
        fail(str(error))
    for name in applied:
        typer.echo(f"applied {name}")
    where = describe_conninfo(settings.database_url)
    if applied:
        typer.secho(f"{len(applied)} migration(s) applied to {where}", fg=typer.colors.GREEN)
    else:
        typer.secho(f"{where} is up to date", fg=typer.colors.GREEN)


@app.command()
def worker(
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not apply migrations at startup.")
    ] = False,
) -> None:
    """Run the worker: consume the input topics, update the registry, publish the outbox.

    Stops gracefully on SIGTERM/SIGINT: the batch in hand is finished and the outbox flushed.
    With MODELREG_HTTP_PORT set it serves /healthz, /readyz and /metrics on that port.
    """
    from aiokafka.errors import KafkaConnectionError, KafkaError
    from psycopg_pool import PoolTimeout

    from worker.persistence.db import DatabaseUnavailable
    from worker.persistence.migrate import MigrationError
    from worker.transport.app import create_app
    from worker.transport.topics import TopicsMissing

    overrides: dict[str, object] = {"migrate_on_start": False} if no_migrate else {}
    settings = settings_or_fail(**overrides)
    configure_logging(settings)
    try:
        application = create_app(settings)
        asyncio.run(application.run())
    except (ConfigError, DatabaseUnavailable, MigrationError, TopicsMissing) as error:
        fail(str(error))
    except PoolTimeout as error:
        fail(f"cannot connect to PostgreSQL: {error}")
    except KafkaConnectionError as error:
        fail(f"cannot connect to Kafka at {settings.kafka_bootstrap_servers}: {error}")
    except KafkaError as error:
        fail(f"Kafka error at startup: {error}")
    except OSError as error:
        fail(f"cannot start the worker: {error}")


@app.command()
def demo(
    data_dir: Annotated[
        Path, typer.Option(help="Where the embedded PostgreSQL keeps its data.")
    ] = Path(".modelreg/demo"),
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running",
            help="After the demo, keep PostgreSQL, the broker and the worker up until Ctrl-C,"
            " and print the environment for a second shell.",
        ),
    ] = False,
    http_port: Annotated[
        int | None,
        typer.Option(help="Serve the worker's /healthz, /readyz, /metrics here (0: any port)."),
    ] = None,
) -> None:
    """Run everything locally: embedded PostgreSQL and broker, the worker, a sample catalog.

    Prints the resulting registry and the lifecycle events; stops all it started on exit.
    """
    from worker.demo import main
    from worker.embedded import EmbeddedUnavailable

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if keep_running and http_port is None:
        http_port = 8080
    try:
        main(data_dir, keep_running=keep_running, http_port=http_port)
    except EmbeddedUnavailable as error:
        fail(str(error))
    except OSError as error:
        fail(f"demo failed: {error}")
    except KeyboardInterrupt:
        fail("interrupted; everything the demo started has been stopped")
    if keep_running:
        typer.echo("stopped")


# --- sync -------------------------------------------------------------------------------------


class FormatChoice(StrEnum):
    native = "native"
    litellm = "litellm"
    modelsdev = "modelsdev"


@app.command()
def sync(
    file: Annotated[
        Path,
        typer.Argument(
            help="Catalog: this project's JSON, LiteLLM's model_prices_and_context_window.json,"
            " models.dev api.json, or a models.dev providers/<p> directory or .toml file."
        ),
    ],
    provider: Annotated[
        str | None,
        typer.Option("--provider", "-p", help="Provider to sync (required for LiteLLM files)."),
    ] = None,
    fmt: Annotated[
        FormatChoice | None,
        typer.Option("--format", help="Catalog format; detected from the content if omitted."),
    ] = None,
    withdraw: Annotated[
        bool,
        typer.Option(
            help="Publish model.withdrawn for the provider's registered models missing from FILE."
        ),
    ] = True,
    allow_empty: Annotated[
        bool,
        typer.Option(help="Allow a catalog without models to withdraw every registered one."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Validate and report what would be sent; send nothing.")
    ] = False,
    source: Annotated[str, typer.Option(help="The events' source field.")] = "modelreg-sync",
) -> None:
    """Publish a provider catalog: model.synced per model, model.withdrawn for models gone.

    Prints skipped entries as warnings and "PROVIDER: N synced, M withdrawn, K skipped".
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from worker.catalog.formats import CatalogError, load_catalog
    from worker.catalog.sync import (
        RegistryUnavailable,
        SyncProgress,
        registered_ids,
        sync_catalog,
    )
    from worker.publishing import PublishError

    settings = settings_or_fail()
    try:
        catalog = load_catalog(file, provider=provider, fmt=fmt.value if fmt else None)
    except CatalogError as error:
        fail(str(error), EXIT_BAD_INPUT)
    for skipped in catalog.skipped:
        warn(f"skipped {skipped.key}: {skipped.reason}")
    chosen = provider or catalog.provider
    if chosen is None:
        if len(catalog.providers) != 1:
            listed = ", ".join(catalog.providers) or "none"
            fail(f"the catalog holds several providers ({listed}): pass --provider", EXIT_BAD_INPUT)
        chosen = catalog.providers[0]
    models = catalog.for_provider(chosen)
    try:
        existing = registered_ids(settings.database_url, chosen) if withdraw else set()
    except RegistryUnavailable as error:
        fail(str(error))
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[current]}"),
        console=Console(stderr=True),
        transient=False,
        disable=dry_run,
    )
    with progress:
        task = progress.add_task(f"{chosen}", total=None, current="")

        def advance(step: SyncProgress) -> None:
            progress.update(task, completed=step.done, total=step.total, current=f"{step.model_id}")

        try:
            summary = asyncio.run(
                sync_catalog(
                    settings,
                    chosen,
                    models,
                    withdraw=withdraw,
                    existing_ids=existing,
                    progress=advance,
                    allow_empty=allow_empty,
                    dry_run=dry_run,
                    source=source,
                )
            )
        except ValueError as error:  # ContractError and CatalogError are ValueErrors
            fail(str(error), EXIT_BAD_INPUT)
        except PublishError as error:
            fail(str(error))
    prefix = "dry run, nothing sent: " if dry_run else ""
    typer.echo(
        f"{prefix}{chosen}: {len(summary.synced)} synced, {len(summary.withdrawn)} withdrawn,"
        f" {len(catalog.skipped)} skipped"
    )
    if dry_run:
        for model_id in summary.withdrawn:
            typer.echo(f"  would withdraw {model_id}")


# --- publish ----------------------------------------------------------------------------------

Actor = Annotated[
    str,
    typer.Option(
        "--actor", envvar="MODELREG_ACTOR", help="Who does this (recorded; required by the worker)."
    ),
]
AdminSource = Annotated[str, typer.Option(help="The event's source field.")]
DryRun = Annotated[bool, typer.Option(help="Print the validated event instead of sending it.")]
ModelId = Annotated[str, typer.Argument(help="The model's id (also the Kafka key).")]
MetaJson = Annotated[
    str,
    typer.Option(
        "--meta",
        help='Meta as a JSON object, or @FILE to read it from a file: \'{"displayName": "X"}\'.',
    ),
]
DEFAULT_ADMIN_SOURCE = "modelreg-cli"


def _parse_meta(text: str, action: str) -> dict[str, Any]:
    """JSON object from the option; tier and legacy keys are refused with the right command."""
    from contracts.meta import LEGACY_KEYS, TIER_KEYS

    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as error:
            fail(f"--meta: cannot read {text[1:]}: {error.strerror or error}", EXIT_BAD_INPUT)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"--meta is not valid JSON: {error}", EXIT_BAD_INPUT)
    if not isinstance(meta, dict):
        fail("--meta must be a JSON object", EXIT_BAD_INPUT)
    for keys, command in ((TIER_KEYS, "set-tier"), (LEGACY_KEYS, "mark-legacy / clear-legacy")):
        found = [k for k in keys if k in meta]
        if found:
            fail(
                f"{action} may not set {', '.join(found)}: the worker rejects them there;"
                f" use `modelreg publish {command}`",
                EXIT_BAD_INPUT,
            )
    return meta


def _send(build: Any, dry_run: bool, /, *args: Any, **kwargs: Any) -> None:
    """Build (validates), then print or publish; ContractError -> exit 2, PublishError -> 1."""
    from worker.publishing import ContractError, PublishError, publish_events

    settings = settings_or_fail()
    try:
        event = build(*args, **kwargs)
    except (ContractError, ValueError) as error:
        fail(str(error), EXIT_BAD_INPUT)
    if dry_run:
        typer.echo(json.dumps(event, indent=2, ensure_ascii=False))
        return
    try:
        topics = asyncio.run(publish_events(settings, [event]))
    except PublishError as error:
        fail(str(error))
    signed = (
        f"signed with key {next(iter(settings.admin_keys))}" if settings.admin_keys else "unsigned"
    )
    typer.echo(
        f"sent {event['type']} {event['eventId']} for {event['data']['id']} to {topics[0]}"
        f" ({signed})"
    )


@publish_app.command("register")
def publish_register(
    model_id: ModelId,
    actor: Actor,
    name: Annotated[str, typer.Option(help="Display name of the model.")],
    provider: Annotated[str, typer.Option(help="Provider id, e.g. openai.")],
    meta: MetaJson = "{}",
    source: AdminSource = DEFAULT_ADMIN_SOURCE,
    dry_run: DryRun = False,
) -> None:
    """model.register: add a model no provider sync knows (or merge meta into it)."""
    from worker.publishing import register_event

    parsed = _parse_meta(meta, "register")
    _send(
        register_event,
        dry_run,
        model_id,
        name=name,
        provider=provider,
        meta=parsed,
        actor=actor,
        source=source,
    )


@publish_app.command("patch-meta")
def publish_patch_meta(
    model_id: ModelId,
    actor: Actor,
    meta: MetaJson,
    source: AdminSource = DEFAULT_ADMIN_SOURCE,
    dry_run: DryRun = False,
) -> None:
    """model.patch_meta: an RFC 7396 merge patch of meta (null removes a key)."""
    from worker.publishing import patch_meta_event

    parsed = _parse_meta(meta, "patch-meta")
    _send(patch_meta_event, dry_run, model_id, parsed, actor=actor, source=source)


class TierChoice(StrEnum):
    free = "free"
    pro = "pro"
    pro_max = "pro_max"
    enterprise = "enterprise"


class ModeChoice(StrEnum):
    minimum = "minimum"
    exact = "exact"
    whitelist = "whitelist"


@publish_app.command("set-tier")
def publish_set_tier(
    model_id: ModelId,
    tier: Annotated[TierChoice, typer.Argument(help="The required tier.")],
    actor: Actor,
    mode: Annotated[ModeChoice, typer.Option(help="How the tier restricts access.")] = (
        ModeChoice.minimum
    ),
    allowed_tier: Annotated[
        list[TierChoice] | None,
        typer.Option("--allowed-tier", help="A tier of the whitelist (repeat it)."),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the tier audit).")] = None,
    source: AdminSource = DEFAULT_ADMIN_SOURCE,
    dry_run: DryRun = False,
) -> None:
    """model.set_tier: who may use the model; recorded in the tier audit."""
    from worker.publishing import set_tier_event

    _send(
        set_tier_event,
        dry_run,
        model_id,
        tier.value,
        mode=mode.value,
        allowed_tiers=[t.value for t in allowed_tier] if allowed_tier else None,
        reason=reason,
        actor=actor,
        source=source,
    )


@publish_app.command("mark-legacy")
def publish_mark_legacy(
    model_id: ModelId,
    actor: Actor,
    replacement: Annotated[
        str | None, typer.Option(help="The model callers should use instead.")
    ] = None,
    notice: Annotated[str | None, typer.Option(help="Deprecation notice for users.")] = None,
    sunset: Annotated[
        str | None,
        typer.Option(help="RFC 3339 date-time after which the model is archived automatically."),
    ] = None,
    source: AdminSource = DEFAULT_ADMIN_SOURCE,
    dry_run: DryRun = False,
) -> None:
    """model.mark_legacy: deprecate, optionally naming a successor and a sunset date."""
    from worker.publishing import mark_legacy_event

    _send(
        mark_legacy_event,
        dry_run,
        model_id,
        replacement_model_id=replacement,
        deprecation_notice=notice,
        sunset_date=sunset,
        actor=actor,
        source=source,
    )


@publish_app.command("clear-legacy")
def publish_clear_legacy(
    model_id: ModelId,
    actor: Actor,
    source: AdminSource = DEFAULT_ADMIN_SOURCE,
    dry_run: DryRun = False,
) -> None:
    """model.clear_legacy: the model is current again; legacy keys leave its meta."""
    from worker.publishing import clear_legacy_event

    _send(clear_legacy_event, dry_run, model_id, actor=actor, source=source)


@publish_app.command("archive")
def publish_archive(
    model_id: ModelId,
    actor: Actor,
    reason: Annotated[str | None, typer.Option(help="Why it is archived.")] = None,
    source: AdminSource = DEFAULT_ADMIN_SOURCE,
    dry_run: DryRun = False,
) -> None:
    """model.archive: archived and unavailable."""
    from worker.publishing import archive_event

    _send(archive_event, dry_run, model_id, reason=reason, actor=actor, source=source)


@publish_app.command("unarchive")
def publish_unarchive(
    model_id: ModelId,
    actor: Actor,
    source: AdminSource = DEFAULT_ADMIN_SOURCE,
    dry_run: DryRun = False,
) -> None:
    """model.unarchive: not archived; stays unavailable until made available."""
    from worker.publishing import unarchive_event

    _send(unarchive_event, dry_run, model_id, actor=actor, source=source)


@publish_app.command("set-availability")
def publish_set_availability(
    model_id: ModelId,
    actor: Actor,
    available: Annotated[
        bool, typer.Option("--available/--unavailable", help="Make the model (un)available.")
    ],
    source: AdminSource = DEFAULT_ADMIN_SOURCE,
    dry_run: DryRun = False,
) -> None:
    """model.set_availability: an archived model cannot be made available."""
    from worker.publishing import set_availability_event

    _send(set_availability_event, dry_run, model_id, available, actor=actor, source=source)


# --- models -----------------------------------------------------------------------------------


def _connect_or_fail(settings: Settings) -> psycopg.Connection[Any]:
    from worker.persistence.db import DatabaseUnavailable, connect

    try:
        return connect(settings.database_url, autocommit=True, application_name="modelreg-cli")
    except DatabaseUnavailable as error:
        fail(str(error))


def _query_or_fail(settings: Settings, run: Any) -> Any:
    """Run ``run(conn)``; a schema that is not there yet is a hint, not a traceback."""
    import psycopg

    with _connect_or_fail(settings) as conn:
        try:
            return run(conn)
        except psycopg.errors.UndefinedTable:
            fail("the registry has no tables yet: run `modelreg migrate`")
        except psycopg.Error as error:
            fail(f"query failed: {' '.join(str(error).split())}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _state(model: dict[str, Any]) -> str:
    if model["is_archived"]:
        return "archived"
    state = "legacy" if model["is_legacy"] else "current"
    return state if model["is_available"] else f"{state}, unavailable"


CAPABILITIES_WIDTH = 40


def _capabilities(capabilities: list[Any]) -> str:
    """As many as fit the column, then how many more (`models show` has them all)."""
    names = [str(c) for c in capabilities]
    if len(",".join(names)) <= CAPABILITIES_WIDTH:
        return ",".join(names)
    shown: list[str] = []
    for index, capability in enumerate(names):
        more = len(capabilities) - index
        if len(",".join([*shown, str(capability)])) > CAPABILITIES_WIDTH - len(f",+{more}"):
            return ",".join([*shown, f"+{more}"])
        shown.append(capability)
    return ",".join(shown)


def _table(models: list[dict[str, Any]]) -> list[str]:
    header = ("id", "provider", "tier", "state", "context", "in $/M", "out $/M", "capabilities")
    rows: list[tuple[str, ...]] = [header]
    for m in models:
        meta = m["meta"] or {}
        rows.append(
            (
                str(m["id"]),
                str(m["provider"]),
                str(meta.get("requiredTier", "free")),
                _state(m),
                str(meta.get("contextLength", "")),
                str(meta.get("inputCostPerMillionTokens", "")),
                str(meta.get("outputCostPerMillionTokens", "")),
                _capabilities(meta.get("capabilities", [])),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


@models_app.command("list")
def models_list(
    provider: Annotated[str | None, typer.Option(help="Only this provider's models.")] = None,
    tier: Annotated[
        TierChoice | None, typer.Option(help="Required tier (no tier set counts as free).")
    ] = None,
    capability: Annotated[
        str | None, typer.Option(help="Listed in meta.capabilities, e.g. vision.")
    ] = None,
    legacy: Annotated[bool | None, typer.Option("--legacy/--not-legacy")] = None,
    archived: Annotated[bool | None, typer.Option("--archived/--not-archived")] = None,
    available: Annotated[bool | None, typer.Option("--available/--unavailable")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON array instead of a table.")] = False,
) -> None:
    """Models matching every given filter, by id (the filters use the registry's indexes)."""
    from worker.persistence.queries import list_models

    settings = settings_or_fail()
    models = _query_or_fail(
        settings,
        lambda conn: list_models(
            conn,
            provider=provider,
            tier=tier.value if tier else None,
            capability=capability,
            legacy=legacy,
            archived=archived,
            available=available,
            limit=limit,
        ),
    )
    if as_json:
        typer.echo(json.dumps(_jsonable(models), indent=2, ensure_ascii=False))
        return
    if not models:
        typer.echo("no models match")
        return
    for line in _table(models):
        typer.echo(line)
    typer.echo(f"({len(models)} model{'s' if len(models) != 1 else ''})")


@models_app.command("show")
def models_show(model_id: ModelId) -> None:
    """One model, all columns and meta, as JSON."""
    from worker.persistence.queries import get_model

    settings = settings_or_fail()
    model = _query_or_fail(settings, lambda conn: get_model(conn, model_id))
    if model is None:
        fail(f"no model {model_id!r}")
    typer.echo(json.dumps(_jsonable(model), indent=2, ensure_ascii=False))


@models_app.command("resolve")
def models_resolve(
    model_id: ModelId,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
) -> None:
    """The model a caller asking for MODEL_ID should use now, following legacy replacements.

    Exits 1 when the chain ends without a usable model (dead end, missing, cycle).
    """
    from worker.persistence.queries import resolve_model

    settings = settings_or_fail()
    resolved = _query_or_fail(settings, lambda conn: resolve_model(conn, model_id))
    if resolved is None:
        fail(f"no model {model_id!r}")
    target = resolved.model["id"] if resolved.model is not None else None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "requested": model_id,
                    "resolved": target,
                    "replaced": resolved.replaced,
                    "chain": list(resolved.chain),
                    "unresolved": resolved.unresolved,
                },
                indent=2,
            )
        )
    elif target is None:
        pass
    elif resolved.replaced:
        typer.echo(
            f"{target}  ({model_id} is {_state(resolved.requested)}; chain: "
            f"{' -> '.join(resolved.chain)})"
        )
    else:
        typer.echo(f"{target}  (current)")
    if target is None:
        fail(
            f"no usable model for {model_id!r}: {' -> '.join(resolved.chain)} ends in"
            f" {resolved.unresolved}"
        )


# --- contracts --------------------------------------------------------------------------------


@contracts_app.command("export")
def contracts_export(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Contracts directory: JSON Schemas go to DIR/schemas, AsyncAPI to"
            " DIR/asyncapi.json."
        ),
    ] = Path("contracts"),
) -> None:
    """Write the JSON Schemas (events, ModelMeta) and the AsyncAPI document of the topics.

    The AsyncAPI document is generated by FastStream; both are committed and checked by tests.
    """
    from contracts.schema import export
    from worker.transport.asyncapi import ASYNCAPI_FILE, export_asyncapi

    written = export(directory / "schemas")
    written.append(export_asyncapi(directory / ASYNCAPI_FILE))
    for path in written:
        typer.echo(f"wrote {path}")


# --- doctor -----------------------------------------------------------------------------------


@app.command()
def doctor() -> None:
    """Check settings, database, migrations, broker, topics and consumer lag; one line each.

    Exits 1 if any check fails; consumer lag is only a warning.
    """
    from worker.doctor import Check, Status, run_checks

    colors = {Status.OK: typer.colors.GREEN, Status.WARN: typer.colors.YELLOW}

    def show(check: Check) -> None:
        typer.secho(check.line(), fg=colors.get(check.status, typer.colors.RED))

    checks = run_checks(report=show)
    if any(c.status is Status.FAIL for c in checks):
        raise typer.Exit(EXIT_ENVIRONMENT)


if __name__ == "__main__":  # pragma: no cover
    app()
