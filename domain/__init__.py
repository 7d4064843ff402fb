"""The domain model: the Task aggregate, its events and value objects.

Pure Python: imports only the standard library and ``eventsourcing.domain``.
No I/O and no clock reads; times and ids come in as arguments.
"""
