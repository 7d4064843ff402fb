"""Pages of a list: the ``page``/``limit`` query parameters and the ``pagination`` object."""

from __future__ import annotations

from typing import Annotated

from litestar.params import QueryParameter

from api.http.schemas import Pagination
from projections.queries import Page

MAX_LIMIT = 100


PageNumber = Annotated[int, QueryParameter(ge=1, description="Page number, from 1")]


PageSize = Annotated[
    int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"Items per page, 1-{MAX_LIMIT}")
]


def pagination(page: Page) -> Pagination:
    return Pagination(
        page=page.page,
        limit=page.limit,
        total_items=page.total_items,
        total_pages=page.total_pages,
    )
