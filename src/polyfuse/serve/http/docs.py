"""``/docs`` (Swagger UI) and ``/redoc`` served with their scripts and styles from the
package, so the API docs render offline (FastAPI's defaults load them from a CDN).

The assets come from `fastapi-offline` (MIT), a dependency of the ``serve`` extra; only
its static files are used.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

_PREFIX = "/docs/assets/"
#: asset file name -> media type
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
}
#: Paths the docs need, public like the docs themselves.
DOCS_PATHS = frozenset(_PREFIX + name for name in _ASSETS)


def _asset(name: str) -> bytes:
    return (importlib.resources.files("fastapi_offline") / "static" / name).read_bytes()


def add_docs_routes(app: FastAPI) -> None:
    """``/docs``, ``/redoc`` and their assets on ``app`` (created with ``docs_url=None,
    redoc_url=None``)."""
    title = f"{app.title} API"

    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=title,
            swagger_js_url=_PREFIX + "swagger-ui-bundle.js",
            swagger_css_url=_PREFIX + "swagger-ui.css",
            swagger_favicon_url="data:,",
        )

    async def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url="/openapi.json",
            title=title,
            redoc_js_url=_PREFIX + "redoc.standalone.js",
            redoc_favicon_url="data:,",
            with_google_fonts=False,
        )
        # ReDoc's sidebar shows a "powered by" logo from cdn.redoc.ly: images stay local
        page.headers["Content-Security-Policy"] = "img-src 'self' data:"
        return page

    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
    for name, media_type in _ASSETS.items():
        app.add_api_route(
            _PREFIX + name, _asset_route(name, media_type), methods=["GET"], include_in_schema=False
        )


def _asset_route(name: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def asset() -> Response:
        headers = {"Cache-Control": "public, max-age=86400"}
        return Response(_asset(name), media_type=media_type, headers=headers)

    return asset


__all__ = ["DOCS_PATHS", "add_docs_routes"]
