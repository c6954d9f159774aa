"""Specification of the read helpers (worker.persistence.queries) on the migrated schema.

Besides what they return, the helpers promise to hit the indexes of 0004 and 0005: the EXPLAIN
tests run the very SQL ``list_models`` sends on 20,000 analysed rows and look for the index in
the plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from worker.persistence.queries import (
    build_list_query,
    get_model,
    list_models,
    models_by_capability,
    models_by_tier,
    resolve_model,
)


@pytest.fixture
def conn(clean_db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(clean_db, autocommit=True) as connection:
        yield connection


def add(
    conn: psycopg.Connection[Any],
    model_id: str,
    meta: dict[str, Any] | None = None,
    *,
    provider: str = "openai",
    available: bool = True,
    legacy: bool = False,
    archived: bool = False,
) -> None:
    conn.execute(
        "INSERT INTO models (id, name, provider, is_available, is_legacy, is_archived, meta,"
        " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, now())",
        (model_id, model_id.upper(), provider, available, legacy, archived, Jsonb(meta or {})),
    )


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]


# --- filters ------------------------------------------------------------------------------------


@pytest.fixture
def catalogue(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    add(conn, "gpt-a", {"requiredTier": "pro", "capabilities": ["chat", "vision"]})
    add(conn, "gpt-b", {"capabilities": ["chat"]})  # no requiredTier: free
    add(conn, "gpt-c", {"requiredTier": "free", "capabilities": ["tools"]}, available=False)
    add(conn, "claude-a", {"requiredTier": "enterprise"}, provider="anthropic", legacy=True)
    add(conn, "claude-b", {"requiredTier": "pro"}, provider="anthropic", archived=True)
    return conn


def test_no_filter_lists_every_model_by_id(catalogue: psycopg.Connection[Any]) -> None:
    assert ids(list_models(catalogue)) == ["claude-a", "claude-b", "gpt-a", "gpt-b", "gpt-c"]


def test_rows_carry_the_nine_columns(catalogue: psycopg.Connection[Any]) -> None:
    row = get_model(catalogue, "gpt-a")

    assert row is not None
    assert set(row) == {
        "id",
        "name",
        "provider",
        "is_available",
        "is_legacy",
        "is_archived",
        "meta",
        "created_at",
        "updated_at",
    }
    assert row["meta"]["capabilities"] == ["chat", "vision"]
    assert get_model(catalogue, "nope") is None


def test_a_model_without_required_tier_is_free(catalogue: psycopg.Connection[Any]) -> None:
    assert ids(models_by_tier(catalogue, "free")) == ["gpt-b", "gpt-c"]
    assert ids(models_by_tier(catalogue, "pro")) == ["claude-b", "gpt-a"]
    assert ids(list_models(catalogue, tier="enterprise")) == ["claude-a"]


def test_an_unknown_tier_is_refused(catalogue: psycopg.Connection[Any]) -> None:
    with pytest.raises(ValueError):
        list_models(catalogue, tier="platinum")


def test_capability_matches_one_entry_of_capabilities(catalogue: psycopg.Connection[Any]) -> None:
    assert ids(models_by_capability(catalogue, "chat")) == ["gpt-a", "gpt-b"]
    assert ids(models_by_capability(catalogue, "vision")) == ["gpt-a"]
    assert ids(models_by_capability(catalogue, "audio")) == []


def test_flag_provider_and_containment_filters_combine(catalogue: psycopg.Connection[Any]) -> None:
    assert ids(list_models(catalogue, provider="anthropic")) == ["claude-a", "claude-b"]
    assert ids(list_models(catalogue, legacy=True)) == ["claude-a"]
    assert ids(list_models(catalogue, archived=False, available=True, legacy=False)) == [
        "gpt-a",
        "gpt-b",
    ]
    assert ids(list_models(catalogue, meta_contains={"requiredTier": "pro"}, archived=False)) == [
        "gpt-a"
    ]
    assert ids(models_by_capability(catalogue, "chat", tier="free")) == ["gpt-b"]
    assert ids(list_models(catalogue, limit=2)) == ["claude-a", "claude-b"]


# --- replacement resolution ---------------------------------------------------------------------


def test_a_usable_model_resolves_to_itself(conn: psycopg.Connection[Any]) -> None:
    add(conn, "m")

    resolved = resolve_model(conn, "m")

    assert resolved is not None
    assert resolved.chain == ("m",)
    assert resolved.model is not None and resolved.model["id"] == "m"
    assert not resolved.replaced
    assert resolve_model(conn, "unknown") is None


def test_resolution_follows_the_chain_past_legacy_and_unavailable_models(
    conn: psycopg.Connection[Any],
) -> None:
    add(conn, "v1", {"legacyReplacementModelId": "v2"}, legacy=True)
    add(conn, "v2", {"legacyReplacementModelId": "v3"}, legacy=True)
    add(conn, "v3", {"legacyReplacementModelId": "v4"}, available=False)
    add(conn, "v4", {"legacyReplacementModelId": "v5"})
    add(conn, "v5")

    resolved = resolve_model(conn, "v1")

    assert resolved is not None
    assert resolved.chain == ("v1", "v2", "v3", "v4")  # stops at the first usable model
    assert resolved.model is not None and resolved.model["id"] == "v4"
    assert resolved.requested["id"] == "v1"
    assert resolved.replaced


@pytest.mark.parametrize(
    ("models", "chain", "reason"),
    [
        ({"a": "b", "b": "a"}, ("a", "b"), "cycle"),
        ({"a": "a"}, ("a",), "cycle"),
        ({"a": "b", "b": None}, ("a", "b"), "dead_end"),
        ({"a": "ghost"}, ("a",), "missing"),
    ],
)
def test_resolution_ends_without_a_model_when_the_chain_does(
    conn: psycopg.Connection[Any],
    models: dict[str, str | None],
    chain: tuple[str, ...],
    reason: str,
) -> None:
    for model_id, replacement in models.items():
        meta = {"legacyReplacementModelId": replacement} if replacement else {}
        add(conn, model_id, meta, legacy=True)

    resolved = resolve_model(conn, "a")

    assert resolved is not None
    assert (resolved.model, resolved.chain, resolved.unresolved) == (None, chain, reason)


def test_resolution_gives_up_on_an_overlong_chain(conn: psycopg.Connection[Any]) -> None:
    for i in range(150):
        add(conn, f"m{i:03d}", {"legacyReplacementModelId": f"m{i + 1:03d}"}, legacy=True)

    resolved = resolve_model(conn, "m000")

    assert resolved is not None
    assert resolved.unresolved == "too_long"
    assert len(resolved.chain) == 100


# --- index use ----------------------------------------------------------------------------------


@pytest.fixture
def big_table(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """20,000 models: tiers skewed (1% enterprise), 'audio' rare (1%), one region in 500."""
    conn.execute(
        """
        INSERT INTO models (id, name, provider, is_available, is_legacy, is_archived, meta,
                            updated_at)
        SELECT 'm' || lpad(g::text, 5, '0'), 'Model ' || g, (ARRAY['openai', 'anthropic',
               'google', 'meta'])[1 + g % 4], g % 10 <> 0, g % 20 = 0, g % 50 = 0,
               jsonb_strip_nulls(jsonb_build_object(
                   'requiredTier', CASE WHEN g % 100 = 0 THEN 'enterprise'
                                        WHEN g % 10 = 1 THEN 'pro_max'
                                        WHEN g % 3 = 0 THEN 'pro'
                                        WHEN g % 2 = 0 THEN 'free' END,
                   'capabilities', CASE WHEN g % 100 = 7 THEN '["chat", "audio"]'::jsonb
                                        ELSE '["chat", "tools"]'::jsonb END,
                   'contextLength', 4096 * (1 + g % 8),
                   'providerMetadata', jsonb_build_object('region', 'r' || g % 500))),
               now()
        FROM generate_series(1, 20000) AS g
        """
    )
    conn.execute("ANALYZE models")
    return conn


def index_names(conn: psycopg.Connection[Any], **filters: Any) -> set[str]:
    query, params = build_list_query(**filters)
    plan = conn.execute(b"EXPLAIN (FORMAT JSON) " + query.as_bytes(conn), params).fetchone()
    assert plan is not None
    names: set[str] = set()
    stack: list[Any] = [plan[0]]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "Index Name" in node:
                names.add(node["Index Name"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def test_a_selective_tier_filter_uses_the_expression_index(
    big_table: psycopg.Connection[Any],
) -> None:
    assert "models_required_tier_idx" in index_names(big_table, tier="enterprise")
    assert len(list_models(big_table, tier="enterprise")) == 200


def test_the_free_tier_filter_is_indexable_too(big_table: psycopg.Connection[Any]) -> None:
    # 'free' matches most rows, so a sequential scan (or walking the primary key for ORDER BY
    # id) is rightly cheaper; with those disabled the plan shows that both arms (= 'free',
    # IS NULL) can be answered by the expression index - a COALESCE() could not.
    big_table.execute("SET enable_seqscan = off")
    big_table.execute("SET enable_indexscan = off")
    assert "models_required_tier_idx" in index_names(big_table, tier="free")


def test_a_capability_filter_uses_the_capabilities_gin_index(
    big_table: psycopg.Connection[Any],
) -> None:
    assert "models_capabilities_gin_idx" in index_names(big_table, capability="audio")
    assert len(models_by_capability(big_table, "audio")) == 200


def test_meta_containment_uses_the_meta_gin_index(big_table: psycopg.Connection[Any]) -> None:
    contains = {"providerMetadata": {"region": "r42"}}

    assert "models_meta_path_idx" in index_names(big_table, meta_contains=contains)
    assert len(list_models(big_table, meta_contains=contains)) == 40
