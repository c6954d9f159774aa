-- modelreg: no-transaction
-- Runs the legacy adoption defined in 0003 (see there for the rules). Outside a transaction so
-- that the fold-in procedure can COMMIT after every batch; the finish step is a single CALL and
-- therefore one transaction: catch-up, verification and the column drop succeed or fail
-- together. On a fresh install both CALLs return at once. Re-running after a failure is safe.
-- Batch size: 5000 rows, or `SET modelreg.adopt_batch_size` (e.g. PGOPTIONS) for this session.
CALL modelreg_adopt_legacy_fold();
CALL modelreg_adopt_legacy_finish();
