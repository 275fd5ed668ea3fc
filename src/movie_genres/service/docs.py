"""``/docs`` (FastAPI's Swagger UI, with "Try it out") and ``/redoc``, served from local assets: never a CDN.

The Swagger UI and ReDoc bundles come from the pinned ``fastapi-offline`` package (its ``static/`` folder), mounted
at ``/docs-assets``; the pages are FastAPI's own ``get_swagger_ui_html`` / ``get_redoc_html`` pointing there. Each
page carries its own Content-Security-Policy: the service's (nothing but this origin) plus the sha256 of the page's
inline script and style blocks, and inline styles for ReDoc, whose bundle injects its stylesheets at run time.
"""
from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-assets"


def _hashes(html: str, tag: str) -> str:
    """CSP source expressions for each inline ``<tag>`` block of ``html``."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)


def _page(html: str, inline_styles: bool = False) -> HTMLResponse:
    style = "'unsafe-inline'" if inline_styles else _hashes(html, "style")
    csp = (f"default-src 'self'; script-src 'self' {_hashes(html, 'script')}; style-src 'self' {style}; img-src 'self' data: blob:; "
           "connect-src 'self'; font-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
    return HTMLResponse(html, headers={"content-security-policy": " ".join(csp.split()), "cache-control": "no-cache"})


def add_docs(app: FastAPI) -> None:
    """Mount the bundled assets and add ``/docs`` and ``/redoc`` (the app is made with ``docs_url=None, redoc_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        html = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API (Swagger UI)",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png", oauth2_redirect_url=None,
            swagger_ui_parameters={"validatorUrl": None, "tryItOutEnabled": True, "defaultModelsExpandDepth": 0},
        )
        return _page(html.body.decode())

    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        html = get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - API (ReDoc)",
                              redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js", redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                              with_google_fonts=False)
        return _page(html.body.decode(), inline_styles=True)

    app.add_api_route("/docs", swagger, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
