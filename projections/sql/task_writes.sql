-- A batch's writes to the task read model (projections/task_sql.py; the fields are filled
-- by projections/sql/task_writes.py): {view} is task_view_g<N>, {counts} task_counts_g<N>,
-- {columns} a list of its columns, {rows} a set of rows AS v (json_rows, array_rows).

-- name: select_task_rows_any
SELECT {columns} FROM {view} WHERE id = ANY(?)

-- name: select_task_rows_in
SELECT {columns} FROM {view} WHERE id IN ({marks})

-- name: insert_task_rows_from
INSERT INTO {view} ({columns}) SELECT {columns} FROM {rows}

-- name: update_task_rows_from
UPDATE {view} AS t SET {assignments} FROM {rows} WHERE t.id = v.id

-- PostgreSQL: rows of {table}'s own row type from one JSON array of objects keyed by column.
-- name: json_rows
json_populate_recordset(NULL::{table}, ?::json) AS v

-- PostgreSQL: rows from one array parameter per column ({arrays}: ?::<type>[], ...).
-- name: array_rows
unnest({arrays}) AS v({columns})

-- name: add_counts_from
INSERT INTO {counts} (status, type, n) SELECT status, type, n FROM {rows}
ON CONFLICT (status, type) DO UPDATE SET n = {counts}.n + excluded.n

-- name: add_counts
INSERT INTO {counts} (status, type, n) VALUES (?, ?, ?)
ON CONFLICT (status, type) DO UPDATE SET n = {counts}.n + excluded.n

-- SQLite: {values} is ? or NULL per column.
-- name: insert_task_values
INSERT INTO {view} ({columns}) VALUES ({values})

-- SQLite: {assignments} sets each mutable column to ? or NULL.
-- name: update_task_values
UPDATE {view} SET {assignments} WHERE id = ?

-- {counts} is task_tenant_counts_g<N>.
-- name: add_tenant_counts_from
INSERT INTO {counts} (tenant, status, type, n) SELECT tenant, status, type, n FROM {rows}
ON CONFLICT (tenant, status, type) DO UPDATE SET n = {counts}.n + excluded.n

-- name: add_tenant_counts
INSERT INTO {counts} (tenant, status, type, n) VALUES (?, ?, ?, ?)
ON CONFLICT (tenant, status, type) DO UPDATE SET n = {counts}.n + excluded.n
