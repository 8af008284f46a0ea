"""The demo site ``procman demo`` runs: a chat with rooms (the Channels 1 tutorial's example).

Messages are stored with the ORM in SQLite in a per-user data directory (migrated on start),
history is rendered on page load, new messages arrive over WebSocket through a ``Group`` per room,
and a panel shows the channel layer's live statistics.
"""
