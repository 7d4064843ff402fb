"""The write side: TaskService (an eventsourcing Application), command handling,
the definitions catalog, the outbox read by the relay, and the results consumer."""
