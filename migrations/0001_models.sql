-- The registry: one row per model. Variable metadata lives in meta (JSONB); bookkeeping lives in
-- side tables. On an install that already has `models` this leaves it alone (see 0004).
CREATE TABLE IF NOT EXISTS models (
    id           varchar(100) PRIMARY KEY,
    name         varchar(255) NOT NULL,
    provider     varchar(100) NOT NULL,
    is_available boolean      NOT NULL DEFAULT true,
    is_legacy    boolean      NOT NULL DEFAULT false,
    is_archived  boolean      NOT NULL DEFAULT false,
    meta         jsonb        NOT NULL,
    created_at   timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at   timestamp(3) NOT NULL
);
