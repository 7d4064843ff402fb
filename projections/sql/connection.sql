-- Connections and transactions of the read-model database (projections/db.py) and the
-- runner's wake-ups (projections/commit_listener.py).

-- name: sqlite_wal
PRAGMA journal_mode=WAL

-- name: sqlite_synchronous
PRAGMA synchronous=NORMAL

-- The writer's page cache, in KiB.
-- name: sqlite_cache_size
PRAGMA cache_size=-{kib}

-- name: sqlite_begin_write
BEGIN IMMEDIATE

-- name: begin
BEGIN

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: pg_snapshot
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY

-- name: pg_copy_binary
COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)

-- name: pg_listen
LISTEN "{channel}"

-- The database answers (/health, api/health.py).
-- name: ping
SELECT 1
