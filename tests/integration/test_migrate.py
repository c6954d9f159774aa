"""Specification of ``modelreg migrate`` (worker.persistence.migrate) against a real PostgreSQL."""

from __future__ import annotations

import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from worker.embedded import free_port
from worker.persistence.db import DatabaseUnavailable, describe_conninfo
from worker.persistence.migrate import (
    ADVISORY_LOCK_KEY,
    MIGRATIONS_DIR_ENV,
    NO_TRANSACTION_MARKER,
    MigrationError,
    applied,
    discover,
    migrate,
    migrations_dir,
    pending,
    split_statements,
)

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
ALL_FILES = sorted(p.name for p in REPO_MIGRATIONS.glob("*.sql"))


def rows(conninfo: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(query, params).fetchall()


def history(conninfo: str) -> list[str]:
    return [r[0] for r in rows(conninfo, "SELECT filename FROM schema_migrations ORDER BY 1")]


# --- applying -----------------------------------------------------------------------------------


def test_a_new_database_gets_every_file_in_filename_order(empty_database_url: str) -> None:
    assert pending(empty_database_url) == ALL_FILES
    assert applied(empty_database_url) == []

    assert migrate(empty_database_url) == ALL_FILES

    assert applied(empty_database_url) == ALL_FILES
    assert pending(empty_database_url) == []


def test_migrating_twice_applies_nothing_the_second_time(empty_database_url: str) -> None:
    migrate(empty_database_url)

    assert migrate(empty_database_url) == []
    assert history(empty_database_url) == ALL_FILES  # one row per file


def test_concurrent_runs_serialize_and_apply_each_file_once(empty_database_url: str) -> None:
    """Several workers starting at once with MODELREG_MIGRATE_ON_START: no error, no double run.

    The test holds the runner's lock until all three processes are waiting for it, so they
    really do contend for it when it is released.
    """
    spawn = multiprocessing.get_context("spawn")
    with (
        psycopg.connect(empty_database_url, autocommit=True) as holder,
        ProcessPoolExecutor(max_workers=3, mp_context=spawn) as pool,
    ):
        holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        runs = [pool.submit(migrate, empty_database_url) for _ in range(3)]
        deadline = time.monotonic() + 60
        while waiting_runs(holder) < 3:
            assert time.monotonic() < deadline, "the migration runs never connected"
            assert not any(run.done() for run in runs), [r.exception() for r in runs if r.done()]
            time.sleep(0.05)
        holder.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        results = [run.result(timeout=120) for run in runs]

    assert sorted(len(result) for result in results) == [0, 0, len(ALL_FILES)]
    assert history(empty_database_url) == ALL_FILES


def waiting_runs(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = 'modelreg-migrate' AND datname = current_database()"
    ).fetchone()
    return int(row[0]) if row else 0


def test_a_failing_file_is_rolled_back_and_not_recorded(
    empty_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok_table (id int);\n")
    (tmp_path / "0002_broken.sql").write_text("CREATE TABLE half_done (id int);\nSELECT 1 / 0;\n")

    with pytest.raises(MigrationError, match=r"0002_broken\.sql.*division by zero"):
        migrate(empty_database_url, tmp_path)

    assert history(empty_database_url) == ["0001_ok.sql"]
    assert rows(empty_database_url, "SELECT to_regclass('half_done')") == [(None,)]


def test_a_changed_applied_file_is_refused_before_anything_runs(
    empty_database_url: str, tmp_path: Path
) -> None:
    for name in ALL_FILES:
        shutil.copy(REPO_MIGRATIONS / name, tmp_path / name)
    migrate(empty_database_url, tmp_path)
    models_sql = tmp_path / "0001_models.sql"
    models_sql.write_text(models_sql.read_text() + "\n-- an innocent-looking edit\n")
    (tmp_path / "9999_next.sql").write_text("CREATE TABLE next_table (id int);\n")

    with pytest.raises(MigrationError, match=r"0001_models\.sql was changed after it was applied"):
        migrate(empty_database_url, tmp_path)

    assert "9999_next.sql" not in history(empty_database_url)


def test_line_endings_do_not_count_as_a_change(empty_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_t.sql").write_bytes(b"CREATE TABLE t (id int);\n")
    migrate(empty_database_url, tmp_path)
    (tmp_path / "0001_t.sql").write_bytes(b"CREATE TABLE t (id int);\r\n")

    assert migrate(empty_database_url, tmp_path) == []


# --- no-transaction files -----------------------------------------------------------------------


def test_no_transaction_file_recovers_from_an_interrupted_concurrent_index_build(
    empty_database_url: str, tmp_path: Path
) -> None:
    """A failed CREATE INDEX CONCURRENTLY leaves an invalid index that IF NOT EXISTS would keep."""
    (tmp_path / "0001_t.sql").write_text(
        "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1), (1);\n"
    )
    (tmp_path / "0002_idx.sql").write_text(
        "-- modelreg: no-transaction\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_x_idx ON t (x);\n"
    )
    with pytest.raises(MigrationError, match=r"0002_idx\.sql"):
        migrate(empty_database_url, tmp_path)
    assert history(empty_database_url) == ["0001_t.sql"]
    invalid = "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('t_x_idx')"
    assert rows(empty_database_url, invalid) == [(False,)]

    with psycopg.connect(empty_database_url) as conn:
        conn.execute("DELETE FROM t WHERE ctid <> (SELECT min(ctid) FROM t)")
    assert migrate(empty_database_url, tmp_path) == ["0002_idx.sql"]

    assert rows(empty_database_url, invalid) == [(True,)]


def test_split_statements_cuts_at_semicolons_ending_a_line() -> None:
    text = (
        "-- modelreg: no-transaction\n"
        "-- a comment that ends with a semicolon;\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x);\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS b\n"
        "    ON t (y);  \n"
        "-- trailing comment\n"
    )
    assert split_statements(text) == [
        "-- modelreg: no-transaction\n-- a comment that ends with a semicolon;\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x);",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS b\n    ON t (y);",
    ]


def test_exactly_the_files_marked_on_their_first_line_run_without_a_transaction() -> None:
    kinds = {m.filename: m.no_transaction for m in discover(REPO_MIGRATIONS)}
    marked = {
        name: (REPO_MIGRATIONS / name).read_text().split("\n", 1)[0] == NO_TRANSACTION_MARKER
        for name in ALL_FILES
    }
    assert kinds == marked
    assert kinds["0004_models_indexes.sql"] is True  # CREATE INDEX CONCURRENTLY
    assert kinds["0005_meta_index_path_ops.sql"] is True
    assert kinds["0001_models.sql"] is False


# --- the resulting schema -----------------------------------------------------------------------


def test_models_has_exactly_the_nine_columns_of_0001(clean_db: str) -> None:
    columns = rows(
        clean_db,
        """
        SELECT column_name, data_type, character_maximum_length, datetime_precision,
               is_nullable, column_default
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'models'
        ORDER BY ordinal_position
        """,
    )
    assert columns == [
        ("id", "character varying", 100, None, "NO", None),
        ("name", "character varying", 255, None, "NO", None),
        ("provider", "character varying", 100, None, "NO", None),
        ("is_available", "boolean", None, None, "NO", "true"),
        ("is_legacy", "boolean", None, None, "NO", "false"),
        ("is_archived", "boolean", None, None, "NO", "false"),
        ("meta", "jsonb", None, None, "NO", None),
        ("created_at", "timestamp without time zone", None, 3, "NO", "CURRENT_TIMESTAMP"),
        ("updated_at", "timestamp without time zone", None, 3, "NO", None),
    ]
    primary_key = rows(
        clean_db,
        """
        SELECT a.attname FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = 'models'::regclass AND i.indisprimary
        """,
    )
    assert primary_key == [("id",)]


def test_models_has_the_eight_indexes_of_0004_and_0005_all_valid(clean_db: str) -> None:
    indexes = rows(
        clean_db,
        """
        SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisready
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'models'::regclass AND NOT i.indisprimary
        ORDER BY c.relname
        """,
    )
    on = "ON public.models USING"
    expected = {
        "models_available_archived_idx": "btree (is_available, is_archived)",
        "models_capabilities_gin_idx": "gin (((meta -> 'capabilities'::text)))",
        "models_is_archived_idx": "btree (is_archived)",
        "models_is_available_idx": "btree (is_available)",
        "models_is_legacy_idx": "btree (is_legacy)",
        "models_meta_path_idx": "gin (meta jsonb_path_ops) WITH (gin_pending_list_limit='512')",
        "models_provider_idx": "btree (provider)",
        "models_required_tier_idx": "btree (((meta ->> 'requiredTier'::text)))",
    }
    assert indexes == [
        (name, f"CREATE INDEX {name} {on} {definition}", True, True)
        for name, definition in sorted(expected.items())
    ]


def test_the_side_tables_exist_and_models_is_left_alone(clean_db: str) -> None:
    tables = rows(
        clean_db,
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' ORDER BY table_name",
    )
    assert {
        "models",
        "processed_events",
        "model_sync_state",
        "tier_audit",
        "outbox",
        "schema_migrations",
    } <= {t for (t,) in tables}
    unique_dedup = rows(
        clean_db,
        "SELECT count(*) FROM pg_index WHERE indrelid = 'outbox'::regclass AND indisunique"
        " AND indkey[0] = (SELECT attnum FROM pg_attribute"
        "                  WHERE attrelid = 'outbox'::regclass AND attname = 'dedup_key')",
    )
    assert unique_dedup == [(1,)]


def test_an_existing_models_table_is_adopted_not_replaced(empty_database_url: str) -> None:
    """Installs that already have `models` (with rows) keep them; the indexes are added."""
    with psycopg.connect(empty_database_url) as conn:
        conn.execute((REPO_MIGRATIONS / "0001_models.sql").read_text())
        conn.execute(
            "INSERT INTO models (id, name, provider, meta, updated_at)"
            " VALUES ('gpt-x', 'GPT X', 'openai', '{}', now())"
        )

    migrate(empty_database_url)

    assert rows(empty_database_url, "SELECT id FROM models") == [("gpt-x",)]
    assert history(empty_database_url) == ALL_FILES


# --- where the files come from ------------------------------------------------------------------


def test_migrations_dir_prefers_the_environment_then_the_repo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(MIGRATIONS_DIR_ENV, raising=False)
    assert migrations_dir() == REPO_MIGRATIONS
    monkeypatch.setenv(MIGRATIONS_DIR_ENV, str(tmp_path))
    assert migrations_dir() == tmp_path
    assert migrations_dir(REPO_MIGRATIONS) == REPO_MIGRATIONS


def test_a_missing_directory_is_a_clear_error(empty_database_url: str, tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="migrations directory not found"):
        migrate(empty_database_url, tmp_path / "nope")


# --- an unreachable database --------------------------------------------------------------------


@pytest.mark.parametrize("action", [migrate, pending, applied])
def test_an_unreachable_database_gives_one_clear_line_without_the_password(action: Any) -> None:
    port = free_port()
    conninfo = f"postgresql://registry:s3cret-pw@127.0.0.1:{port}/modelreg"

    with pytest.raises(DatabaseUnavailable) as caught:
        action(conninfo)

    message = str(caught.value)
    assert message.startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{port}/modelreg: ")
    assert "s3cret-pw" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("conninfo", "described"),
    [
        ("postgresql://u:pw@db.example:6543/registry", "db.example:6543/registry"),
        ("postgresql://u:pw@db.example/registry?sslmode=require", "db.example:5432/registry"),
        ("host=10.0.0.5 port=5433 dbname=reg user=u password=pw", "10.0.0.5:5433/reg"),
        ("postgresql://u:pw@/reg?host=/run/postgresql", "/run/postgresql:5432/reg"),
        ("this is = not a conninfo '", "<unparsable connection string>"),
    ],
)
def test_describe_conninfo_never_shows_credentials(conninfo: str, described: str) -> None:
    assert describe_conninfo(conninfo) == described
