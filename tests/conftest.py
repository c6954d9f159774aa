"""Shared fixtures: one PostgreSQL server and one Kafka broker per test session.

Which servers: see ``tests/support/services.py`` (environment, else Docker, else embedded).
Databases are created by the fixtures inside the chosen server, so a shared server (CI's
PostgreSQL) is never polluted beyond the session's own ``modelreg_test_*`` databases.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.services import (
    KafkaService,
    create_database,
    create_topics,
    drop_database,
    kafka_server,
    postgres_server,
    unique_name,
)
from worker.persistence.migrate import migrate

# The property tests state what must hold, not how fast: on a shared machine one example can
# pause past Hypothesis's default 200 ms deadline and fail a run that has nothing wrong with it.
settings.register_profile("modelreg", deadline=None)
settings.load_profile("modelreg")

#: Prefix of every database of this session, e.g. modelreg_test_1a2b3c4d.
_SESSION_DB = unique_name("modelreg_test")


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Superuser conninfo to the chosen server's maintenance database (create/drop DBs here)."""
    work_dir: Path = tmp_path_factory.mktemp("postgres")
    with postgres_server(work_dir) as conninfo:
        yield conninfo


@pytest.fixture(scope="session")
def _template_db(postgres_admin_url: str) -> Iterator[str]:
    """Name of a database migrated once per session; every clean copy is cloned from it."""
    name = f"{_SESSION_DB}_tmpl"
    migrate(create_database(postgres_admin_url, name))
    yield name
    drop_database(postgres_admin_url, f"{_SESSION_DB}_clean")
    drop_database(postgres_admin_url, name)


@pytest.fixture(scope="session")
def database_url(postgres_admin_url: str, _template_db: str) -> Iterator[str]:
    """Conninfo of this session's own database, migrated; state persists across tests."""
    yield create_database(postgres_admin_url, _SESSION_DB, template=_template_db)
    drop_database(postgres_admin_url, _SESSION_DB)


@pytest.fixture
def clean_db(postgres_admin_url: str, _template_db: str) -> Iterator[str]:
    """Conninfo of a database holding the freshly migrated schema and no rows, per test.

    Recreated from the session template (about 0.1 s), so sequences and any schema changes a
    test made are reset too. Connections leaked by the previous test are cut off.
    """
    name = f"{_SESSION_DB}_clean"
    yield create_database(postgres_admin_url, name, template=_template_db)


@pytest.fixture
def empty_database_url(postgres_admin_url: str) -> Iterator[str]:
    """Conninfo of a brand-new database with nothing in it (not even schema_migrations)."""
    name = unique_name(f"{_SESSION_DB}_empty")
    yield create_database(postgres_admin_url, name)
    drop_database(postgres_admin_url, name)


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaService]:
    """The session's Kafka-compatible broker, started on first use."""
    with kafka_server() as service:
        yield service


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka: KafkaService) -> str:
    """Bootstrap servers of the session broker, ``host:port``."""
    return kafka.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_supports_idempotence(kafka: KafkaService) -> bool:
    """False on Tansu: producers there must set enable_idempotence=False (no transactions)."""
    return kafka.supports_idempotence


@pytest.fixture
def make_topic(kafka_bootstrap: str) -> Callable[..., Awaitable[str]]:
    """``await make_topic("prefix", partitions=3)`` creates a uniquely named topic, returns it."""

    async def _make(prefix: str = "test", partitions: int = 1) -> str:
        name = unique_name(prefix.replace("_", "-")).replace("_", "-")
        await create_topics(kafka_bootstrap, [name], partitions=partitions)
        return name

    return _make
