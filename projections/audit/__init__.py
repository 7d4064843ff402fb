"""Audit: task history, the export of every event, hash-chain checks and the
verification of read models against a replay of the event store."""
