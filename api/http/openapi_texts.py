"""What the OpenAPI document says in words and examples (api/http/openapi_contract.py
puts them in place): the headers, the error statuses, the enums, and the examples — the
API reference's own, with real task ids (UUIDs) and every field the service returns.
Each example must validate against its schema (a test checks them all)."""

from __future__ import annotations

from typing import Any

from domain.values import Priority, TaskStatus, TaskType

TASKS = "/api/v1/tasks"
TASK_ID = "0b7d6f3e-8c1a-4f5e-9d2b-3a4c5e6f7a8b"
OTHER_ID = "5f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f"
INPUT = {
    "orderId": "ORD-123",
    "items": [
        {"id": "ITEM-1", "quantity": 2, "price": 10.99},
        {"id": "ITEM-2", "quantity": 1, "price": 24.99},
    ],
}
SUBMIT = {
    "taskDefinitionId": "calculate-order-total",
    "workflowInstanceId": "order-workflow-789",
    "input": INPUT,
    "priority": "MEDIUM",
    "executionConfig": {
        "timeout": 3600000,
        "retryPolicy": {"maxRetries": 3, "retryInterval": 60000, "backoffMultiplier": 2},
    },
}
TASK = {
    "id": TASK_ID,
    "taskDefinitionId": "calculate-order-total",
    "definitionVersion": "1.2.0",
    "workflowInstanceId": "order-workflow-789",
    "status": "COMPLETED",
    "type": "AUTOMATED",
    "priority": "MEDIUM",
    "input": INPUT,
    "output": {"subtotal": 46.97, "tax": 3.76, "total": 50.73},
    "error": None,
    "attempts": 1,
    "nextAttemptAt": None,
    "scheduledAt": None,
    "executionMetadata": {
        "startTime": "2023-07-15T14:30:05Z",
        "endTime": "2023-07-15T14:30:07Z",
        "duration": 2000,
        "executionEnvironment": "standard-executor-pod-123",
    },
    "createdAt": "2023-07-15T14:30:00Z",
    "updatedAt": "2023-07-15T14:30:07Z",
    "tenant": None,
}
TASK_LIST = {
    "items": [
        {
            "id": TASK_ID,
            "taskDefinitionId": "calculate-order-total",
            "status": "COMPLETED",
            "type": "AUTOMATED",
            "workflowInstanceId": "order-workflow-789",
            "createdAt": "2023-07-15T14:30:00Z",
            "updatedAt": "2023-07-15T14:30:07Z",
            "scheduledAt": None,
            "tenant": None,
        },
        {
            "id": OTHER_ID,
            "taskDefinitionId": "process-payment",
            "status": "RUNNING",
            "type": "INTEGRATION",
            "workflowInstanceId": None,
            "createdAt": "2023-07-15T14:31:00Z",
            "updatedAt": "2023-07-15T14:31:05Z",
            "scheduledAt": "2023-07-15T14:31:00Z",
            "tenant": "acme",
        },
    ],
    "pagination": {"page": 1, "limit": 20, "totalItems": 42, "totalPages": 3},
}
DEFINITION_SUMMARY = {
    "id": "calculate-order-total",
    "name": "Calculate Order Total",
    "description": "Calculates the total price of an order including taxes",
    "type": "AUTOMATED",
    "version": "1.2.0",
    "revision": 1,
}
DEFINITION = {
    **DEFINITION_SUMMARY,
    "inputSchema": {
        "type": "object",
        "properties": {
            "orderId": {"type": "string", "description": "Order identifier"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "quantity": {"type": "number"},
                        "price": {"type": "number"},
                    },
                    "required": ["id", "quantity", "price"],
                },
            },
        },
        "required": ["orderId", "items"],
    },
    "outputSchema": {
        "type": "object",
        "properties": {
            "subtotal": {"type": "number"},
            "tax": {"type": "number"},
            "total": {"type": "number"},
        },
        "required": ["subtotal", "tax", "total"],
    },
    "timeout": 60000,
    "retryPolicy": {"maxRetries": 3, "retryInterval": 60000, "backoffMultiplier": 2},
    "executionConfig": {
        "executor": "standard-executor",
        "securityContext": {"securityLevel": "LOW"},
        "resourceRequirements": {"cpu": "0.1", "memory": "128Mi", "timeoutSeconds": 60},
    },
    "createdAt": "2023-06-01T10:00:00Z",
    "updatedAt": "2023-07-01T11:30:00Z",
}
CANCELLED = {"id": TASK_ID, "status": "CANCELLED", "updatedAt": "2023-07-15T14:35:00Z"}
REQUEUED = {"id": TASK_ID, "status": "PENDING", "updatedAt": "2023-07-15T15:00:00Z"}
SUBMITTED = {"id": TASK_ID, "status": "PENDING", "createdAt": "2023-07-15T14:30:00Z"}

REQUEST_EXAMPLES: dict[tuple[str, str], Any] = {
    (TASKS, "post"): SUBMIT,
    (f"{TASKS}/bulk", "post"): {"tasks": [SUBMIT, {**SUBMIT, "idempotencyKey": "order-789-b"}]},
    (f"{TASKS}/{{taskId}}/cancel", "post"): {"reason": "User requested cancellation"},
    (f"{TASKS}/{{taskId}}/retry", "post"): {"reason": "the payment provider is back"},
    (f"{TASKS}/{{taskId}}/complete", "post"): {"output": {"approved": True}},
    (f"{TASKS}/{{taskId}}/fail", "post"): {
        "error": {"type": "REJECTED", "message": "the reviewer rejected the order"}
    },
}
RESPONSE_EXAMPLES: dict[tuple[str, str, str], Any] = {
    (TASKS, "post", "201"): SUBMITTED,
    (TASKS, "post", "200"): SUBMITTED,
    (TASKS, "get", "200"): TASK_LIST,
    (f"{TASKS}/{{taskId}}", "get", "200"): TASK,
    (f"{TASKS}/{{taskId}}/cancel", "post", "200"): CANCELLED,
    (f"{TASKS}/{{taskId}}/retry", "post", "200"): REQUEUED,
    (f"{TASKS}/definitions", "get", "200"): {
        "items": [DEFINITION_SUMMARY],
        "pagination": {"page": 1, "limit": 20, "totalItems": 1, "totalPages": 1},
    },
    (f"{TASKS}/definitions/{{definitionId}}", "get", "200"): DEFINITION,
}


def _error(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


ERROR_EXAMPLES: dict[str, Any] = {
    "400": _error(
        "VALIDATION_ERROR",
        "Invalid request: taskDefinitionId: Expected `str` of length >= 1",
        {
            "field": "taskDefinitionId",
            "issue": "Expected `str` of length >= 1",
            "source": "body",
            "violations": [
                {
                    "field": "taskDefinitionId",
                    "issue": "Expected `str` of length >= 1",
                    "source": "body",
                }
            ],
        },
    ),
    "401": _error("UNAUTHORIZED", "authentication required: send a Bearer token or an API key"),
    "403": _error(
        "FORBIDDEN", "permission tasks:execute is required", {"required": "tasks:execute"}
    ),
    "404": _error("NOT_FOUND", f"task {TASK_ID} not found", {"field": "taskId"}),
    "409": _error("CONFLICT", "task is COMPLETED and cannot be cancelled", {"status": "COMPLETED"}),
    "413": _error(
        "PAYLOAD_TOO_LARGE",
        "the task's input is too large",
        {"field": "input", "size": 2_000_000, "limit": 1_032_192},
    ),
    "422": _error(
        "VALIDATION_ERROR",
        "input does not match the task definition's inputSchema",
        {
            "field": "input",
            "violations": [{"path": "$.items", "message": "'items' is a required property"}],
        },
    ),
    "429": _error(
        "RATE_LIMITED",
        "rate limit exceeded: 100 requests per 60 s",
        {"limit": 100, "period": 60, "reset": 1689431460},
    ),
    "503": _error(
        "SERVICE_UNAVAILABLE",
        "the database is unreachable",
        {"recorded": False, "retryAfter": 1},
    ),
}


ENUM_DESCRIPTIONS = {
    Priority: "Task priority. Workers take CRITICAL work first, then HIGH, MEDIUM and LOW.",
    TaskStatus: "PENDING until a worker starts it; RUNNING; then one final status.",
    TaskType: "How a task runs: AUTOMATED (a handler), MANUAL (a person), INTEGRATION (HTTP).",
}


def _header(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "schema": schema}


HEADERS = {
    "X-Request-ID": _header(
        {"type": "string", "pattern": "^[A-Za-z0-9._:+/=-]{1,128}$"},
        "The request's id, in the service's logs: the request's own X-Request-ID if it "
        "is 1 to 128 of these characters, else a new one (32 hex digits).",
    ),
    "X-RateLimit-Limit": _header(
        {"type": "integer"}, "Requests allowed per window to this caller (per bucket)."
    ),
    "X-RateLimit-Remaining": _header({"type": "integer"}, "Requests left in the current window."),
    "X-RateLimit-Reset": _header(
        {"type": "integer"}, "When the current window ends (Unix timestamp, seconds)."
    ),
    "Retry-After": _header({"type": "integer"}, "Seconds to wait before sending it again."),
    "WWW-Authenticate": _header({"type": "string"}, 'The scheme to use: `Bearer realm="..."`.'),
    "Location": _header({"type": "string"}, "The task's URL: `/api/v1/tasks/{taskId}`."),
    "Idempotent-Replayed": _header(
        {"type": "string", "enum": ["true"]},
        "Set on a 200: the task submitted earlier with this Idempotency-Key.",
    ),
}
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
ERROR_DESCRIPTIONS = {
    "400": "VALIDATION_ERROR: the request is malformed (details name the field)",
    "401": "UNAUTHORIZED: no credential, or an invalid one",
    "403": "FORBIDDEN: the caller lacks the permission this operation needs",
    "404": "NOT_FOUND: no such task or task definition",
    "409": "CONFLICT: the task's status does not allow it",
    "413": "PAYLOAD_TOO_LARGE: the body, or a task's input, is larger than allowed",
    "422": "VALIDATION_ERROR: the input (or a MANUAL task's output) breaks the definition's "
    "schema (every violation listed), or an Idempotency-Key is reused with another request",
    "429": "RATE_LIMITED: over the caller's budget; retry after Retry-After seconds",
    "503": "SERVICE_UNAVAILABLE: the database is unreachable; details.recorded says "
    "whether a write was recorded",
}
