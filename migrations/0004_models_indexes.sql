-- modelreg: no-transaction
-- Built CONCURRENTLY so that adopting a large existing table does not block writers; this is why
-- the file runs outside a transaction.
CREATE INDEX CONCURRENTLY IF NOT EXISTS models_meta_gin_idx ON models USING gin (meta);
CREATE INDEX CONCURRENTLY IF NOT EXISTS models_required_tier_idx ON models ((meta->>'requiredTier'));
CREATE INDEX CONCURRENTLY IF NOT EXISTS models_capabilities_gin_idx ON models USING gin ((meta->'capabilities'));
CREATE INDEX CONCURRENTLY IF NOT EXISTS models_is_available_idx ON models (is_available);
CREATE INDEX CONCURRENTLY IF NOT EXISTS models_is_legacy_idx ON models (is_legacy);
CREATE INDEX CONCURRENTLY IF NOT EXISTS models_is_archived_idx ON models (is_archived);
CREATE INDEX CONCURRENTLY IF NOT EXISTS models_provider_idx ON models (provider);
CREATE INDEX CONCURRENTLY IF NOT EXISTS models_available_archived_idx ON models (is_available, is_archived);
