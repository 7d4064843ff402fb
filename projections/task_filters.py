"""How a task list's filters become SQL (projections/queries.py): the conditions, the
statement that counts them, and the WHERE clause and order of a page.

Every filter is a condition of the query, the tenant's included (docs/security.md,
"Tenants"): a tenant's page, and its ``totalItems``, are read from its own index ranges
and its own counts, never filtered in Python after paging.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from projections.db import Cursor
from projections.sql import any_of, equals, reads, where
from projections.task_rows import free_text

# The filters in the order they lead a page (the most selective first): a workflow's few
# tasks, then the failures of one kind, then status, then type (types are fewer).
LEADS = ("workflow_instance_id", "error_type", "status", "type")


@dataclass(frozen=True)
class TaskFilters:
    """A list's filters by column (None: not filtered), and the caller's tenant (None:
    every tenant's tasks, and those without one)."""

    columns: dict[str, Any]
    tenant: str | None = None

    @classmethod
    def of(
        cls,
        status: str | None,
        task_type: str | None,
        workflow_instance_id: str | None,
        error_type: str | None,
        tenant: str | None,
    ) -> TaskFilters:
        given = (
            ("status", status),
            ("type", task_type),
            # kept as the read model keeps free text (a NUL as U+FFFD)
            ("workflow_instance_id", free_text(workflow_instance_id)),
            ("error_type", free_text(error_type)),
        )
        return cls({column: value for column, value in given if value is not None}, tenant)

    def _scoped(self) -> tuple[list[str], list[Any]]:
        """Every condition, the tenant's first, and its parameters."""
        conditions = [equals(column) for column in self.columns] + _partial(self.columns)
        params = list(self.columns.values())
        if self.tenant is not None:
            return [equals("tenant"), *conditions], [self.tenant, *params]
        return conditions, params

    def count(self, g: int) -> tuple[str, list[Any]]:
        """The statement of ``totalItems`` and its parameters: a sum over the counts
        (status and type filters, or none), else a count over the filters' index."""
        conditions, params = self._scoped()
        if {"workflow_instance_id", "error_type"} & self.columns.keys():
            return reads.count_tasks(g, where(conditions)), params
        if self.tenant is not None:
            return reads.count_tenant_tasks_from_counts(g, conditions), params
        return reads.count_tasks_from_counts(g, conditions), params

    def page(self, cur: Cursor) -> tuple[str, list[Any], str]:
        """WHERE, its parameters and the ORDER BY key (newest first) of a page.

        A tenant's page has every filter as an equality, the tenant's first: each of its
        indexes (tenant, filter, created_at, id) then gives the order without a sort.
        (The global lists' ``= ANY`` trick, ``_lead_index``, would not do here: PostgreSQL
        15 keeps an index's order only for an ``= ANY`` on its first column.)"""
        if self.tenant is not None:
            conditions, params = self._scoped()
            return where(conditions), params, reads.NEWEST_FIRST
        if not self.columns:
            return "", [], reads.NEWEST_FIRST
        return _lead_index(cur, self.columns)


def _lead_index(cur: Cursor, filters: dict[str, Any]) -> tuple[str, list[Any], str]:
    """A filtered page walks its lead filter's index, (lead, created_at, id): the most
    selective filter leads (``LEADS``).
    Ordered by that index, under ``lead = value``, is the order of (created_at, id).

    Left to itself, PostgreSQL walked the creation index and filtered: fast while matches
    are spread evenly, but when the newest tasks do not match (a burst of PENDING ones,
    and a list of COMPLETED) it reads through all of them (docs/benchmarks.md, "Design
    measurements"). Ordering by the lead
    column is not enough there: under ``lead = ?`` the planner knows the column constant
    and drops it from the sort key. ``lead = ANY(?)`` (one value) it does not, so only
    the lead's index gives the order asked for. SQLite takes ``lead = ?`` with the
    ORDER BY as it is."""
    lead = next(c for c in LEADS if c in filters)
    conditions, values = [], []
    for column, value in filters.items():
        if column == lead and cur.postgres:
            conditions.append(any_of(column))
            values.append([value])
        else:
            conditions.append(equals(column))
            values.append(value)
    return where(conditions + _partial(filters)), values, reads.newest_first(lead)


def _partial(filters: dict[str, Any]) -> list[str]:
    """The error type's index holds only rows with one (``WHERE error_type IS NOT NULL``):
    said outright, so that PostgreSQL sees it may use that index for ``= ANY(?)``."""
    return [reads.has_error_type()] if "error_type" in filters else []
