"""The read models' queries (projections/queries.py, stranded.py, audit/read_model_sql.py):
the templates of reads.sql with a generation's tables, filters and order filled in."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from projections.sql import statement

NEWEST_FIRST = "created_at DESC, id DESC"


@lru_cache(maxsize=16)
def task_by_id(g: int) -> str:
    return statement("task_by_id").format(g=g)


def count_tasks_from_counts(g: int, conditions: Sequence[str]) -> str:
    """From the counts table: ``conditions`` may only name status and type."""
    joined = " AND ".join(conditions) or "1 = 1"
    return statement("count_tasks_from_counts").format(g=g, conditions=joined)


def count_tenant_tasks_from_counts(g: int, conditions: Sequence[str]) -> str:
    """From a tenant's counts: ``conditions`` may only name tenant, status and type."""
    return statement("count_tenant_tasks_from_counts").format(
        g=g, conditions=" AND ".join(conditions)
    )


def count_tasks(g: int, where: str = "") -> str:
    return statement("count_tasks").format(g=g, where=where)


def task_page(g: int, where: str, order: str) -> str:
    return statement("task_page").format(g=g, where=where, order=order)


def newest_first(lead: str) -> str:
    """Walking the index (``lead``, created_at, id) backwards."""
    return f"{lead} DESC, {NEWEST_FIRST}"


def oldest_first(newest: str) -> str:
    """The order ``newest`` turned around."""
    return newest.replace("DESC", "ASC")


@lru_cache(maxsize=16)
def expired_leases(g: int) -> str:
    return statement("expired_leases").format(g=g)


@lru_cache(maxsize=32)
def stranded_tasks(g: int, running: bool) -> str:
    """Parameters: before, before, (before, if ``running``), limit."""
    clause = statement("running_past_lease") if running else ""
    return statement("stranded_tasks").format(g=g, running=clause)


@lru_cache(maxsize=16)
def definition_by_id(g: int) -> str:
    return statement("definition_by_id").format(g=g)


def count_definitions(g: int, where: str = "") -> str:
    return statement("count_definitions").format(g=g, where=where)


def definition_page(g: int, where: str) -> str:
    return statement("definition_page").format(g=g, where=where)


def definition_matches() -> str:
    """Two parameters: the pattern, twice."""
    return statement("definition_matches")


def task_counts(g: int) -> str:
    return statement("task_counts").format(g=g)


def tenant_counts(g: int) -> str:
    return statement("tenant_counts").format(g=g)


def tenant_counts_of_rows(g: int) -> str:
    return statement("tenant_counts_of_rows").format(g=g)


def task_rows(g: int, condition: str) -> str:
    return statement("task_rows").format(g=g, condition=condition)


def definition_rows(g: int, condition: str) -> str:
    return statement("definition_rows").format(g=g, condition=condition)


def task_ids(g: int) -> str:
    return statement("task_ids").format(g=g)


def has_error_type() -> str:
    """The condition of the error type's partial index."""
    return statement("has_error_type")


def finished_tasks(g: int, where: str) -> str:
    """Parameters: those of ``where``, then the page's size."""
    return statement("finished_tasks").format(g=g, where=where)
