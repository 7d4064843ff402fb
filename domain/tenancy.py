"""Tenants: a principal may belong to one; a task belongs to its submitter's.

The rule is one line (``visible``): a principal without a tenant sees every task (as
before tenants existed); a principal with one sees only its tenant's tasks, and not the
tasks recorded without a tenant. Everything that reads or changes a task on a caller's
behalf asks it, so that another tenant's task is "not found", exactly like an unknown id.
"""

from __future__ import annotations

import re

from domain.errors import InvalidValue

TENANT_MAX = 100
# Letters, digits and . _ - : (a name, an org id, a UUID), starting with a letter or digit.
_TENANT = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{TENANT_MAX - 1}}}")


def check_tenant(name: str) -> str:
    """``name`` if it is a tenant's name, else InvalidValue saying what one is."""
    if not isinstance(name, str) or _TENANT.fullmatch(name) is None:
        raise InvalidValue(
            f"a tenant is 1 to {TENANT_MAX} letters, digits, '.', '_', '-' or ':', "
            "starting with a letter or digit"
        )
    return name


def visible(task_tenant: str | None, viewer_tenant: str | None) -> bool:
    """May a principal of ``viewer_tenant`` (None: no tenant) see a task of
    ``task_tenant`` (None: recorded without one)?"""
    return viewer_tenant is None or task_tenant == viewer_tenant
