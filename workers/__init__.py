"""Everything that speaks NATS: the relay (store -> NATS), the executor (pull, run,
report), the handler registry and built-in handlers, and the embedded nats-server.

Workers never open the database: what they need travels in the work message."""
