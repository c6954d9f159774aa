"""Specification of the legacy adoption migration (migrations/0003*, run by the real runner).

An existing install has ``models`` with the nine columns plus 13 legacy columns. Migrating it must
fold every legacy value into ``meta`` (an existing meta value wins; disagreements go to
``legacy_adoption_report``), turn ``is_deprecated`` into ``is_legacy``, verify all that in SQL and
only then drop the 13 columns; a fresh install is left alone.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from tests.support.services import create_database, drop_database, unique_name
from worker.persistence.migrate import MigrationError, migrate

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
ALL_FILES = sorted(p.name for p in REPO_MIGRATIONS.glob("*.sql"))
ROWS = 10_000
BATCH = 1_000

NINE_COLUMNS = [
    "id",
    "name",
    "provider",
    "is_available",
    "is_legacy",
    "is_archived",
    "meta",
    "created_at",
    "updated_at",
]
EIGHT_INDEXES = {
    "models_meta_path_idx",
    "models_required_tier_idx",
    "models_capabilities_gin_idx",
    "models_is_available_idx",
    "models_is_legacy_idx",
    "models_is_archived_idx",
    "models_provider_idx",
    "models_available_archived_idx",
}
#: legacy column -> meta key (is_deprecated is not folded: it becomes is_legacy).
LEGACY_KEYS = {
    "display_name": "displayName",
    "description": "description",
    "version": "version",
    "capabilities": "capabilities",
    "context_length": "contextLength",
    "max_output_tokens": "maxOutputTokens",
    "input_cost_per_million_tokens": "inputCostPerMillionTokens",
    "output_cost_per_million_tokens": "outputCostPerMillionTokens",
    "credits_per_1k_tokens": "creditsPer1kTokens",
    "required_tier": "requiredTier",
    "tier_restriction_mode": "tierRestrictionMode",
    "allowed_tiers": "allowedTiers",
}

LEGACY_DDL = """
CREATE TABLE models (
    id           varchar(100) PRIMARY KEY,
    name         varchar(255) NOT NULL,
    provider     varchar(100) NOT NULL,
    is_available boolean      NOT NULL DEFAULT true,
    is_legacy    boolean      NOT NULL DEFAULT false,
    is_archived  boolean      NOT NULL DEFAULT false,
    meta         jsonb,
    created_at   timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at   timestamp(3) NOT NULL,
    display_name                   varchar(255),
    description                    text,
    version                        varchar(100),
    capabilities                   {array},
    context_length                 integer,
    max_output_tokens              integer,
    input_cost_per_million_tokens  numeric(20, 10),
    output_cost_per_million_tokens double precision,
    credits_per_1k_tokens          real,
    required_tier                  varchar(32),
    tier_restriction_mode          varchar(32),
    allowed_tiers                  {array},
    is_deprecated                  boolean DEFAULT false
);
CREATE INDEX models_legacy_required_tier ON models (required_tier);
"""
COLUMNS = [*NINE_COLUMNS, *LEGACY_KEYS, "is_deprecated"]

CAPABILITIES = ["chat", "vision", "tools", "json_mode", "embeddings", "audio"]
TIERS = ["free", "pro", "pro_max", "enterprise"]


# --- building a legacy install ------------------------------------------------------------------


def _maybe(rng: random.Random, p_none: float, value: Any) -> Any:
    return None if rng.random() < p_none else value


def legacy_rows(count: int, array_type: str, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` varied legacy rows: nulls, arrays, jsonb, disagreements, deprecated rows."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        caps = _maybe(rng, 0.25, rng.sample(CAPABILITIES, rng.randint(0, 4)))
        allowed = _maybe(rng, 0.6, rng.sample(TIERS, rng.randint(1, 3)))
        row: dict[str, Any] = {
            "id": f"legacy-{i:05d}",
            "name": f"Model {i}",
            "provider": rng.choice(["openai", "anthropic", "google", "meta"]),
            "is_available": rng.random() < 0.8,
            "is_legacy": rng.random() < 0.05,
            "is_archived": rng.random() < 0.03,
            "meta": None,
            "created_at": "2024-01-01 00:00:00",
            "updated_at": "2024-06-01 00:00:00",
            "display_name": _maybe(rng, 0.2, rng.choice([f"Display {i}", f"Modèle ✓ {i}"])),
            "description": _maybe(rng, 0.4, f'line one\nit\'s "quoted" {i};'),
            "version": _maybe(rng, 0.3, f"{i % 5}.{i % 7}"),
            "capabilities": caps,
            "context_length": _maybe(rng, 0.2, rng.choice([4096, 8192, 32768, 128000])),
            "max_output_tokens": _maybe(rng, 0.3, rng.choice([1024, 4096])),
            "input_cost_per_million_tokens": _maybe(
                rng, 0.25, Decimal(rng.randint(0, 10**6)) / 10**4
            ),
            "output_cost_per_million_tokens": _maybe(rng, 0.25, rng.uniform(0, 100)),
            "credits_per_1k_tokens": _maybe(rng, 0.5, round(rng.uniform(0, 5), 3)),
            "required_tier": _maybe(rng, 0.3, rng.choice(TIERS)),
            "tier_restriction_mode": _maybe(rng, 0.4, rng.choice(["minimum", "exact"])),
            "allowed_tiers": allowed,
            "is_deprecated": rng.choices([True, False, None], [0.1, 0.8, 0.1])[0],
        }
        shape = rng.random()
        if shape < 0.2:
            row["meta"] = None
        elif shape < 0.3:
            row["meta"] = {}
        else:
            meta: dict[str, Any] = {"providerMetadata": {"row": i}}
            roll = rng.random()
            if roll < 0.1 and row["display_name"] is not None:
                meta["displayName"] = row["display_name"]  # agrees
            elif roll < 0.15:
                meta["displayName"] = f"Renamed {i}"  # disagrees (if legacy has one)
            elif roll < 0.2:
                meta["contextLength"] = 999  # disagrees
            elif roll < 0.23:
                meta["capabilities"] = ["chat"]
            elif roll < 0.26:
                meta["description"] = None  # a JSON null is no value: legacy fills it
            elif roll < 0.3 and row["input_cost_per_million_tokens"] is not None:
                # Same number, other scale: 3.5 and 3.5000000000 are equal, not a disagreement.
                meta["inputCostPerMillionTokens"] = float(row["input_cost_per_million_tokens"])
            if rng.random() < 0.05:
                meta["legacyReplacementModelId"] = f"legacy-{(i + 1) % count:05d}"
            row["meta"] = meta
        if array_type == "jsonb" and rng.random() < 0.03:
            row["capabilities"] = "json-null"  # a JSON null in a jsonb column: no value
        rows.append(row)
    return rows


def _adapt(row: dict[str, Any], array_type: str) -> list[Any]:
    values = []
    for column in COLUMNS:
        value = row[column]
        if column == "meta" and value is not None:
            value = Jsonb(value)
        elif column in ("capabilities", "allowed_tiers") and array_type == "jsonb":
            if value == "json-null":
                value = Jsonb(None)
            elif value is not None:
                value = Jsonb(value)
        values.append(value)
    return values


def build_legacy_install(conninfo: str, rows: list[dict[str, Any]], array_type: str) -> None:
    with psycopg.connect(conninfo) as conn:
        conn.execute(LEGACY_DDL.format(array=array_type).encode())
        with conn.cursor() as cur:
            copy_sql = f"COPY models ({', '.join(COLUMNS)}) FROM STDIN"
            with cur.copy(copy_sql.encode()) as copy:
                for row in rows:
                    copy.write_row(_adapt(row, array_type))
        conn.execute("ANALYZE models")


# --- reading the result -------------------------------------------------------------------------


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text, parse_float=Decimal)


def _json_value(value: Any) -> Any:
    """A legacy value as the JSON value meta must hold: numbers compared as decimals."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def snapshot(conninfo: str) -> dict[str, dict[str, Any]]:
    """Every row as PostgreSQL stores it (floats as the shortest text that round-trips)."""
    with psycopg.connect(conninfo) as conn:
        cur = conn.execute(
            f"SELECT {', '.join(c if c != 'meta' else 'meta::text' for c in COLUMNS)} FROM models"
        )
        names = [d.name for d in cur.description or ()]
        result = {}
        for values in cur.fetchall():
            row = dict(zip(names, values, strict=True))
            row["meta"] = _loads(row.pop("meta"))
            result[row["id"]] = row
        return result


def adopted_rows(conninfo: str) -> dict[str, tuple[bool, dict[str, Any]]]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT id, is_legacy, meta::text FROM models").fetchall()
    return {mid: (legacy, _loads(meta)) for mid, legacy, meta in rows}


def report_rows(conninfo: str) -> dict[tuple[str, str], tuple[Any, Any]]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT model_id, key, legacy_value::text, meta_value::text FROM legacy_adoption_report"
        ).fetchall()
    return {(mid, key): (_loads(legacy), _loads(meta)) for mid, key, legacy, meta in rows}


def columns_of(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'models'::regclass"
            " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ).fetchall()
    return [r[0] for r in rows]


def indexes_of(conninfo: str) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index"
            " WHERE indrelid = 'models'::regclass AND indisvalid"
        ).fetchall()
    return {r[0] for r in rows}


def expected_adoption(
    before: dict[str, dict[str, Any]],
) -> tuple[dict[str, tuple[bool, dict[str, Any]]], dict[tuple[str, str], tuple[Any, Any]]]:
    """What the migration must produce, computed independently in Python."""
    models: dict[str, tuple[bool, dict[str, Any]]] = {}
    report: dict[tuple[str, str], tuple[Any, Any]] = {}
    for mid, row in before.items():
        meta = dict(row["meta"] or {})
        for column, key in LEGACY_KEYS.items():
            value = row[column]
            if value is None:
                continue
            value = _json_value(value)
            if meta.get(key) is None:
                meta[key] = value
            elif meta[key] != value:
                report[(mid, key)] = (value, meta[key])
        models[mid] = (bool(row["is_legacy"] or row["is_deprecated"]), meta)
    return models, report


# --- fixtures -----------------------------------------------------------------------------------


@dataclass
class Adoption:
    conninfo: str
    before: dict[str, dict[str, Any]]
    applied: list[str]
    seconds: float


@pytest.fixture(scope="module", params=["text[]", "jsonb"], ids=["text-arrays", "jsonb-arrays"])
def adoption(request: pytest.FixtureRequest, postgres_admin_url: str) -> Iterator[Adoption]:
    """A 10,000-row legacy install, migrated once by the real runner in batches of 1,000."""
    array_type: str = request.param
    name = unique_name("modelreg_test_legacy")
    conninfo = create_database(postgres_admin_url, name)
    build_legacy_install(conninfo, legacy_rows(ROWS, array_type), array_type)
    before = snapshot(conninfo)
    batched = make_conninfo(conninfo, options=f"-c modelreg.adopt_batch_size={BATCH}")
    started = time.monotonic()
    applied = migrate(batched)
    seconds = time.monotonic() - started
    print(f"\nlegacy adoption of {ROWS} rows ({array_type}): {seconds:.2f} s")
    yield Adoption(conninfo, before, applied, seconds)
    drop_database(postgres_admin_url, name)


@pytest.fixture
def legacy_db(postgres_admin_url: str) -> Iterator[str]:
    """A database holding a small (200-row) legacy install, not migrated yet."""
    name = unique_name("modelreg_test_legacy")
    conninfo = create_database(postgres_admin_url, name)
    build_legacy_install(conninfo, legacy_rows(200, "text[]", seed=11), "text[]")
    yield conninfo
    drop_database(postgres_admin_url, name)


def migrations_subset(tmp_path: Path, names: list[str]) -> Path:
    for name in names:
        shutil.copy(REPO_MIGRATIONS / name, tmp_path / name)
    return tmp_path


def execute(conninfo: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(statement.encode())
        return cur.fetchall() if cur.description else []


# --- a legacy install ---------------------------------------------------------------------------


def test_every_migration_applies_to_a_legacy_install(adoption: Adoption) -> None:
    assert adoption.applied == ALL_FILES
    assert adoption.seconds < 60


def test_every_legacy_value_is_in_meta_or_in_the_report(adoption: Adoption) -> None:
    after = adopted_rows(adoption.conninfo)
    report = report_rows(adoption.conninfo)

    checked = 0
    for mid, row in adoption.before.items():
        _, meta = after[mid]
        for column, key in LEGACY_KEYS.items():
            if row[column] is None:
                continue
            checked += 1
            legacy = _json_value(row[column])
            if (mid, key) in report:
                assert report[(mid, key)] == (legacy, meta[key]), (mid, key)
                assert meta[key] != legacy
            else:
                assert meta.get(key) == legacy, (mid, column)
    assert checked > ROWS * 6  # roughly 7 of the 12 columns are non-null on average


def test_meta_is_exactly_the_old_meta_plus_the_legacy_values(adoption: Adoption) -> None:
    expected_models, expected_report = expected_adoption(adoption.before)

    assert adopted_rows(adoption.conninfo) == expected_models
    assert report_rows(adoption.conninfo) == expected_report


def test_disagreements_keep_the_meta_value_and_are_reported(adoption: Adoption) -> None:
    report = report_rows(adoption.conninfo)
    keys = {key for _, key in report}

    assert {"displayName", "contextLength", "capabilities"} <= keys
    assert len(report) > 200
    # The same number at another scale is no disagreement.
    assert "inputCostPerMillionTokens" not in keys
    for (mid, key), (_, meta_value) in report.items():
        assert adoption.before[mid]["meta"][key] == meta_value


def test_deprecated_models_become_legacy_and_no_other(adoption: Adoption) -> None:
    after = adopted_rows(adoption.conninfo)

    for mid, row in adoption.before.items():
        assert after[mid][0] is bool(row["is_legacy"] or row["is_deprecated"]), mid
    assert sum(1 for r in adoption.before.values() if r["is_deprecated"]) > 500


def test_the_table_ends_with_the_nine_columns_and_the_eight_indexes(adoption: Adoption) -> None:
    assert columns_of(adoption.conninfo) == NINE_COLUMNS
    assert indexes_of(adoption.conninfo) == {"models_pkey", *EIGHT_INDEXES}
    nullable = execute(
        adoption.conninfo,
        "SELECT is_nullable FROM information_schema.columns"
        " WHERE table_name = 'models' AND column_name = 'meta'",
    )
    assert nullable == [("NO",)]


def test_the_fold_in_commits_batch_by_batch(adoption: Adoption) -> None:
    # Each batch is its own transaction, so the rewritten rows carry one xmin per batch.
    [(transactions,)] = execute(adoption.conninfo, "SELECT count(DISTINCT xmin::text) FROM models")
    assert transactions >= ROWS // BATCH


def test_migrating_again_is_a_no_op(adoption: Adoption) -> None:
    models, report = adopted_rows(adoption.conninfo), report_rows(adoption.conninfo)

    assert migrate(adoption.conninfo) == []
    # Even the routines themselves change nothing once the columns are gone.
    execute(adoption.conninfo, "CALL modelreg_adopt_legacy_fold()")
    execute(adoption.conninfo, "CALL modelreg_adopt_legacy_finish()")

    assert adopted_rows(adoption.conninfo) == models
    assert report_rows(adoption.conninfo) == report
    assert columns_of(adoption.conninfo) == NINE_COLUMNS


# --- a fresh install ----------------------------------------------------------------------------


def test_a_fresh_install_is_left_alone(empty_database_url: str) -> None:
    migrate(empty_database_url)

    assert columns_of(empty_database_url) == NINE_COLUMNS
    assert indexes_of(empty_database_url) == {"models_pkey", *EIGHT_INDEXES}
    assert execute(empty_database_url, "SELECT count(*) FROM legacy_adoption_report") == [(0,)]
    assert execute(empty_database_url, "SELECT modelreg_verify_legacy_adoption()") == [(0,)]


def test_a_fresh_install_that_already_built_the_indexes_takes_the_adoption_files(
    empty_database_url: str, tmp_path: Path
) -> None:
    without_adoption = [n for n in ALL_FILES if not n.startswith("0003")]
    migrate(empty_database_url, migrations_subset(tmp_path, without_adoption))
    execute(
        empty_database_url,
        "INSERT INTO models (id, name, provider, meta, updated_at)"
        """ VALUES ('m', 'M', 'p', '{"displayName": "M"}', now())""",
    )

    assert migrate(empty_database_url) == [n for n in ALL_FILES if n.startswith("0003")]
    assert execute(empty_database_url, "SELECT meta::text FROM models") == [
        ('{"displayName": "M"}',)
    ]
    assert columns_of(empty_database_url) == NINE_COLUMNS


# --- failures and concurrent writers ------------------------------------------------------------


def test_a_value_without_a_json_form_aborts_before_anything_is_dropped(legacy_db: str) -> None:
    execute(
        legacy_db,
        "UPDATE models SET output_cost_per_million_tokens = 'NaN' WHERE id = 'legacy-00042'",
    )

    with pytest.raises(MigrationError) as failure:
        migrate(legacy_db)

    message = str(failure.value)
    assert "0003b_adopt_legacy_run.sql" in message
    assert "verification failed" in message
    assert "legacy-00042" in message
    assert columns_of(legacy_db)[9:] == [*LEGACY_KEYS, "is_deprecated"]  # nothing dropped
    assert execute(
        legacy_db,
        "SELECT meta ? 'outputCostPerMillionTokens' FROM models WHERE id = 'legacy-00042'",
    ) == [(False,)]  # NaN was not folded in as the string "NaN"

    # The operator fixes the row and runs the migrations again.
    execute(
        legacy_db,
        "UPDATE models SET output_cost_per_million_tokens = 1.25 WHERE id = 'legacy-00042'",
    )
    assert migrate(legacy_db) == [
        "0003b_adopt_legacy_run.sql",
        "0004_models_indexes.sql",
        "0005_meta_index_path_ops.sql",
        "0006_claim_all.sql",
    ]
    assert execute(
        legacy_db, "SELECT meta->'outputCostPerMillionTokens' FROM models WHERE id = 'legacy-00042'"
    ) == [(1.25,)]
    assert columns_of(legacy_db) == NINE_COLUMNS


def test_verification_refuses_a_legacy_value_missing_from_meta(
    legacy_db: str, tmp_path: Path
) -> None:
    migrate(
        legacy_db,
        migrations_subset(
            tmp_path, ["0001_models.sql", "0002_worker_tables.sql", "0003_adopt_legacy_columns.sql"]
        ),
    )
    execute(legacy_db, "CALL modelreg_adopt_legacy_fold()")
    [(checked,)] = execute(legacy_db, "SELECT modelreg_verify_legacy_adoption()")
    assert checked > 1000

    # Something removes a folded value between the fold-in and the drop.
    execute(
        legacy_db,
        "UPDATE models SET meta = meta - 'version'"
        " WHERE id = (SELECT min(id) FROM models WHERE version IS NOT NULL)",
    )

    with pytest.raises(psycopg.errors.RaiseException, match="verification failed"):
        execute(legacy_db, "SELECT modelreg_verify_legacy_adoption()")


def test_rows_written_after_the_batches_are_caught_up_before_the_drop(
    legacy_db: str, tmp_path: Path
) -> None:
    migrate(
        legacy_db,
        migrations_subset(
            tmp_path, ["0001_models.sql", "0002_worker_tables.sql", "0003_adopt_legacy_columns.sql"]
        ),
    )
    execute(legacy_db, "CALL modelreg_adopt_legacy_fold(50)")
    # The old platform is still running and writes between the batches and the final step.
    execute(
        legacy_db,
        "INSERT INTO models (id, name, provider, updated_at, display_name, capabilities,"
        " context_length, is_deprecated)"
        " VALUES ('late', 'Late', 'p', now(), 'Late One', ARRAY['chat'], 2048, true)",
    )

    execute(legacy_db, "CALL modelreg_adopt_legacy_finish()")

    assert execute(legacy_db, "SELECT is_legacy, meta FROM models WHERE id = 'late'") == [
        (True, {"capabilities": ["chat"], "displayName": "Late One", "contextLength": 2048})
    ]
    assert columns_of(legacy_db) == NINE_COLUMNS
