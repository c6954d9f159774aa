-- Adoption of an existing 22-column `models` table (the nine columns of 0001 plus 13 legacy
-- columns). This file only creates the report table and the routines; 0003b runs them.
--
-- Why two files: the fold-in must work in batches that commit on their own (one transaction over
-- millions of rows would hold row locks and bloat for its whole duration), and a transactional
-- migration cannot commit halfway. So this transactional file defines a PROCEDURE that COMMITs
-- after every batch, and 0003b (a `-- modelreg: no-transaction` file) CALLs it outside a
-- transaction block, where COMMIT inside a procedure is allowed. The function bodies live here
-- because the no-transaction runner cuts statements at every `;` that ends a line.
--
-- On a fresh install (no legacy column) every routine returns at once: only the empty report
-- table and the routines themselves are created. Everything is idempotent, so it is safe when
-- 0004's indexes already exist or when 0003b is re-run after a failure.
--
-- Mapping, legacy column -> meta key (JSON type): display_name -> displayName (string),
-- description -> description (string), version -> version (string), capabilities ->
-- capabilities (array), context_length -> contextLength (number), max_output_tokens ->
-- maxOutputTokens (number), input_cost_per_million_tokens -> inputCostPerMillionTokens (number),
-- output_cost_per_million_tokens -> outputCostPerMillionTokens (number), credits_per_1k_tokens
-- -> creditsPer1kTokens (number), required_tier -> requiredTier (string), tier_restriction_mode
-- -> tierRestrictionMode (string), allowed_tiers -> allowedTiers (array). is_deprecated is not
-- folded into meta: true sets is_legacy.
--
-- Rules of the fold-in:
-- * A NULL legacy value (or a JSON null in a jsonb column) is absent: nothing to fold.
-- * A meta value that is present and not JSON null wins; when it differs from the legacy value
--   the pair is recorded in legacy_adoption_report instead. NULL meta is treated as '{}'.
-- * A legacy value whose JSON form has the wrong type (NaN or Infinity in a numeric column, a
--   jsonb "array" column holding an object) is not folded at all: verification then aborts and
--   names it, so that the operator fixes the row and re-runs instead of meta holding junk.
-- * Verification (in SQL, before anything is dropped): every non-null legacy value must be in
--   meta under its key with that exact JSON value, or be recorded in the report; every
--   is_deprecated row must be is_legacy. Otherwise it raises and the columns stay.

CREATE TABLE IF NOT EXISTS legacy_adoption_report (
    model_id     varchar(100) NOT NULL,
    key          text         NOT NULL,
    legacy_value jsonb        NOT NULL,
    meta_value   jsonb        NOT NULL,
    recorded_at  timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, key)
);

COMMENT ON TABLE legacy_adoption_report IS
    'Legacy column values that disagreed with meta when the legacy columns were folded in; '
    'meta_value was kept, legacy_value is what the dropped column held.';

-- The legacy columns that still exist on `models`, with their meta key and expected JSON type.
CREATE OR REPLACE FUNCTION modelreg_legacy_columns()
RETURNS TABLE (column_name text, meta_key text, json_type text)
LANGUAGE sql STABLE AS $$
    SELECT l.column_name, l.meta_key, l.json_type
    FROM (VALUES
        ('display_name', 'displayName', 'string'),
        ('description', 'description', 'string'),
        ('version', 'version', 'string'),
        ('capabilities', 'capabilities', 'array'),
        ('context_length', 'contextLength', 'number'),
        ('max_output_tokens', 'maxOutputTokens', 'number'),
        ('input_cost_per_million_tokens', 'inputCostPerMillionTokens', 'number'),
        ('output_cost_per_million_tokens', 'outputCostPerMillionTokens', 'number'),
        ('credits_per_1k_tokens', 'creditsPer1kTokens', 'number'),
        ('required_tier', 'requiredTier', 'string'),
        ('tier_restriction_mode', 'tierRestrictionMode', 'string'),
        ('allowed_tiers', 'allowedTiers', 'array')
    ) AS l (column_name, meta_key, json_type)
    JOIN pg_attribute a
      ON a.attrelid = to_regclass('models') AND a.attname = l.column_name
     AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY a.attnum
$$;

CREATE OR REPLACE FUNCTION modelreg_has_legacy_columns()
RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_attribute a
        WHERE a.attrelid = to_regclass('models') AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attname IN (
              'display_name', 'description', 'version', 'capabilities', 'context_length',
              'max_output_tokens', 'input_cost_per_million_tokens',
              'output_cost_per_million_tokens', 'credits_per_1k_tokens', 'required_tier',
              'tier_restriction_mode', 'allowed_tiers', 'is_deprecated'))
$$;

-- A subquery yielding `(key, raw, folded, column_name)` per legacy column of the row aliased `m`,
-- as SQL text for a LATERAL join: raw is the value as JSON, folded the same but NULL when the
-- value is absent or has the wrong JSON type. Each column is converted to JSON once.
CREATE OR REPLACE FUNCTION modelreg_legacy_values_sql()
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT '(SELECT v.key, v.raw, CASE WHEN jsonb_typeof(v.raw) = v.json_type THEN v.raw END'
        || ' AS folded, v.column_name FROM (VALUES '
        || COALESCE(
            string_agg(
                format('(%L, to_jsonb(m.%I), %L, %L)',
                       c.meta_key, c.column_name, c.json_type, c.column_name),
                ', '),
            -- no legacy value column: an empty VALUES list is not valid SQL, a NULL row is
            '(NULL::text, NULL::jsonb, NULL::text, NULL::text)')
        || ') AS v (key, raw, json_type, column_name))'
    FROM modelreg_legacy_columns() AS c
$$;

-- Fold the legacy values of the rows with after_id < id <= upto_id (NULL: unbounded) into meta,
-- record disagreements and set is_legacy for deprecated rows. Returns the rows updated.
-- Idempotent: a row already folded is not written again.
CREATE OR REPLACE FUNCTION modelreg_legacy_fold_range(after_id text, upto_id text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    legacy_values text := modelreg_legacy_values_sql();
    deprecated text := 'false';
    bounds text := 'true';
    updated bigint;
BEGIN
    IF NOT modelreg_has_legacy_columns() THEN
        RETURN 0;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = to_regclass('models') AND attname = 'is_deprecated'
                 AND NOT attisdropped) THEN
        deprecated := 'COALESCE(m.is_deprecated, false)';
    END IF;
    IF after_id IS NOT NULL THEN
        bounds := bounds || format(' AND m.id > %L', after_id);
    END IF;
    IF upto_id IS NOT NULL THEN
        bounds := bounds || format(' AND m.id <= %L', upto_id);
    END IF;

    EXECUTE format(
        'INSERT INTO legacy_adoption_report AS r (model_id, key, legacy_value, meta_value)'
        ' SELECT m.id, l.key, l.folded, m.meta -> l.key'
        ' FROM models m CROSS JOIN LATERAL %s AS l'
        ' WHERE %s AND l.folded IS NOT NULL'
        '   AND COALESCE(jsonb_typeof(m.meta -> l.key), ''null'') <> ''null'''
        '   AND m.meta -> l.key <> l.folded'
        ' ON CONFLICT (model_id, key) DO UPDATE'
        ' SET legacy_value = EXCLUDED.legacy_value, meta_value = EXCLUDED.meta_value,'
        '     recorded_at = now()'
        ' WHERE (r.legacy_value, r.meta_value)'
        '       IS DISTINCT FROM (EXCLUDED.legacy_value, EXCLUDED.meta_value)',
        legacy_values, bounds);

    EXECUTE format(
        'UPDATE models AS t SET meta = f.meta, is_legacy = f.is_legacy'
        ' FROM ('
        '   SELECT m.id,'
        '          COALESCE(m.meta, ''{}''::jsonb) || ('
        '              SELECT COALESCE(jsonb_object_agg(l.key, l.folded), ''{}''::jsonb)'
        '              FROM %s AS l'
        '              WHERE l.folded IS NOT NULL'
        '                AND COALESCE(jsonb_typeof(m.meta -> l.key), ''null'') = ''null'''
        '          ) AS meta,'
        '          COALESCE(m.is_legacy, false) OR %s AS is_legacy'
        '   FROM models m WHERE %s'
        ' ) AS f'
        ' WHERE t.id = f.id'
        '   AND (t.meta IS DISTINCT FROM f.meta OR t.is_legacy IS DISTINCT FROM f.is_legacy)',
        legacy_values, deprecated, bounds);
    GET DIAGNOSTICS updated = ROW_COUNT;
    RETURN updated;
END
$$;

-- Raise unless every legacy value is in meta (or in the report) and every deprecated row is
-- legacy. Returns the number of legacy values checked.
CREATE OR REPLACE FUNCTION modelreg_verify_legacy_adoption()
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    checked bigint := 0;
    missing bigint := 0;
    examples text;
    not_legacy bigint := 0;
BEGIN
    IF NOT modelreg_has_legacy_columns() THEN
        RETURN 0;
    END IF;

    EXECUTE format(
        'WITH v AS ('
        '  SELECT m.id, l.column_name, l.raw,'
        '         COALESCE(m.meta -> l.key = l.folded, false)'
        '         OR EXISTS (SELECT 1 FROM legacy_adoption_report r'
        '                    WHERE r.model_id = m.id AND r.key = l.key'
        '                      AND r.legacy_value = l.folded) AS kept'
        '  FROM models m CROSS JOIN LATERAL %s AS l'
        '  WHERE COALESCE(jsonb_typeof(l.raw), ''null'') <> ''null'''
        ')'
        ' SELECT count(*), count(*) FILTER (WHERE NOT kept),'
        '        string_agg(format(''model %%L column %%s = %%s'', id, column_name, raw), ''; '')'
        '          FILTER (WHERE NOT kept)'
        ' FROM v',
        modelreg_legacy_values_sql())
    INTO checked, missing, examples;

    IF missing > 0 THEN
        RAISE EXCEPTION 'legacy adoption verification failed: % of % legacy value(s) are neither '
                        'in meta nor in legacy_adoption_report', missing, checked
            USING DETAIL = left(examples, 2000),
                  HINT = 'Such a value has no JSON form of the expected type (e.g. NaN). Fix or '
                         'NULL it in the legacy column and run the migrations again; nothing '
                         'has been dropped.';
    END IF;

    IF EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = to_regclass('models') AND attname = 'is_deprecated'
                 AND NOT attisdropped) THEN
        EXECUTE 'SELECT count(*) FROM models WHERE is_deprecated AND is_legacy IS NOT TRUE'
        INTO not_legacy;
        IF not_legacy > 0 THEN
            RAISE EXCEPTION 'legacy adoption verification failed: % deprecated model(s) are not '
                            'marked is_legacy', not_legacy;
        END IF;
    END IF;
    RETURN checked;
END
$$;

-- Step 1, batched: fold in `batch_size` rows at a time (default: the setting
-- modelreg.adopt_batch_size, else 5000), committing after each batch so that no lock or snapshot
-- is held for the whole table. Must be CALLed outside a transaction block (see 0003b).
CREATE OR REPLACE PROCEDURE modelreg_adopt_legacy_fold(batch_size integer DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    size integer := COALESCE(
        batch_size, NULLIF(current_setting('modelreg.adopt_batch_size', true), '')::integer, 5000);
    last_id text;
    upto_id text;
BEGIN
    IF NOT modelreg_has_legacy_columns() THEN
        RETURN;
    END IF;
    LOOP
        -- Keyset pagination on the primary key: each batch starts where the last one ended.
        IF last_id IS NULL THEN
            SELECT max(b.id) INTO upto_id
            FROM (SELECT id FROM models ORDER BY id LIMIT size) AS b;
        ELSE
            SELECT max(b.id) INTO upto_id
            FROM (SELECT id FROM models WHERE id > last_id ORDER BY id LIMIT size) AS b;
        END IF;
        EXIT WHEN upto_id IS NULL;
        PERFORM modelreg_legacy_fold_range(last_id, upto_id);
        last_id := upto_id;
        COMMIT;
    END LOOP;
END
$$;

-- Step 2, one transaction: catch up rows written since the batches (writers are blocked from
-- here on), verify, then drop the 13 columns and give `models` the fresh install's constraints.
CREATE OR REPLACE PROCEDURE modelreg_adopt_legacy_finish()
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT modelreg_has_legacy_columns() THEN
        RETURN;
    END IF;
    -- SHARE ROW EXCLUSIVE: readers go on, writers wait; DROP COLUMN below then takes ACCESS
    -- EXCLUSIVE only for the (metadata-only) drop.
    LOCK TABLE models IN SHARE ROW EXCLUSIVE MODE;
    PERFORM modelreg_legacy_fold_range(NULL, NULL);
    PERFORM modelreg_verify_legacy_adoption();
    ALTER TABLE models
        DROP COLUMN IF EXISTS display_name,
        DROP COLUMN IF EXISTS description,
        DROP COLUMN IF EXISTS version,
        DROP COLUMN IF EXISTS capabilities,
        DROP COLUMN IF EXISTS context_length,
        DROP COLUMN IF EXISTS max_output_tokens,
        DROP COLUMN IF EXISTS input_cost_per_million_tokens,
        DROP COLUMN IF EXISTS output_cost_per_million_tokens,
        DROP COLUMN IF EXISTS credits_per_1k_tokens,
        DROP COLUMN IF EXISTS required_tier,
        DROP COLUMN IF EXISTS tier_restriction_mode,
        DROP COLUMN IF EXISTS allowed_tiers,
        DROP COLUMN IF EXISTS is_deprecated;
    UPDATE models SET meta = '{}'::jsonb WHERE meta IS NULL;
    ALTER TABLE models
        ALTER COLUMN meta SET NOT NULL,
        ALTER COLUMN is_available SET DEFAULT true,
        ALTER COLUMN is_legacy SET DEFAULT false,
        ALTER COLUMN is_archived SET DEFAULT false,
        ALTER COLUMN created_at SET DEFAULT CURRENT_TIMESTAMP;
END
$$;
