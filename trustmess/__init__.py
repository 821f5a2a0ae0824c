"""TrustMess: a self-hosted, WebSocket-first messaging backend."""

__version__ = "0.1.0"
