"""Pick and start the PostgreSQL and Kafka the tests run against.

Order, for each: an address from the environment (CI, a developer's own server), else a Docker
container via testcontainers when a Docker daemon answers, else an embedded server (see
``worker.embedded``) so the suite also runs on a machine with neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from worker.embedded import embedded_postgres, tansu_broker

log = logging.getLogger("modelreg.tests")

DATABASE_ENV = "MODELREG_TEST_DATABASE_URL"
KAFKA_ENV = "MODELREG_TEST_KAFKA_BOOTSTRAP_SERVERS"
POSTGRES_IMAGE = "postgres:16-alpine"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"


@lru_cache(maxsize=1)
def docker_available() -> bool:
    """Whether a Docker daemon answers a ping within a couple of seconds."""
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextlib.contextmanager
def postgres_server(work_dir: Path) -> Iterator[str]:
    """Yield a superuser conninfo to the maintenance database of the chosen server."""
    from_env = os.environ.get(DATABASE_ENV)
    if from_env:
        log.info("PostgreSQL from %s", DATABASE_ENV)
        yield from_env
    elif docker_available():
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers < 4.13
            from testcontainers.postgres import PostgresContainer
        with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
            log.info("PostgreSQL from testcontainers")
            yield container.get_connection_url()
    else:
        log.info("PostgreSQL embedded in %s", work_dir)
        with embedded_postgres(work_dir / "pgdata") as conninfo:
            yield conninfo


@dataclass(frozen=True)
class KafkaService:
    bootstrap_servers: str
    #: Tansu has no InitProducerId: producers must run with enable_idempotence=False there.
    supports_idempotence: bool
    kind: str  # "env", "docker" or "tansu"


@contextlib.contextmanager
def kafka_server() -> Iterator[KafkaService]:
    """Yield the chosen Kafka-compatible broker."""
    from_env = os.environ.get(KAFKA_ENV)
    if from_env:
        yield KafkaService(from_env, supports_idempotence=True, kind="env")
    elif docker_available():
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers < 4.13
            from testcontainers.kafka import KafkaContainer
        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield KafkaService(container.get_bootstrap_server(), True, kind="docker")
    else:
        with tansu_broker() as bootstrap:
            yield KafkaService(bootstrap, supports_idempotence=False, kind="tansu")


def with_dbname(conninfo: str, dbname: str) -> str:
    """The same server and credentials, another database (works for URLs and key=value)."""
    return make_conninfo(conninfo, dbname=dbname)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def create_database(admin_conninfo: str, name: str, template: str | None = None) -> str:
    """(Re)create database ``name``, optionally as a copy of ``template``; return its conninfo.

    ``WITH (FORCE)`` drops it even if a test leaked connections to it.
    """
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(statement)
    return with_dbname(admin_conninfo, name)


def drop_database(admin_conninfo: str, name: str) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


async def create_topics(
    bootstrap_servers: str, names: Iterable[str], partitions: int = 1, replication: int = 1
) -> None:
    """Create topics with ``partitions`` partitions; topics that already exist are left alone."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    wanted = list(names)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(name=n, num_partitions=partitions, replication_factor=replication)
            for n in wanted
            if n not in existing
        ]
        if new:
            response = await admin.create_topics(new)
            for topic, code, *rest in response.topic_errors:
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (a concurrent creator won)
                    raise RuntimeError(f"cannot create topic {topic}: error {code} {rest}")
        # Creation is asynchronous on real Kafka: wait until the metadata lists every topic.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while not set(wanted) <= set(await admin.list_topics()):
            if loop.time() > deadline:
                raise RuntimeError(f"topics {wanted} did not appear in the cluster metadata")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
