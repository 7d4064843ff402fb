-- The active generation and the position of each generation (projections/schema.py),
-- the write lock of every batch and the rebuild's statistics.

-- name: create_generation_table
CREATE TABLE IF NOT EXISTS read_model_generation (
    id INTEGER PRIMARY KEY, generation INTEGER NOT NULL)

-- name: create_position_table
CREATE TABLE IF NOT EXISTS projection_position (
    name TEXT PRIMARY KEY, position BIGINT NOT NULL)

-- name: first_generation
INSERT INTO read_model_generation (id, generation) VALUES (1, 1)
ON CONFLICT (id) DO NOTHING

-- name: active_generation
SELECT generation FROM read_model_generation WHERE id = 1

-- name: set_active_generation
UPDATE read_model_generation SET generation = ? WHERE id = 1

-- name: read_position
SELECT position FROM projection_position WHERE name = ?

-- name: position_names
SELECT name FROM projection_position

-- name: generation_and_position
SELECT g.generation AS generation, (SELECT p.position FROM projection_position p
    WHERE p.name = 'read_model_g' || g.generation) AS position
FROM read_model_generation g WHERE g.id = 1

-- A division by zero unless the generation is the active one and at the position
-- (schema.expect_generation_and_position).
-- name: expect_generation_and_position
SELECT 1 / (SELECT count(*)::int FROM read_model_generation g
    JOIN projection_position p ON p.name = 'read_model_g' || g.generation
    WHERE g.id = 1 AND g.generation = ? AND p.position = ?) AS unchanged

-- Only ever forward: touches no row if the position recorded is already as far.
-- name: write_position
INSERT INTO projection_position (name, position) VALUES (?, ?)
ON CONFLICT (name) DO UPDATE SET position = excluded.position
WHERE projection_position.position < excluded.position

-- name: delete_position
DELETE FROM projection_position WHERE name = ?

-- name: drop_table
DROP TABLE IF EXISTS {table}

-- PostgreSQL: held by every write to the read models (runner batches, rebuild switch).
-- name: pg_write_lock
SELECT pg_advisory_xact_lock(?)

-- A runner's batch: the write lock, and no waiting for the WAL flush.
-- name: pg_batch_start
SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock(?)

-- name: sqlite_analysis_limit
PRAGMA analysis_limit={rows}

-- name: analyze
ANALYZE {table}
