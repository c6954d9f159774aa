"""``modelreg``: the operator's entry point. Each command is a thin call into a module.

Expected failures (bad configuration, unreachable database or broker, a broken migration) end
with one red line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from worker.settings import ConfigError, Settings, load_settings

app = typer.Typer(no_args_is_help=True, help="Registry of LLM models: worker and operator tools.")


def fail(message: str) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def settings_or_fail(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as error:
        fail(str(error))


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


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
    """
    from aiokafka.errors import KafkaConnectionError, KafkaError
    from psycopg_pool import PoolTimeout

    from worker.persistence.db import DatabaseUnavailable
    from worker.persistence.migrate import MigrationError
    from worker.transport.app import create_app

    overrides: dict[str, object] = {"migrate_on_start": False} if no_migrate else {}
    settings = settings_or_fail(**overrides)
    configure_logging(settings)
    try:
        application = create_app(settings)
        asyncio.run(application.run())
    except (ConfigError, DatabaseUnavailable, MigrationError) as error:
        fail(str(error))
    except PoolTimeout as error:
        fail(f"cannot connect to PostgreSQL: {error}")
    except KafkaConnectionError as error:
        fail(f"cannot connect to Kafka at {settings.kafka_bootstrap_servers}: {error}")
    except KafkaError as error:
        fail(f"Kafka error at startup: {error}")


@app.command()
def demo(
    data_dir: Annotated[
        Path, typer.Option(help="Where the embedded PostgreSQL keeps its data.")
    ] = Path(".modelreg/demo"),
) -> None:
    """Run everything locally: embedded PostgreSQL and broker, the worker, a sample catalog.

    Prints the resulting registry and the lifecycle events; stops all it started on exit.
    """
    from worker.demo import main
    from worker.embedded import EmbeddedUnavailable

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        main(data_dir)
    except EmbeddedUnavailable as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted; everything the demo started has been stopped")


if __name__ == "__main__":  # pragma: no cover
    app()
