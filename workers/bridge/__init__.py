"""The NATS bridge that runs in ``serve``: stored events out as messages (outbox,
relay, publisher), reports in as commands (results consumer), lost work found again."""
