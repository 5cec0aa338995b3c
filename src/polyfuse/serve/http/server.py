"""Running the app: the port checked before anything loads, then uvicorn.

`polyfuse serve` calls `check_port` right after its settings are checked, so a busy port
fails in a second instead of after the model has loaded and tuned, and `run` to serve.
"""

from __future__ import annotations

import socket
from typing import Any

from polyfuse.core.errors import ConfigError


def check_port(host: str, port: int) -> None:
    """Raise `ConfigError` naming --port when ``host:port`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                "--port",
                f"cannot listen on {host}:{port} ({exc.strerror})",
                hint="another process holds it: stop it or pass a free --port",
            ) from None


def run(app: Any, host: str, port: int, *, log_level: str) -> None:
    """Serve ``app`` with uvicorn until interrupted (access log off: see --request-log)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
