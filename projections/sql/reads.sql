-- Reads of the read models of generation {g} (projections/queries.py, stranded.py and
-- audit/read_model_sql.py; the fields are filled by projections/sql/reads.py): {where} is
-- a WHERE clause or nothing, {order} an ORDER BY key.

-- name: task_by_id
SELECT * FROM task_view_g{g} WHERE id = ?

-- totalItems of a list filtered by status and type (or not at all): {conditions} holds.
-- name: count_tasks_from_counts
SELECT COALESCE(SUM(n), 0) AS n FROM task_counts_g{g} WHERE {conditions}

-- totalItems of a tenant's list filtered by status and type (or not at all).
-- name: count_tenant_tasks_from_counts
SELECT COALESCE(SUM(n), 0) AS n FROM task_tenant_counts_g{g} WHERE {conditions}

-- name: count_tasks
SELECT COUNT(*) AS n FROM task_view_g{g} {where}

-- The condition of the partial index on error_type (a list filtered by errorType).
-- name: has_error_type
error_type IS NOT NULL

-- name: task_page
SELECT id, definition_id, status, type, workflow_instance_id, created_at, updated_at,
scheduled_at, tenant FROM task_view_g{g} {where} ORDER BY {order} LIMIT ? OFFSET ?

-- Finished tasks to retry (taskexec tasks retry), oldest first; {where} holds the
-- filters and, after the first page, finished_after.
-- name: finished_tasks
SELECT id, definition_id, status, error_type, created_at, updated_at FROM task_view_g{g}
{where} ORDER BY created_at, id LIMIT ?

-- After the last task of the page before: its created_at (twice) and id.
-- name: finished_after
(created_at > ? OR (created_at = ? AND id > ?))

-- name: updated_since
updated_at >= ?

-- name: updated_before
updated_at < ?

-- name: expired_leases
SELECT id, attempts FROM task_view_g{g} WHERE lease_deadline < ?
ORDER BY lease_deadline LIMIT ?

-- PENDING tasks (not MANUAL) due and unchanged since before a moment; {running}: the
-- running_past_lease condition, or nothing.
-- name: stranded_tasks
SELECT id, status, priority, updated_at FROM task_view_g{g} WHERE type <> 'MANUAL'
AND ((status = 'PENDING' AND updated_at < ?
AND (next_attempt_at IS NULL OR next_attempt_at < ?)) {running})
ORDER BY updated_at LIMIT ?

-- name: running_past_lease
OR (status = 'RUNNING' AND lease_deadline < ?)

-- name: definition_by_id
SELECT * FROM definition_view_g{g} WHERE id = ?

-- name: count_definitions
SELECT COUNT(*) AS n FROM definition_view_g{g} {where}

-- name: definition_page
SELECT id, name, description, type, version, revision FROM definition_view_g{g}
{where} ORDER BY id LIMIT ? OFFSET ?

-- Name or description contains a (lower-case, escaped) pattern.
-- name: definition_matches
(LOWER(name) LIKE ? ESCAPE '\' OR LOWER(description) LIKE ? ESCAPE '\')

-- taskexec verify: the read model's totals and rows ({condition}: the ids asked for).
-- name: task_counts
SELECT status, type, n FROM task_counts_g{g}

-- name: tenant_counts
SELECT tenant, status, type, n FROM task_tenant_counts_g{g}

-- What the tenants' counts must hold: the rows with a tenant, counted.
-- name: tenant_counts_of_rows
SELECT tenant, status, type, COUNT(*) AS n FROM task_view_g{g} WHERE tenant IS NOT NULL
GROUP BY tenant, status, type

-- name: task_rows
SELECT * FROM task_view_g{g} WHERE {condition}

-- name: definition_rows
SELECT * FROM definition_view_g{g} WHERE {condition}

-- name: task_ids
SELECT id FROM task_view_g{g}
