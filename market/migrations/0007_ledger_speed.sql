-- 0007: integer surrogate keys for the ledger's copy of attribution shares (issue 6, speed).
-- 10^7 share rows repeat few distinct output ids and (work, holder) pairs: each is stored once,
-- in a dictionary table, and the rows keep 64-bit codes. Allocation matches rows to events and
-- groups them by these integers instead of joining strings. `ledger_shares` stays readable as a
-- view with the columns it had (run_id, output_id, work_id, holder_id, share, score), so the
-- statement, `verify`'s recomputation, `ledger sql` and the catalog's work references read it
-- as before. Codes carry no meaning: results never depend on them (ranks come from the ids).

CREATE TABLE ledger_output_ids (
    output_code BIGINT PRIMARY KEY,
    output_id   VARCHAR NOT NULL UNIQUE
);
CREATE TABLE ledger_pair_ids (
    pair_code BIGINT PRIMARY KEY,
    work_id   VARCHAR,                       -- NULL: the output's unattributed share
    holder_id VARCHAR
);
CREATE TABLE ledger_share_rows (
    run_seq     BIGINT NOT NULL,             -- ledger_share_runs.seq
    output_code BIGINT NOT NULL,             -- ledger_output_ids.output_code
    pair_code   BIGINT NOT NULL,             -- ledger_pair_ids.pair_code
    share       DOUBLE NOT NULL,
    score       DOUBLE
);

INSERT INTO ledger_output_ids
SELECT (row_number() OVER (ORDER BY output_id) - 1)::BIGINT, output_id
FROM (SELECT DISTINCT output_id FROM ledger_shares);

INSERT INTO ledger_pair_ids
SELECT (row_number() OVER (ORDER BY work_id ASC NULLS LAST, holder_id ASC NULLS LAST) - 1)::BIGINT, work_id, holder_id
FROM (SELECT DISTINCT work_id, holder_id FROM ledger_shares);

INSERT INTO ledger_share_rows
SELECT r.seq, o.output_code, p.pair_code, s.share, s.score
FROM ledger_shares s
JOIN ledger_share_runs r USING (run_id)
JOIN ledger_output_ids o USING (output_id)
JOIN ledger_pair_ids p ON p.work_id IS NOT DISTINCT FROM s.work_id AND p.holder_id IS NOT DISTINCT FROM s.holder_id;

DROP TABLE ledger_shares;

CREATE VIEW ledger_shares AS
SELECT r.run_id, o.output_id, p.work_id, p.holder_id, s.share, s.score
FROM ledger_share_rows s
JOIN ledger_share_runs r ON r.seq = s.run_seq
JOIN ledger_output_ids o ON o.output_code = s.output_code
JOIN ledger_pair_ids p ON p.pair_code = s.pair_code;
