"""The API docs pages work offline (api/http/docs_pages.py): every script, style sheet and
icon they use is served by the service itself, without credentials, byte for byte the
vendored copy that api/http/docs_assets/MANIFEST.json names and sums."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from api.http.app import create_app
from api.runtime import Runtime
from api.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "api" / "http" / "docs_assets"
ASSETS_PATH = "/schema/assets/"
PAGES = ["/schema", "/schema/redoc", "/schema/swagger"]
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}


class References(HTMLParser):
    """Every ``src=`` and ``href=`` of a page, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value for name, value in attrs if name in ("src", "href") and value]


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    parser.close()
    return parser.found


def manifest() -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = json.loads((ASSETS / "MANIFEST.json").read_text())["files"]
    return files


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[Any]]:
    """The app on SQLite, and no credentials at all: the docs are open."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'taskexec.db'}", var_dir=tmp_path)
    runtime = Runtime.open(settings)
    try:
        with TestClient(create_app(runtime, None)) as test_client:
            assert "x-api-key" not in test_client.headers
            assert "authorization" not in test_client.headers
            yield test_client
    finally:
        runtime.close()  # the app's lifespan closed it already


@pytest.mark.parametrize("page", PAGES)
def test_a_page_uses_only_assets_the_service_serves(client: TestClient[Any], page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    found = references(response.text)
    assert f"{ASSETS_PATH}favicon.svg" in found
    assert any(ref.endswith(".js") for ref in found)
    for ref in found:
        assert not ref.startswith(("http://", "https://", "//")), ref
        assert ref.startswith(ASSETS_PATH), ref
        asset = client.get(ref)
        assert asset.status_code == 200, (ref, asset.text)
        assert CONTENT_TYPES[Path(ref).suffix] in asset.headers["content-type"], ref
        assert "immutable" in asset.headers["cache-control"]  # versioned folders
        assert asset.content == (ASSETS / ref.removeprefix(ASSETS_PATH)).read_bytes(), ref


@pytest.mark.parametrize("page", PAGES)
def test_a_page_names_no_other_host_and_embeds_the_document(
    client: TestClient[Any], page: str
) -> None:
    """Beyond src/href: no URL at all in the page once the embedded document is taken out
    (no Google fonts for Redoc, no CDN in an inline script)."""
    document = client.get("/schema/openapi.json")
    assert document.status_code == 200
    html = client.get(page).content
    assert document.content in html
    assert b"://" not in html.replace(document.content, b"")


def test_swagger_renders_the_embedded_document(client: TestClient[Any]) -> None:
    """Litestar's Swagger page hands the document itself to ``SwaggerUIBundle`` (``spec:``),
    so it needs no fetch; Redoc's gets it the same way through ``Redoc.init``."""
    document = client.get("/schema/openapi.json").content
    swagger = client.get("/schema/swagger").content
    assert re.search(rb"SwaggerUIBundle\(\{\s*spec:\s*" + re.escape(document), swagger)
    assert b"Redoc.init(" + document in client.get("/schema/redoc").content


def test_the_pages_use_every_vendored_script_and_style(client: TestClient[Any]) -> None:
    used = {
        ref.removeprefix(ASSETS_PATH) for page in PAGES for ref in references(client.get(page).text)
    }
    served = {entry["path"] for entry in manifest() if Path(entry["path"]).suffix in CONTENT_TYPES}
    assert used == served


@pytest.mark.parametrize("path", ["/schema/elements", "/schema/rapidoc", "/schema/nowhere"])
def test_pages_without_vendored_assets_are_404(client: TestClient[Any], path: str) -> None:
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    "path", ["/schema/openapi.json", "/schema/openapi.yaml", "/schema/openapi.yml"]
)
def test_the_document_is_served_in_each_form(client: TestClient[Any], path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert "openapi" in response.headers["content-type"]


def test_only_the_assets_folder_is_served(client: TestClient[Any]) -> None:
    assert client.get(f"{ASSETS_PATH}nowhere.js").status_code == 404
    assert client.get(f"{ASSETS_PATH}%2e%2e/docs_pages.py").status_code == 404


def test_each_vendored_file_matches_the_manifest() -> None:
    entries = manifest()
    on_disk = {
        str(path.relative_to(ASSETS))
        for path in ASSETS.rglob("*")
        if path.is_file() and path.name != "MANIFEST.json"
    }
    assert {entry["path"] for entry in entries} == on_disk
    for entry in entries:
        data = (ASSETS / entry["path"]).read_bytes()
        assert len(data) == entry["bytes"], entry["path"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
    assert not any(path.endswith(".map") for path in on_disk)  # no source maps


def test_every_asset_ships_with_the_package() -> None:
    """The package-data globs of ``api.http`` in pyproject.toml take in every file."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package = ASSETS.parent
    shipped = {
        path
        for pattern in setuptools["package-data"]["api.http"]
        for path in package.glob(pattern)
        if path.is_file()
    }
    assert shipped == {path for path in ASSETS.rglob("*") if path.is_file()}
