-- The definitions read model of generation {g}: definition_view_g{g} ({view}), one row
-- per definition (projections/definitions.py).

-- name: create_definition_view
CREATE TABLE IF NOT EXISTS {view} (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    type TEXT NOT NULL,
    version TEXT NOT NULL,
    revision INTEGER NOT NULL,
    document TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)

-- name: create_definition_type_index
CREATE INDEX IF NOT EXISTS ix_definition_type_g{g} ON {view} (type, id)

-- name: insert_definition
INSERT INTO {view} (id, name, description, type, version, document, revision,
    created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)

-- name: revise_definition
UPDATE {view} SET name = ?, description = ?, type = ?, version = ?, document = ?,
    revision = ?, updated_at = ? WHERE id = ?

-- A deferred batch (no row count): a division by zero unless the definition exists.
-- name: expect_definition
SELECT 1 / (SELECT count(*)::int FROM {view} WHERE id = ?) AS found
