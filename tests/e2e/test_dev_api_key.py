"""``taskexec dev`` (``make run``) prints a development API key that works at once, over
real HTTP; without it the API answers 401, with the rate-limit headers on every response."""

from __future__ import annotations

import re

import httpx

from tests.e2e import test_dev_stack
from tests.e2e.test_dev_stack import Stack

dev_stack = test_dev_stack.dev_stack  # the same real `taskexec dev` processes


def test_dev_prints_a_working_key_with_every_permission(dev_stack: Stack) -> None:
    banner = dev_stack.log.read_text()
    match = re.search(r"API key\s+(tex_[0-9a-f]{16}_[a-z2-7]{52})", banner)
    assert match, banner
    key = match.group(1)
    assert dev_stack.auth == {"X-API-Key": key}
    assert f"curl -H 'X-API-Key: {key}' {dev_stack.base}/api/v1/tasks" in banner

    for path in ("/api/v1/tasks", "/api/v1/tasks/definitions"):
        response = httpx.get(f"{dev_stack.base}{path}", headers=dev_stack.auth)
        assert response.status_code == 200, response.text
        assert response.headers["x-ratelimit-limit"] == "10000"

    anonymous = httpx.get(f"{dev_stack.base}/api/v1/tasks")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "UNAUTHORIZED"
    assert anonymous.headers["www-authenticate"].startswith('Bearer realm="taskexec"')
    assert int(anonymous.headers["x-ratelimit-remaining"]) >= 0
