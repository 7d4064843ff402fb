"""The API docs pages (``/schema``), served without any CDN so they work offline.

Litestar's default pages load their scripts, styles and favicon from public CDNs (Redoc
as the unpinned ``latest``); without internet they render blank. Here the same pages
(Redoc at ``/schema`` and ``/schema/redoc``, Swagger UI at ``/schema/swagger``, the
document at ``/schema/openapi.json`` and ``.yaml``/``.yml``) point at pinned copies
vendored in ``docs_assets/`` (its MANIFEST.json: npm package, version, sha256 of each
file) and served by this service under ``/schema/assets/``. The Elements and RapiDoc pages
are dropped (they would need more vendored assets): their paths answer 404. The gate lets
``/schema/...`` through without credentials (api/security/gate.py).
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.static_files import create_static_files_router

ASSETS_DIR = Path(__file__).parent / "docs_assets"  # package data (pyproject.toml)
ASSETS_PATH = "/schema/assets"
# The vendored packages' folders carry their versions, so a served file's content never
# changes under its URL: it may be cached for good. (A changed favicon needs a new name.)
REDOC = f"{ASSETS_PATH}/redoc-2.5.4"
SWAGGER = f"{ASSETS_PATH}/swagger-ui-dist-5.18.2"
FAVICON = f'<link rel="icon" type="image/svg+xml" href="{ASSETS_PATH}/favicon.svg">'
ONE_YEAR = 365 * 24 * 3600


def docs_plugins() -> list[OpenAPIRenderPlugin]:
    """The render plugins of ``OpenAPIConfig``: Redoc first (so it is also ``/schema``)."""
    return [
        # google_fonts=False: no <link> to fonts.googleapis.com; Redoc falls back to the
        # browser's fonts.
        RedocRenderPlugin(
            js_url=f"{REDOC}/redoc.standalone.js",
            google_fonts=False,
            path="/redoc",
            favicon=FAVICON,
        ),
        SwaggerRenderPlugin(
            js_url=f"{SWAGGER}/swagger-ui-bundle.js",
            css_url=f"{SWAGGER}/swagger-ui.css",
            standalone_preset_js_url=f"{SWAGGER}/swagger-ui-standalone-preset.js",
            path="/swagger",
            favicon=FAVICON,
        ),
        JsonRenderPlugin(path="/openapi.json"),
        # Litestar's plugins module imports PyYAML itself, and it is a dependency.
        YamlRenderPlugin(path=("/openapi.yaml", "/openapi.yml")),
    ]


def docs_assets_router() -> Router:
    """``/schema/assets/...``: the vendored files, long-cached, out of the OpenAPI document."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[ASSETS_DIR],
        name="docs_assets",
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=ONE_YEAR, public=True, immutable=True),
    )
