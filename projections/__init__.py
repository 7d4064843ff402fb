"""The read side: projections from the notification log into SQL read models, with the
tracking position written in the same transaction, and the queries that read them."""
