-- Side tables the worker needs. None of them adds a column to `models`.

-- Every event id the worker has applied, rejected or found stale: replays change nothing.
-- The worker claims ids here before it reads the models, so two consumers that briefly own the
-- same partition during a rebalance serialize on the claim instead of both applying an event.
CREATE TABLE IF NOT EXISTS processed_events (
    event_id     uuid        PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS processed_events_processed_at_idx ON processed_events (processed_at);

-- Provider-sync bookkeeping per model: the clock that makes out-of-order syncs stale, and whether
-- the model is unavailable only because its provider withdrew it.
CREATE TABLE IF NOT EXISTS model_sync_state (
    model_id       varchar(100) PRIMARY KEY,
    last_synced_at timestamptz  NOT NULL,
    withdrawn      boolean      NOT NULL DEFAULT false
);

-- Who changed a model's tier settings, from what to what, and why.
CREATE TABLE IF NOT EXISTS tier_audit (
    id          bigserial    PRIMARY KEY,
    model_id    varchar(100) NOT NULL,
    actor       text         NOT NULL,
    old_tier    jsonb        NOT NULL,
    new_tier    jsonb        NOT NULL,
    reason      text,
    event_id    uuid         NOT NULL,
    recorded_at timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tier_audit_model_idx ON tier_audit (model_id, recorded_at);

-- Transactional outbox: lifecycle events and dead letters, written in the same transaction as the
-- change that caused them, published by the relay afterwards. dedup_key makes replays no-ops.
CREATE TABLE IF NOT EXISTS outbox (
    id         bigserial   PRIMARY KEY,
    dedup_key  text        NOT NULL UNIQUE,
    topic      text        NOT NULL,
    key        bytea,
    value      bytea       NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_pending_idx ON outbox (id) WHERE sent_at IS NULL;
