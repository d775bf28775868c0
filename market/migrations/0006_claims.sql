-- 0006: claims of rights holders and their remedies (issue 9).
-- Append-only: a claim's state is the state of its latest row in claim_events; transitions are
-- new rows (who, when, the evidence used as JSON), never updates. Retrain batches record each
-- scheduled retrain that happened, with the new model's hash and the checks run against it.

CREATE TABLE claims (
    claim_id   VARCHAR PRIMARY KEY,
    claim_key  VARCHAR NOT NULL,             -- sha256 of (holder, sorted works, remedy): filing is idempotent
    holder_id  VARCHAR NOT NULL,
    remedy     VARCHAR NOT NULL CHECK (remedy IN ('unlearn', 'compensate', 'either')),
    deadline   DATE,
    filed_at   TIMESTAMPTZ NOT NULL,
    filed_by   VARCHAR NOT NULL
);

CREATE TABLE claim_works (
    claim_id VARCHAR NOT NULL,
    work_id  VARCHAR NOT NULL,
    PRIMARY KEY (claim_id, work_id)
);

CREATE TABLE claim_events (
    claim_id VARCHAR NOT NULL,
    seq      INTEGER NOT NULL,                -- 1, 2, 3 ... per claim
    state    VARCHAR NOT NULL CHECK (state IN ('filed', 'evidence_gathered', 'quoted', 'decided', 'executed',
                                               'closed', 'withdrawn')),
    actor    VARCHAR NOT NULL,
    happened_at TIMESTAMPTZ NOT NULL,
    note     VARCHAR NOT NULL,
    evidence VARCHAR NOT NULL,                -- JSON: the numbers this transition used
    PRIMARY KEY (claim_id, seq)
);

CREATE TABLE retrain_batches (
    batch_id      VARCHAR PRIMARY KEY,
    scheduled_for DATE NOT NULL,
    done_at       TIMESTAMPTZ NOT NULL,
    actor         VARCHAR NOT NULL,
    model_hash    VARCHAR NOT NULL,
    plan          VARCHAR NOT NULL,           -- JSON: claims, works and excluded documents
    checks        VARCHAR NOT NULL            -- JSON: the certificate checks run against the new model
);

INSERT INTO work_references VALUES ('claim_works', 'work_id', 'evidence');
