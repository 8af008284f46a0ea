"""The settings of one interface process, with their defaults (see docs/interface.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ServerOptions"]


@dataclass
class ServerOptions:
    """Everything that tunes an :class:`~procman.interface.server.InterfaceServer`.

    Durations are seconds. ``None`` for ``websocket_timeout`` means "the layer's ``group_expiry``"
    (the spec: connections must not outlive their group memberships); a negative duration means
    "never" for ``websocket_timeout`` and ``websocket_connect_timeout``. A limit of 0 means
    "unlimited" for ``max_request_body``, ``max_ws_message`` and ``max_connections``.
    """

    http_timeout: float = 120.0
    keep_alive_timeout: float = 5.0
    websocket_timeout: float | None = None
    websocket_connect_timeout: float = 5.0
    ping_interval: float = 20.0
    ping_timeout: float = 30.0
    ws_protocols: list[str] = field(default_factory=list)
    root_path: str = ""
    proxy_headers: bool = False
    max_request_body: int = 100 * 2**20
    max_ws_message: int = 2**20
    max_connections: int = 0
    max_response_buffer: int = 16 * 2**20
    shutdown_timeout: float = 10.0
    body_chunk_size: int = 256 * 2**10
    max_head_size: int = 32 * 2**10
    check_interval: float = 1.0
    retry_after: int = 5

    def validate(self) -> None:
        """Raise ValueError naming the first setting that makes no sense."""
        positive = {
            "http_timeout": self.http_timeout,
            "keep_alive_timeout": self.keep_alive_timeout,
            "ping_timeout": self.ping_timeout,
            "shutdown_timeout": self.shutdown_timeout,
            "body_chunk_size": self.body_chunk_size,
            "max_head_size": self.max_head_size,
            "check_interval": self.check_interval,
            "max_response_buffer": self.max_response_buffer,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be greater than 0, got {value!r}")
        for name in ("max_request_body", "max_ws_message", "max_connections", "ping_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (off/unlimited) or more, got {getattr(self, name)!r}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ValueError(
                f"root_path must start with '/' and not end with '/', got {self.root_path!r}"
            )
