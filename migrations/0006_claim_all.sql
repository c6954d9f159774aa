-- Claims answered by the server itself.
--
-- A read-ahead session (worker/persistence/session.py) claims a batch's event ids and folds the
-- batch at once, as if every event were new, instead of waiting for the claim's answer. It hands
-- this function the number of ids its claim inserted and the number it sent; if some id was
-- claimed before (a replay after a crash or a rebalance), the function aborts the transaction
-- before anything of the batch is committed, and the worker applies the batch again on its own,
-- reading the claim's answer first. docs/performance.md, "Round nine", has the numbers.
CREATE OR REPLACE FUNCTION modelreg_claimed_all(claimed bigint, sent bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF claimed <> sent THEN
        RAISE EXCEPTION '% of the batch''s % events were applied before (a replay)',
            sent - claimed, sent
            USING ERRCODE = 'MRREP';
    END IF;
END
$$;
