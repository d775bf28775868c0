-- 0003: the double-entry compensation ledger (issue 6).
-- Money is BIGINT minor units. Postings are signed: positive = into the account, negative = out
-- of it; the lines of every transaction add up to zero per currency. Append-only: the code never
-- updates or deletes journal rows (corrections are reversal / adjustment transactions) and a
-- SHA-256 hash chain over the transactions, mirrored outside the database, detects tampering
-- and lost commits.

CREATE TABLE ledger_policies (
    policy_hash VARCHAR PRIMARY KEY,
    name        VARCHAR NOT NULL,
    settings    VARCHAR NOT NULL,            -- JSON of the validated settings
    toml        VARCHAR NOT NULL,            -- the file as given
    last_used_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp  -- commands without --policy use the latest
);

-- Revenue / usage events; event_key is the idempotency key.
CREATE TABLE ledger_events (
    event_key    VARCHAR PRIMARY KEY,
    output_id    VARCHAR NOT NULL,
    currency     VARCHAR NOT NULL,
    amount       BIGINT NOT NULL CHECK (amount >= 0),
    occurred_at  TIMESTAMPTZ NOT NULL,
    period       VARCHAR NOT NULL,
    payload_hash VARCHAR NOT NULL,
    source       VARCHAR,
    ingested_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- Attribution runs copied in (the shares as they were when money was allocated by them).
CREATE TABLE ledger_share_runs (
    run_id       VARCHAR PRIMARY KEY,
    content_hash VARCHAR NOT NULL,
    n_rows       BIGINT NOT NULL,
    seq          BIGINT NOT NULL,
    ingested_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
CREATE TABLE ledger_shares (
    run_id    VARCHAR NOT NULL,
    output_id VARCHAR NOT NULL,
    work_id   VARCHAR,                       -- NULL: the output's unattributed share
    holder_id VARCHAR,
    share     DOUBLE NOT NULL,
    score     DOUBLE
);

-- One allocation batch = the events of one period and currency allocated together.
CREATE TABLE ledger_batches (
    batch_id      VARCHAR PRIMARY KEY,       -- hash of its inputs
    period        VARCHAR NOT NULL,
    currency      VARCHAR NOT NULL,
    policy_hash   VARCHAR NOT NULL,
    run_id        VARCHAR,
    exposure_hash VARCHAR,
    split_txn     BIGINT NOT NULL,
    dist_txn      BIGINT NOT NULL,
    n_events      BIGINT NOT NULL
);
CREATE TABLE ledger_batch_events (
    event_key VARCHAR PRIMARY KEY,           -- an event is allocated once
    batch_id  VARCHAR NOT NULL
);
CREATE TABLE ledger_exposure (
    batch_id  VARCHAR NOT NULL,
    work_id   VARCHAR NOT NULL,
    holder_id VARCHAR NOT NULL,
    weight    DOUBLE NOT NULL
);
CREATE TABLE ledger_allocations (
    batch_id  VARCHAR NOT NULL,
    pool      VARCHAR NOT NULL,              -- split | output | training | cap | fee
    event_key VARCHAR,
    output_id VARCHAR,
    work_id   VARCHAR,
    holder_id VARCHAR,
    account   VARCHAR NOT NULL,
    share     DOUBLE,
    weight    BIGINT,
    amount    BIGINT NOT NULL
);

-- The journal.
CREATE TABLE ledger_transactions (
    seq        BIGINT PRIMARY KEY,           -- 1, 2, 3 ... in commit order
    kind       VARCHAR NOT NULL,             -- split | distribute | payout | reversal | adjustment | dispute_open | dispute_resolve
    period     VARCHAR NOT NULL,
    ref        VARCHAR NOT NULL UNIQUE,      -- idempotency reference
    memo       VARCHAR NOT NULL,
    reverses   BIGINT,
    prev_hash  VARCHAR NOT NULL,
    hash       VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
CREATE TABLE ledger_postings (
    seq      BIGINT NOT NULL,
    line     INTEGER NOT NULL,
    account  VARCHAR NOT NULL,
    currency VARCHAR NOT NULL,
    amount   BIGINT NOT NULL,
    PRIMARY KEY (seq, line)
);

CREATE TABLE ledger_periods (
    period     VARCHAR PRIMARY KEY,
    head_seq   BIGINT NOT NULL,
    head_hash  VARCHAR NOT NULL,
    closed_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE ledger_disputes (
    dispute_id  VARCHAR PRIMARY KEY,
    holder_id   VARCHAR NOT NULL,
    currency    VARCHAR NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount > 0),
    reason      VARCHAR NOT NULL,
    open_seq    BIGINT NOT NULL,
    resolve_seq BIGINT,
    outcome     VARCHAR,                     -- NULL while open; else 'holder' or the account paid
    CHECK (outcome IS NULL OR resolve_seq IS NOT NULL)
);

INSERT INTO work_references VALUES
    ('ledger_allocations', 'work_id', 'money'),
    ('ledger_shares', 'work_id', 'evidence'),
    ('ledger_exposure', 'work_id', 'evidence');
