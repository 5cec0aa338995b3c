"""The web page at ``/``: one input per modality of the served model, a Predict button
and the answer (label, probabilities, contributions, degradation, firewall findings).

The review page at ``/review`` lists the human-review queue (``GET /v1/review``), shows
an item's stored inputs and sends a reviewer's label to ``POST /v1/feedback``.

Plain HTML, CSS and JavaScript shipped as package data: no CDN, no fonts, no build
step, so the server works offline. The pages and their assets are public (they hold
no data); they call ``/v1/info``, ``/v1/predict`` and the review routes with the API
key typed into them, like any other client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import Response

#: Route -> (file in this package, media type).
ASSETS: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/web/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/web/style.css": ("style.css", "text/css; charset=utf-8"),
    "/review": ("review.html", "text/html; charset=utf-8"),
    "/web/review.js": ("review.js", "text/javascript; charset=utf-8"),
}
#: Paths served without an API key.
WEB_PATHS = frozenset(ASSETS)

_HEADERS = {
    # Only this server's own script, styles and API; previews are blob: URLs.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' blob: data:; media-src 'self' blob:; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def asset(name: str) -> bytes:
    """The bytes of a file of the page."""
    return resources.files(__name__).joinpath(name).read_bytes()


def add_web_routes(app: FastAPI) -> None:
    """``GET /`` (the page) and its script and style sheet."""
    for path, (name, media_type) in ASSETS.items():
        app.get(path, include_in_schema=False, name=f"web:{name}")(_handler(name, media_type))


def _handler(name: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def serve() -> Response:  # no parameters: nothing of the request picks the file
        return Response(asset(name), media_type=media_type, headers=_HEADERS)

    return serve
