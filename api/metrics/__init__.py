"""``serve``'s Prometheus metrics (docs/operations.md, "Metrics").

- ``families``: the registry and the families counted as things happen (HTTP requests;
  tasks submitted, finished, attempts, run and queue-wait times);
- ``tap``: counts the task families from the events the projection applies;
- ``http``: the ASGI layer that times requests, and ``GET /metrics``;
- ``scrape``: what is read when Prometheus scrapes (the read model's counts, lags,
  JetStream's backlog).

Built by the composition root (api/bootstrap.py) when ``TASKEXEC_METRICS`` is on.
"""
