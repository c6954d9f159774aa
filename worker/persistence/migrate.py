"""The migration runner behind ``modelreg migrate``: plain ``.sql`` files applied in name order.

Hand-written because the needs are small and specific: a checksum per applied file (so an edited
migration is caught, not silently skipped), a cross-process lock (several workers may start at
once with ``MODELREG_MIGRATE_ON_START``), and files that must run outside a transaction
(``CREATE INDEX CONCURRENTLY`` on a live ``models`` table).

File conventions:

* A file runs in one transaction together with the insert of its ``schema_migrations`` row, so it
  is either fully applied and recorded or not at all.
* A file whose first line is ``-- modelreg: no-transaction`` runs in autocommit mode, one statement
  at a time, and is recorded only after every statement succeeded. It may therefore be re-run
  after a crash halfway, so it must be idempotent (``IF NOT EXISTS``). See
  :func:`split_statements` for how it is cut into statements.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from worker.persistence.db import connect

log = logging.getLogger("modelreg.migrate")

MIGRATIONS_DIR_ENV = "MODELREG_MIGRATIONS_DIR"
NO_TRANSACTION_MARKER = "-- modelreg: no-transaction"
#: Key of the session advisory lock serializing runs: "modelreg" in ASCII, as a signed bigint.
ADVISORY_LOCK_KEY = int.from_bytes(b"modelreg", "big", signed=True)
LOCK_POLL_INTERVAL_S = 0.2

_HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    filename   text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_CONCURRENT_INDEX = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?(\"[^\"]+\"|[\w.$]+)",
    re.IGNORECASE,
)


class MigrationError(Exception):
    """A migration failed, or an applied one was edited; the message names the file."""


@dataclass(frozen=True)
class Migration:
    filename: str
    sql: str
    checksum: str
    no_transaction: bool

    @classmethod
    def load(cls, path: Path) -> Migration:
        # Normalise line endings so a checkout with CRLF does not look like an edited migration.
        text = path.read_bytes().decode("utf-8").replace("\r\n", "\n")
        first_line = text.split("\n", 1)[0].strip()
        return cls(
            filename=path.name,
            sql=text,
            checksum=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            no_transaction=first_line == NO_TRANSACTION_MARKER,
        )


def migrations_dir(directory: Path | None = None) -> Path:
    """Where the ``.sql`` files are: argument, env, the repo's ``migrations/``, the packaged copy.

    The packaged copy (``worker/_migrations``) is what a wheel install has; the repo directory
    wins in a checkout so that editing a migration needs no reinstall.
    """
    if directory is not None:
        return directory
    from_env = os.environ.get(MIGRATIONS_DIR_ENV)
    if from_env:
        return Path(from_env)
    repo_dir = Path(__file__).resolve().parents[2] / "migrations"
    if repo_dir.is_dir():
        return repo_dir
    return Path(__file__).resolve().parents[1] / "_migrations"


def discover(directory: Path | None = None) -> list[Migration]:
    """All migrations of ``directory`` (see :func:`migrations_dir`), sorted by filename."""
    path = migrations_dir(directory)
    if not path.is_dir():
        raise MigrationError(f"migrations directory not found: {path}")
    return [Migration.load(p) for p in sorted(path.glob("*.sql"), key=lambda p: p.name)]


def split_statements(text: str) -> list[str]:
    """Cut a no-transaction file into statements: a statement ends at a ``;`` that ends a line.

    Deliberately simple, because such files only hold statements like ``CREATE INDEX
    CONCURRENTLY``: a ``;`` at the end of a line inside a string literal or a function body would
    be cut too, so do not put those in a no-transaction file. ``--`` comment lines never end a
    statement, and chunks holding only comments are dropped.
    """
    statements: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        current.append(line)
        stripped = line.strip()
        if stripped.endswith(";") and not stripped.startswith("--"):
            statements.append("\n".join(current).strip())
            current = []
    statements.append("\n".join(current).strip())
    return [s for s in statements if _has_code(s)]


def _has_code(statement: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in statement.split("\n"))


def _history_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _applied_checksums(conn: psycopg.Connection[Any]) -> dict[str, str]:
    if not _history_exists(conn):
        return {}
    rows = conn.execute("SELECT filename, checksum FROM schema_migrations").fetchall()
    return {str(name): str(checksum) for name, checksum in rows}


def applied(conninfo: str) -> list[str]:
    """Filenames recorded as applied in the database, in order."""
    with connect(conninfo, autocommit=True) as conn:
        return sorted(_applied_checksums(conn))


def pending(conninfo: str, directory: Path | None = None) -> list[str]:
    """Filenames on disk that the database has not applied yet, in the order they would run."""
    with connect(conninfo, autocommit=True) as conn:
        done = _applied_checksums(conn)
    return [m.filename for m in discover(directory) if m.filename not in done]


def _acquire_lock(conn: psycopg.Connection[Any]) -> None:
    """Take the session advisory lock by polling ``pg_try_advisory_lock``.

    Not a blocking ``pg_advisory_lock``: a waiter would sit in an open statement with an old
    snapshot, and ``CREATE INDEX CONCURRENTLY`` in the lock holder waits for every such snapshot
    to end - a deadlock between the two runs. Short polls hold no snapshot in between.
    """
    announced = False
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()
        if row and row[0]:
            return
        if not announced:
            log.info("another migration run holds the lock; waiting for it to finish")
            announced = True
        time.sleep(LOCK_POLL_INTERVAL_S)


def _check_checksums(migrations: list[Migration], done: dict[str, str]) -> None:
    for migration in migrations:
        recorded = done.get(migration.filename)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.filename} was changed after it was applied "
                f"(checksum {recorded[:12]}... in schema_migrations, {migration.checksum[:12]}... "
                "on disk); add a new migration instead of editing an applied one"
            )


def _record(conn: psycopg.Connection[Any], migration: Migration) -> None:
    conn.execute(
        "INSERT INTO schema_migrations (filename, checksum) VALUES (%s, %s)",
        (migration.filename, migration.checksum),
    )


def _apply_in_transaction(conn: psycopg.Connection[Any], migration: Migration) -> None:
    with conn.transaction():
        conn.execute(migration.sql.encode("utf-8"))
        _record(conn, migration)


def _invalid_indexes(conn: psycopg.Connection[Any], names: list[str]) -> list[str]:
    rows = conn.execute(
        "SELECT i.indexrelid::regclass::text FROM pg_index i"
        " WHERE NOT i.indisvalid AND i.indexrelid = ANY("
        "   SELECT to_regclass(n) FROM unnest(%s::text[]) AS n)",
        (names,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _apply_without_transaction(conn: psycopg.Connection[Any], migration: Migration) -> None:
    """Run statement by statement in autocommit, then record the file.

    An interrupted ``CREATE INDEX CONCURRENTLY`` leaves an invalid index behind that ``IF NOT
    EXISTS`` would then skip for good; such leftovers of this (still unrecorded) file are dropped
    first, and every index it creates must be valid before the file is recorded.
    """
    indexes = [m.group(1) for m in _CONCURRENT_INDEX.finditer(migration.sql)]
    for name in _invalid_indexes(conn, indexes):
        log.warning(
            "dropping invalid index %s left by an interrupted run of %s", name, migration.filename
        )
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.SQL(name)))
    for statement in split_statements(migration.sql):
        conn.execute(statement.encode("utf-8"))
    broken = _invalid_indexes(conn, indexes)
    if broken:
        raise MigrationError(f"migration {migration.filename} left invalid indexes: {broken}")
    _record(conn, migration)


def migrate(conninfo: str, directory: Path | None = None) -> list[str]:
    """Apply every pending migration, in filename order; return the filenames applied now.

    Runs under a session advisory lock, so concurrent callers serialize and the later ones find
    nothing left to do. Raises MigrationError on an edited applied file or a failing statement,
    DatabaseUnavailable when PostgreSQL cannot be reached.
    """
    migrations = discover(directory)
    done_now: list[str] = []
    with connect(conninfo, autocommit=True, application_name="modelreg-migrate") as conn:
        _acquire_lock(conn)
        try:
            conn.execute(_HISTORY_DDL)
            done = _applied_checksums(conn)
            _check_checksums(migrations, done)
            for migration in migrations:
                if migration.filename in done:
                    continue
                started = time.monotonic()
                try:
                    if migration.no_transaction:
                        _apply_without_transaction(conn, migration)
                    else:
                        _apply_in_transaction(conn, migration)
                except psycopg.Error as error:
                    reason = " ".join(str(error).split())
                    raise MigrationError(
                        f"migration {migration.filename} failed: {reason}"
                    ) from error
                log.info(
                    "applied migration %s (%.0f ms)",
                    migration.filename,
                    (time.monotonic() - started) * 1000,
                )
                done_now.append(migration.filename)
        finally:
            # Closing the session would release the lock too; unlocking keeps it explicit.
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    if not done_now:
        log.info("database schema is up to date")
    return done_now
