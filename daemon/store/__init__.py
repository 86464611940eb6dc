"""The durable store: tables, schema migrations, the event log and the live event feed.

Import the store's names from `daemon.store.store` (the facade), the task states from
`daemon.store.states` and the feed from `daemon.store.feed`.
"""
