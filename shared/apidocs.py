"""Every service's API documentation page (`/docs`), whole without the internet.

FastAPI's own page loads Swagger UI from a CDN, so it renders blank on the closed networks
insurers often run. This page takes Swagger UI's files from the installed `fastapi-offline`
package instead (its files only: its own pages start Swagger UI with an inline script), and
starts it with a script of its own, so the page keeps a strict Content-Security-Policy.
"""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from shared.problems import NotFound

DOCS_PATH = "/docs"
# The page's own start-up script: reads where the OpenAPI document is from the page itself.
START_SCRIPT = """\
window.addEventListener("load", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapi,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
  });
});
"""
START_SCRIPT_NAME = "start.js"
# The files the page loads: Swagger UI's (from the package) and its start-up script.
ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon.png": "image/png",
    START_SCRIPT_NAME: "text/javascript",
}
DOCS_HEADERS = {
    "X-Frame-Options": "DENY",
    # Swagger UI sets style attributes and draws its icons from data: URLs; it fetches the
    # OpenAPI document and, with "Try it out", this service's API.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; "
                               "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}
PAGE = """\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}/favicon.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/{start}"></script>
</body>
</html>
"""


def install_api_docs(app: FastAPI) -> None:
    """Serve `/docs` and its files on `app` (built with `docs_url=None, redoc_url=None`)."""

    @app.get(DOCS_PATH, include_in_schema=False)
    async def api_docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = PAGE.format(title=escape(f"{app.title} API"), assets=f"{root}{DOCS_PATH}/assets",
                           openapi=escape(f"{root}{app.openapi_url}"), start=START_SCRIPT_NAME)
        return HTMLResponse(page, headers=DOCS_HEADERS)

    @app.get(f"{DOCS_PATH}/assets/{{file}}", include_in_schema=False)
    async def api_docs_asset(file: str) -> Response:
        if file not in ASSETS:
            raise NotFound(f"no documentation asset {file}")
        return Response(_asset(file), media_type=ASSETS[file],
                        headers={**DOCS_HEADERS, "Cache-Control": "public, max-age=3600"})


@cache
def _asset(name: str) -> bytes:
    """One file, read once: the package's files do not change while the process runs."""
    if name == START_SCRIPT_NAME:
        return START_SCRIPT.encode()
    return files("fastapi_offline").joinpath("static", name).read_bytes()
