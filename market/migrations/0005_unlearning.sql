-- 0005: unlearning runs and their certificates (issue 5).
-- One row per `tribute unlearn` run; `certificate` holds the whole JSON certificate, the other
-- columns its headline numbers (read by `tribute quote` and the reports: keep the names).

CREATE TABLE unlearning_certificates (
    run_id                VARCHAR PRIMARY KEY,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    holder_id             VARCHAR,                 -- NULL when the works span several holders
    method                VARCHAR NOT NULL,
    model_in              VARCHAR NOT NULL,
    model_out             VARCHAR NOT NULL,
    cost_seconds          DOUBLE NOT NULL,
    retrain_seconds       DOUBLE,                  -- measured or estimated (see certificate.cost)
    cost_ratio            DOUBLE,
    retain_ppl_before     DOUBLE,
    retain_ppl_after      DOUBLE,
    holdout_ppl_before    DOUBLE,
    holdout_ppl_after     DOUBLE,
    forget_rougeL_before  DOUBLE,
    forget_rougeL_after   DOUBLE,
    mia_auc_before        DOUBLE,
    mia_auc_after         DOUBLE,                  -- Min-K% AUC, forget = positives vs holdout
    privleak              DOUBLE,                  -- MUSE sign; NULL without a retrained reference
    relearn_rougeL_after  DOUBLE,
    targets_met           BOOLEAN NOT NULL,
    reference             VARCHAR,                 -- 'retrain' or 'proxy'
    certificate           VARCHAR NOT NULL,        -- the JSON certificate
    path                  VARCHAR NOT NULL         -- certificate.json beside the unlearned model
);

CREATE TABLE unlearning_run_works (
    run_id  VARCHAR NOT NULL,
    work_id VARCHAR NOT NULL,
    PRIMARY KEY (run_id, work_id)
);

INSERT INTO work_references VALUES ('unlearning_run_works', 'work_id', 'evidence');
