-- 0001: the catalog of rights holders and their works.
-- No foreign keys (DuckDB has no CASCADE and cannot add them later); the code checks references.

CREATE TABLE holders (
    holder_id  VARCHAR PRIMARY KEY,          -- slug of the name; safe in file names
    name       VARCHAR NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

CREATE TABLE works (
    work_id          VARCHAR PRIMARY KEY,
    holder_id        VARCHAR NOT NULL,
    title            VARCHAR NOT NULL,
    licence          VARCHAR,
    opt_out          BOOLEAN NOT NULL DEFAULT false,
    content_hash     VARCHAR NOT NULL,       -- sha256:<hex> of the UTF-8 text
    n_chars          BIGINT NOT NULL,
    n_words          BIGINT NOT NULL,
    text             VARCHAR NOT NULL,
    source           VARCHAR,                -- where it was imported from
    status           VARCHAR NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'tombstoned')),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    tombstoned_at    TIMESTAMPTZ,
    tombstone_reason VARCHAR
);

-- Append-only audit trail of catalog changes.
CREATE SEQUENCE catalog_event_seq START 1;
CREATE TABLE catalog_events (
    seq          BIGINT PRIMARY KEY DEFAULT nextval('catalog_event_seq'),
    work_id      VARCHAR NOT NULL,
    event        VARCHAR NOT NULL CHECK (event IN ('added', 'replaced', 'tombstoned', 'deleted')),
    content_hash VARCHAR,
    detail       VARCHAR,
    happened_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- Tables that point at works. A later migration that stores evidence or money per work
-- registers its table here; removing a work that any of them references tombstones it.
CREATE TABLE work_references (
    table_name  VARCHAR NOT NULL,
    column_name VARCHAR NOT NULL,
    what        VARCHAR NOT NULL,            -- 'evidence' or 'money', shown to the user
    PRIMARY KEY (table_name, column_name)
);
