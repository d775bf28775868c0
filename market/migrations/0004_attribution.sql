-- 0004: attribution runs (tribute attribute ...) and their per-output shares of works / holders.
-- A run's rows are written in one transaction with the run row; the full score matrix
-- (outputs x training docs) is a .npy file beside the run, its path recorded here.
-- Sign convention: score > 0 means including the training document raises the output's
-- measured log-probability.

CREATE TABLE attribution_runs (
    run_id        VARCHAR PRIMARY KEY,
    method        VARCHAR NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    config        VARCHAR NOT NULL,           -- JSON: method settings, task, checkpoints' fingerprints
    n_queries     BIGINT NOT NULL,
    n_train       BIGINT NOT NULL,
    lds           DOUBLE,                     -- measured by `tribute attribute evaluate`, else NULL
    lds_sd        DOUBLE,
    lds_config    VARCHAR,                    -- JSON: subsets, seeds, fraction of the LDS measurement
    path          VARCHAR NOT NULL,           -- folder of the run (scores.npy, ids, manifest.json)
    model         VARCHAR,                    -- the model folder or name attributed
    outputs_path  VARCHAR,                    -- the outputs file attributed
    train_path    VARCHAR,                    -- the training corpus file
    exposure_scan VARCHAR,                    -- corpus scan whose exposure the roll-up used
    rollup_rule   VARCHAR NOT NULL            -- JSON: clip / top_k / floor of the share rule
);

-- Per (run, output): shares of works and holders, summing to 1 with one 'unattributed' row
-- (work_id and holder_id NULL). score = the summed clipped document scores behind the share.
CREATE TABLE attribution_shares (
    run_id     VARCHAR NOT NULL,
    output_id  VARCHAR NOT NULL,
    work_id    VARCHAR,
    holder_id  VARCHAR,
    share      DOUBLE NOT NULL CHECK (share >= 0 AND share <= 1.000000001),
    score      DOUBLE NOT NULL
);

INSERT INTO work_references VALUES ('attribution_shares', 'work_id', 'evidence');
