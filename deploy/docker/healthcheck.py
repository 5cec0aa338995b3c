"""The polyfuse image's HEALTHCHECK: exit 0 when the server's readiness route answers 200.

``/readyz`` answers 200 once the models are loaded and warmed up, 503 before (docs/serving.md).
The address is the one the server binds, from ``POLYFUSE_HOST`` and ``POLYFUSE_PORT`` (the
image sets 0.0.0.0 and 8000); a wildcard address is reached on loopback. Only the standard
library: the slim image has no curl, and the check must not import polyfuse (seconds).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

#: Addresses that mean "every interface": the check calls loopback instead.
WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})
#: The route that answers 200 once the service is ready.
READY_PATH = "/readyz"


def ready_url(environ: Mapping[str, str]) -> str:
    """The readiness URL of the server configured by ``environ``."""
    host = environ.get("POLYFUSE_HOST", "127.0.0.1").strip()
    if host in WILDCARDS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{environ.get('POLYFUSE_PORT', '8000').strip()}{READY_PATH}"


def main() -> int:
    """0 when ready, 1 otherwise (the reason on stderr, which ``docker inspect`` shows)."""
    url = ready_url(os.environ)
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"{url}: HTTP {status}", file=sys.stderr)
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
