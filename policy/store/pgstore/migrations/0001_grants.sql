-- Grants, stored whole (protojson) with indexed columns, and the store-wide
-- revision counter. Writers lock the counter row, so revisions are given
-- out in commit order.
CREATE TABLE grants (
    id         TEXT PRIMARY KEY,
    dataset    TEXT NOT NULL,
    state      INTEGER NOT NULL,
    system_id  TEXT NOT NULL,
    department TEXT NOT NULL,
    version    BIGINT NOT NULL,
    revision   BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    body       JSONB NOT NULL
);
CREATE INDEX grants_dataset ON grants (dataset);
CREATE INDEX grants_state ON grants (state);
CREATE INDEX grants_system ON grants (system_id);
CREATE INDEX grants_department ON grants (department);
CREATE UNIQUE INDEX grants_revision ON grants (revision);

CREATE TABLE store_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO store_revision (id, revision) VALUES (1, 0);
