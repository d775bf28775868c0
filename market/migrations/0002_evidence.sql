-- 0002: evidence that works occur in training corpora and model outputs (tribute scan ...).
-- A scan's rows are written in one transaction with the scan row, so a failed scan leaves none.

CREATE TABLE scans (
    scan_id       VARCHAR PRIMARY KEY,
    target        VARCHAR NOT NULL CHECK (target IN ('corpus', 'outputs')),
    source        VARCHAR NOT NULL,           -- the scanned file or folder
    source_sha256 VARCHAR NOT NULL,
    kinds         VARCHAR NOT NULL,           -- index kinds used, comma separated
    config        VARCHAR NOT NULL,           -- JSON: index settings and thresholds
    catalog_hash  VARCHAR NOT NULL,           -- catalog the index was built from
    stale         BOOLEAN NOT NULL DEFAULT false,
    n_docs        BIGINT NOT NULL,
    n_words       BIGINT NOT NULL,
    n_chars       BIGINT NOT NULL,
    n_matches     BIGINT NOT NULL,
    parquet_path  VARCHAR,                    -- the matches as Parquet, inside the workspace
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- Every match: work found in doc (a training document or a model output) by one index kind.
CREATE TABLE scan_matches (
    scan_id       VARCHAR NOT NULL,
    doc_id        VARCHAR NOT NULL,
    work_id       VARCHAR NOT NULL,
    holder_id     VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL CHECK (kind IN ('exact', 'minhash', 'semantic')),
    score         DOUBLE NOT NULL,
    matched_words BIGINT NOT NULL,
    doc_words     BIGINT NOT NULL,
    spans         STRUCT(doc_start BIGINT, doc_end BIGINT, work_start BIGINT, work_end BIGINT)[] NOT NULL,
    PRIMARY KEY (scan_id, doc_id, work_id, kind)
);

-- Per (scan, work, doc): the words of the doc covered by that work's spans of any kind.
-- weight = covered_words / doc_words, in (0, 1]: the exposure of the work in a training doc.
CREATE TABLE scan_exposure (
    scan_id       VARCHAR NOT NULL,
    work_id       VARCHAR NOT NULL,
    doc_id        VARCHAR NOT NULL,
    holder_id     VARCHAR NOT NULL,
    covered_words BIGINT NOT NULL,
    doc_words     BIGINT NOT NULL,
    weight        DOUBLE NOT NULL CHECK (weight > 0 AND weight <= 1),
    PRIMARY KEY (scan_id, work_id, doc_id)
);

INSERT INTO work_references VALUES ('scan_matches', 'work_id', 'evidence');
INSERT INTO work_references VALUES ('scan_exposure', 'work_id', 'evidence');
