"""Schemathesis hooks for the contract run (tests/integration/test_openapi_contract.py).

One check, ``positive_data_acceptance_but_state``, stands in for schemathesis's
``positive_data_acceptance`` on ``POST /api/v1/tasks`` and ``POST
/api/v1/tasks/{taskId}/complete`` (the run's configuration turns the built-in off for those
two operations), and differs from it in three cases only, the 422s that no document can
foresee because they depend on data, not on the request's shape:
- the task definition's own ``inputSchema`` refuses the ``input`` (definitions are data,
  registered when the service starts; the document describes every definition's body);
- the ``Idempotency-Key`` was used before with another body (the key's history; 422 as
  the IETF Idempotency-Key draft says);
- a MANUAL task's ``output`` breaks its definition's ``outputSchema`` (``POST
  /api/v1/tasks/{taskId}/complete``, where the built-in check is off too).
Any other refusal of valid data there (a 422 for another reason, a 400) still fails.

Loaded by schemathesis itself (``hooks = "tests.schemathesis_hooks"`` in the run's
configuration), never imported by pytest.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response
from schemathesis.specs.openapi.checks import positive_data_acceptance

SUBMIT = "POST /api/v1/tasks"
COMPLETE = "POST /api/v1/tasks/{taskId}/complete"
INPUT_SCHEMA_MESSAGE = "input does not match the task definition's inputSchema"
KEY_REUSED_MESSAGE = "Idempotency-Key was already used with a different request"
OUTPUT_SCHEMA_MESSAGE = "output does not match the task definition's outputSchema"
EXPECTED = {
    "input": INPUT_SCHEMA_MESSAGE,
    "Idempotency-Key": KEY_REUSED_MESSAGE,
    "output": OUTPUT_SCHEMA_MESSAGE,
}


def is_expected_rejection(response: Response) -> bool:
    """The service's 422 for an ``input`` its definition's ``inputSchema`` refuses, or for
    an ``Idempotency-Key`` reused with another body."""
    if response.status_code != 422:
        return False
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return False
    details = error.get("details")
    if error.get("code") != "VALIDATION_ERROR" or not isinstance(details, dict):
        return False
    field = details.get("field")
    return isinstance(field, str) and EXPECTED.get(field) == error.get("message")


@schemathesis.check
def positive_data_acceptance_but_state(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """``positive_data_acceptance`` on POST /api/v1/tasks, less the two expected 422s."""
    if case.operation.label not in (SUBMIT, COMPLETE) or is_expected_rejection(response):
        return None
    return positive_data_acceptance(ctx, response, case)
