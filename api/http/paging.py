"""Lists' query parameters (``page``, ``limit``, the enum filters) and the ``pagination``
object."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request
from litestar.exceptions import ValidationException
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


def refuse_null(request: Request[Any, Any, Any], **filters: object) -> None:
    """400 for an enum filter sent as the word ``null``: Litestar reads ``?type=null`` as
    "not given" for an optional parameter, but the document (and the list of values in
    the error) says only the enum's values are valid, as for any other word."""
    for name, value in filters.items():
        if value is None and name in request.query_params:
            raise ValidationException(
                f"Validation failed for {request.method} {request.url.path}",
                extra=[{"key": name, "message": "Invalid enum value 'null'", "source": "query"}],
            )
