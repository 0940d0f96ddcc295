"""What the browser pages (payout's adjuster console, every service's operators' page) share:
their security headers, and the script and styles each loads before its own
(`page_assets/common.js`, `common.css`), served under each page's own path."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files

from fastapi.responses import Response

from shared.problems import NotFound

PAGE_HEADERS = {
    "Cache-Control": "no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; connect-src 'self'; form-action 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}
"""A page that holds a token: never framed (clickjacking), never cached, running no script but
its own, from the installed package (the CSP admits nothing else; API calls to its origin)."""

COMMON_ASSETS = {"common.js": "text/javascript", "common.css": "text/css"}
ASSET_PATTERN = r"^[a-z]+\.[a-z]+$"


def page_asset(name: str, package: str, folder: str, own: Mapping[str, str]) -> Response:
    """`name` from the shared assets or from the page's own (`own`: name → media type, kept in
    `folder` of `package`); 404 for anything else."""
    if name in COMMON_ASSETS:
        package, folder, media_type = "shared", "page_assets", COMMON_ASSETS[name]
    elif name in own:
        media_type = own[name]
    else:
        raise NotFound(f"no page asset {name}")
    return Response(read_page_file(package, f"{folder}/{name}"), media_type=media_type,
                    headers=PAGE_HEADERS)


def read_page_file(package: str, path: str) -> str:
    return files(package).joinpath(path).read_text(encoding="utf-8")
