-- The task read model of generation {g}: task_view_g{g} ({view}), one row per task,
-- task_counts_g{g} ({counts}) and task_tenant_counts_g{g} ({tenant_counts})
-- (projections/tasks.py). The columns' order is
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
    version INTEGER NOT NULL,
    error_type TEXT,
    scheduled_at TEXT,
    tenant TEXT
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

-- The failures of one kind (errorType), newest first; only rows with an error.
-- name: create_task_error_type_index
CREATE INDEX IF NOT EXISTS ix_task_error_type_g{g} ON {view} (error_type, created_at, id)
WHERE error_type IS NOT NULL

-- A tenant's lists (docs/security.md, "Tenants"): tenant, then each way of listing, then
-- the sort key; only rows with a tenant, so that a deployment without tenants pays nothing.
-- name: create_task_tenant_created_index
CREATE INDEX IF NOT EXISTS ix_task_tenant_created_g{g} ON {view} (tenant, created_at, id)
WHERE tenant IS NOT NULL

-- name: create_task_tenant_status_index
CREATE INDEX IF NOT EXISTS ix_task_tenant_status_g{g} ON {view} (tenant, status, created_at, id)
WHERE tenant IS NOT NULL

-- name: create_task_tenant_type_index
CREATE INDEX IF NOT EXISTS ix_task_tenant_type_g{g} ON {view} (tenant, type, created_at, id)
WHERE tenant IS NOT NULL

-- name: create_task_tenant_workflow_index
CREATE INDEX IF NOT EXISTS ix_task_tenant_workflow_g{g}
ON {view} (tenant, workflow_instance_id, created_at, id) WHERE tenant IS NOT NULL

-- name: create_task_tenant_error_type_index
CREATE INDEX IF NOT EXISTS ix_task_tenant_error_type_g{g}
ON {view} (tenant, error_type, created_at, id)
WHERE tenant IS NOT NULL AND error_type IS NOT NULL

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

-- The tasks with a tenant, per tenant, status and type (a tenant's totalItems).
-- name: create_task_tenant_counts
CREATE TABLE IF NOT EXISTS {tenant_counts} (
    tenant TEXT NOT NULL,
    status TEXT NOT NULL,
    type TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (tenant, status, type)
)

-- A table made before a column existed gets it (projections/task_upgrade.py).
-- name: pg_task_view_columns
SELECT column_name AS name FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ?

-- name: sqlite_task_view_columns
SELECT name FROM pragma_table_info(?)

-- name: add_task_error_type
ALTER TABLE {view} ADD COLUMN error_type TEXT

-- Tasks recorded before scheduled tasks existed have none: nothing to fill.
-- name: add_task_scheduled_at
ALTER TABLE {view} ADD COLUMN scheduled_at TEXT

-- Tasks recorded before tenants existed have none: nothing to fill.
-- name: add_task_tenant
ALTER TABLE {view} ADD COLUMN tenant TEXT

-- The rows whose error_type is to be filled, in id order from after a given id.
-- name: task_errors_after
SELECT id, error FROM {view} WHERE error IS NOT NULL AND id > ? ORDER BY id LIMIT ?

-- name: set_task_error_type
UPDATE {view} SET error_type = ? WHERE id = ?
