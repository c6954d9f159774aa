-- modelreg: no-transaction
-- The meta GIN index, rebuilt for how the registry uses it.
--
-- * jsonb_path_ops: meta is only ever asked containment questions (@>), which this operator class
--   answers from one hashed entry per leaf path instead of one entry per key and one per value:
--   the index is about 30% smaller, and a sync that rewrites meta inserts fewer entries.
-- * gin_pending_list_limit 512 kB instead of 4 MB: new entries go to a pending list that the
--   writer who overflows it must merge into the index inside its own transaction. Under a steady
--   stream of syncs a 4 MB list stalled one transaction for 0.25-0.8 s every few seconds; at
--   512 kB each merge takes a quarter to a sixth as long, and throughput is the same (at 20,000
--   rows) or higher (at 1,000,000 rows). docs/performance.md, "Round four", has the numbers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS models_meta_path_idx ON models USING gin (meta jsonb_path_ops) WITH (gin_pending_list_limit = 512);
DROP INDEX CONCURRENTLY IF EXISTS models_meta_gin_idx;
