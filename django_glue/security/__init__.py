"""Security helpers for WebSocket consumers (origin checks)."""
