-- The task read model of generation {g}: task_view_g{g} ({view}), one row per task,
-- and task_counts_g{g} ({counts}) (projections/tasks.py). The columns' order is
-- task_rows.COLUMNS; the nullable ones are task_rows.NULLABLE.

-- name: create_task_view
CREATE TABLE IF NOT EXISTS {view} (
    id TEXT PRIMARY KEY,
    definition_id TEXT NOT NULL,
    definition_version TEXT NOT NULL,
    definition_revision INTEGER NOT NULL,
    workflow_instance_id TEXT,
    timeout_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    type TEXT NOT NULL,
    priority TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT,
    error TEXT,
    attempts INTEGER NOT NULL,
    start_time TEXT,
    end_time TEXT,
    execution_environment TEXT,
    cancel_reason TEXT,
    next_attempt_at TEXT,
    lease_deadline TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL
)

-- One index per way of listing; each ends in the sort key (created_at, id).
-- name: create_task_created_index
CREATE INDEX IF NOT EXISTS ix_task_created_g{g} ON {view} (created_at, id)

-- name: create_task_status_index
CREATE INDEX IF NOT EXISTS ix_task_status_g{g} ON {view} (status, created_at, id)

-- name: create_task_type_index
CREATE INDEX IF NOT EXISTS ix_task_type_g{g} ON {view} (type, created_at, id)

-- name: create_task_workflow_index
CREATE INDEX IF NOT EXISTS ix_task_workflow_g{g} ON {view} (workflow_instance_id, created_at, id)

-- Running attempts by deadline: finds attempts whose worker vanished.
-- name: create_task_lease_index
CREATE INDEX IF NOT EXISTS ix_task_lease_g{g} ON {view} (lease_deadline)
WHERE lease_deadline IS NOT NULL

-- name: create_task_counts
CREATE TABLE IF NOT EXISTS {counts} (
    status TEXT NOT NULL,
    type TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (status, type)
)
