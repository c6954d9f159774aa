"""Read helpers over the registry, shaped like the queries the platform ran on the old table.

Synchronous on purpose: they serve the CLI and ad-hoc scripts, where an event loop only adds
ceremony. Every filter is written so that PostgreSQL can use the indexes of 0004: the tier
filter compares ``meta->>'requiredTier'`` itself (the expression index), capability and
containment filters use ``@>`` (the GIN indexes) - a ``COALESCE`` or ``?`` would not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from contracts.meta import Tier

#: Longest replacement chain followed; the rules refuse longer ones, this only bounds bad data.
MAX_CHAIN: Final = 100

COLUMNS: Final = (
    "id",
    "name",
    "provider",
    "is_available",
    "is_legacy",
    "is_archived",
    "meta",
    "created_at",
    "updated_at",
)
_SELECT = sql.SQL("SELECT {} FROM models").format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))

Unresolved = Literal["dead_end", "missing", "cycle", "too_long"]


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """Where following ``legacyReplacementModelId`` from a requested model leads.

    ``chain`` lists the ids visited, the requested one first. ``model`` is the first of them that
    is available, not legacy and not archived (the requested model itself when it qualifies), or
    None with ``unresolved`` saying why the walk stopped.
    """

    requested: dict[str, Any]
    model: dict[str, Any] | None
    chain: tuple[str, ...]
    unresolved: Unresolved | None = None

    @property
    def replaced(self) -> bool:
        """Whether the caller should use another model than the one it asked for."""
        return self.model is not None and self.model["id"] != self.requested["id"]


def build_list_query(
    *,
    provider: str | None = None,
    tier: Tier | str | None = None,
    capability: str | None = None,
    meta_contains: Mapping[str, Any] | None = None,
    legacy: bool | None = None,
    archived: bool | None = None,
    available: bool | None = None,
    limit: int | None = None,
) -> tuple[sql.Composed, list[Any]]:
    """The SQL and parameters of :func:`list_models`; separate so tests can EXPLAIN it."""
    where: list[sql.Composable] = []
    params: list[Any] = []
    if provider is not None:
        where.append(sql.SQL("provider = %s"))
        params.append(provider)
    if tier is not None:
        tier_value = Tier(tier).value
        if tier_value == Tier.FREE.value:
            # A model without requiredTier is free; both arms use the expression index.
            where.append(sql.SQL("(meta->>'requiredTier' = %s OR meta->>'requiredTier' IS NULL)"))
        else:
            where.append(sql.SQL("meta->>'requiredTier' = %s"))
        params.append(tier_value)
    if capability is not None:
        where.append(sql.SQL("meta->'capabilities' @> %s::jsonb"))
        params.append(json.dumps([capability]))
    if meta_contains is not None:
        where.append(sql.SQL("meta @> %s::jsonb"))
        params.append(json.dumps(dict(meta_contains)))
    for column, value in (("is_legacy", legacy), ("is_archived", archived)):
        if value is not None:
            where.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if available is not None:
        where.append(sql.SQL("is_available = %s"))
        params.append(available)
    query: sql.Composed = _SELECT
    if where:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
    query += sql.SQL(" ORDER BY id")
    if limit is not None:
        query += sql.SQL(" LIMIT %s")
        params.append(limit)
    return query, params


def list_models(
    conn: psycopg.Connection[Any],
    *,
    provider: str | None = None,
    tier: Tier | str | None = None,
    capability: str | None = None,
    meta_contains: Mapping[str, Any] | None = None,
    legacy: bool | None = None,
    archived: bool | None = None,
    available: bool | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Models matching every given filter, ordered by id; None means "do not filter".

    ``tier`` is the model's required tier (a model without one is ``free``), ``capability`` one
    entry of ``meta.capabilities``, ``meta_contains`` a JSON object meta must contain.
    """
    query, params = build_list_query(
        provider=provider,
        tier=tier,
        capability=capability,
        meta_contains=meta_contains,
        legacy=legacy,
        archived=archived,
        available=available,
        limit=limit,
    )
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def get_model(conn: psycopg.Connection[Any], model_id: str) -> dict[str, Any] | None:
    """One model by id, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_SELECT + sql.SQL(" WHERE id = %s"), (model_id,)).fetchone()


def models_by_tier(
    conn: psycopg.Connection[Any], tier: Tier | str, **filters: Any
) -> list[dict[str, Any]]:
    """Models whose required tier is ``tier`` (see :func:`list_models` for other filters)."""
    return list_models(conn, tier=tier, **filters)


def models_by_capability(
    conn: psycopg.Connection[Any], capability: str, **filters: Any
) -> list[dict[str, Any]]:
    """Models listing ``capability`` in ``meta.capabilities``."""
    return list_models(conn, capability=capability, **filters)


def _usable(model: Mapping[str, Any]) -> bool:
    return bool(model["is_available"] and not model["is_legacy"] and not model["is_archived"])


# One round trip: the chain from the requested model, stopping at the first usable model, at a
# model already on the path (cycle), or after MAX_CHAIN steps.
_CHAIN = sql.SQL(
    """
WITH RECURSIVE chain AS (
    SELECT m.*, 1 AS depth, ARRAY[m.id::text] AS path
    FROM models m WHERE m.id = %(id)s
    UNION ALL
    SELECT n.*, c.depth + 1, c.path || n.id::text
    FROM chain c JOIN models n ON n.id = c.meta->>'legacyReplacementModelId'
    WHERE NOT (c.is_available AND NOT c.is_legacy AND NOT c.is_archived)
      AND NOT n.id = ANY(c.path)
      AND c.depth < %(max)s
)
SELECT {} FROM chain ORDER BY depth
"""
).format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))


def resolve_model(conn: psycopg.Connection[Any], model_id: str) -> ResolvedModel | None:
    """Follow ``legacyReplacementModelId`` to the first available, non-legacy model.

    None if ``model_id`` does not exist. Cycles and over-long chains end the walk instead of
    looping; ``unresolved`` then says ``cycle`` or ``too_long``, ``missing`` when a replacement
    id names no model, ``dead_end`` when the last model has no replacement.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_CHAIN, {"id": model_id, "max": MAX_CHAIN}).fetchall()
    if not rows:
        return None
    chain = tuple(str(r["id"]) for r in rows)
    last = rows[-1]
    if _usable(last):
        return ResolvedModel(requested=rows[0], model=last, chain=chain)
    next_id = (last["meta"] or {}).get("legacyReplacementModelId")
    reason: Unresolved
    if not isinstance(next_id, str):
        reason = "dead_end"
    elif next_id in chain:
        reason = "cycle"
    elif len(chain) >= MAX_CHAIN:
        reason = "too_long"
    else:
        reason = "missing"
    return ResolvedModel(requested=rows[0], model=None, chain=chain, unresolved=reason)
