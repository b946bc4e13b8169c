"""The dashboard's pages and static files over HTTP: security headers, hashed names, cache headers."""

from __future__ import annotations

import gzip
import hashlib
import posixpath
import re
from html.parser import HTMLParser

import pytest

from webapp.web.assets import STATIC, AssetError, Manifest

PAGES = ["/", "/explorer", "/agents", "/alerts", "/signin", "/api/v1/docs"]


class _Page(HTMLParser):
    """What a page loads, and any inline script or style it holds."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if "style" in named or any(name.startswith("on") for name in named):
            self.inline.append(f"{tag} with inline style or handler")
        if tag == "style":
            self.inline.append("style element")
        if tag == "script":
            if named.get("src"):
                self.urls.append(named["src"] or "")
            else:
                self.inline.append("inline script")
        if tag == "link" and named.get("href"):
            self.urls.append(named["href"] or "")


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


@pytest.mark.parametrize("path", PAGES)
def test_pages_have_a_strict_policy_and_are_not_cached(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy = dict(
        part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "ws://localhost" in policy["connect-src"]
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = _parse(response.get_data(as_text=True))
    assert page.inline == []
    assert page.urls, "the page loads its scripts and styles from files"


def test_a_host_header_cannot_add_a_directive(client):
    response = client.get("/", headers={"Host": "evil; script-src *"})
    policy = response.headers["Content-Security-Policy"]
    assert "script-src *" not in policy
    assert "script-src 'self'" in policy


def _fetch_asset(client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200, url
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    return response.get_data()


def test_every_asset_a_page_loads_is_named_by_its_content(client):
    seen = set()
    queue = []
    for path in PAGES:
        queue += _parse(client.get(path).get_data(as_text=True)).urls
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        body = _fetch_asset(client, url)
        name = url.rsplit("/", 1)[1]
        digest = re.search(r"\.([0-9a-f]{12})\.\w+$", name)
        assert digest is not None, url
        assert hashlib.sha256(body).hexdigest()[:12] == digest[1], url
        if url.endswith(".js") and "/vendor/" not in url:
            # Relative imports point at hashed names too, resolved against the importing file.
            for specifier in re.findall(r"""from\s*["'](\.{1,2}/[^"']+)["']""", body.decode()):
                queue.append(posixpath.normpath(posixpath.join(posixpath.dirname(url), specifier)))
    assert any("/vendor/uplot/" in url for url in seen)
    assert any("/vendor/swagger-ui/" in url for url in seen)
    assert sum(url.endswith(".js") for url in seen) >= 10


def test_an_unknown_or_stale_asset_name_is_a_json_404(client):
    html = client.get("/").get_data(as_text=True)
    css = next(url for url in _parse(html).urls if url.endswith(".css") and "app." in url)
    stale = re.sub(r"\.[0-9a-f]{12}\.css$", ".000000000000.css", css)
    for url in (stale, "/assets/css/app.css", "/assets/../config.py", "/assets/vendor/uplot/LICENSE"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.get_json()["error"]["code"] == "not_found"


def test_assets_are_gzipped_for_clients_that_accept_it(client):
    html = client.get("/api/v1/docs").get_data(as_text=True)
    bundle = next(url for url in _parse(html).urls if "swagger-ui-bundle" in url)
    plain = client.get(bundle).get_data()
    packed = client.get(bundle, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert packed.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(packed.get_data()) == plain
    assert len(packed.get_data()) < len(plain) / 2


def test_vendored_libraries_ship_with_their_licence_and_version():
    for library in ("uplot", "swagger-ui"):
        folder = STATIC / "vendor" / library
        assert (folder / "LICENSE").stat().st_size > 500
        assert re.search(r"\d+\.\d+\.\d+", (folder / "VERSION").read_text())


def test_a_module_change_renames_the_modules_that_import_it(tmp_path):
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "a.js").write_text("export const a = 1;\n")
    (tmp_path / "js" / "b.js").write_text('import { a } from "./a.js";\nexport const b = a;\n')
    before = Manifest(tmp_path)
    (tmp_path / "js" / "a.js").write_text("export const a = 2;\n")
    after = Manifest(tmp_path)
    assert before.by_path["js/a.js"].hashed != after.by_path["js/a.js"].hashed
    assert before.by_path["js/b.js"].hashed != after.by_path["js/b.js"].hashed
    assert after.by_path["js/a.js"].hashed.split("/")[1] in after.by_path["js/b.js"].body.decode()


def test_an_import_cycle_or_a_missing_module_fails_at_startup(tmp_path):
    (tmp_path / "a.js").write_text('import "./b.js";\n')
    (tmp_path / "b.js").write_text('import "./a.js";\n')
    with pytest.raises(AssetError, match="cycle"):
        Manifest(tmp_path)
    (tmp_path / "b.js").write_text('import "./c.js";\n')
    with pytest.raises(AssetError, match=r"c\.js"):
        Manifest(tmp_path)


def test_the_api_document_is_revalidated_with_its_etag(client):
    first = client.get("/api/v1/openapi.json")
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "no-cache"
    again = client.get("/api/v1/openapi.json", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert first.get_json()["paths"]["/api/v1/embed-tokens"]["post"]["security"] == [{"bearerAuth": []}]


# What a browser's navigation sends (Chromium's Accept for a page).
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.mark.parametrize("path", ["/nope", "/explorer/zzz"])
def test_an_unknown_page_is_an_html_404_for_a_browser_and_json_for_other_clients(client, path):
    page = client.get(path, headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 404
    assert page.mimetype == "text/html"
    assert page.headers["Vary"] == "Accept"
    assert page.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    text = page.get_data(as_text=True)
    assert "Page not found" in text
    assert f"There is no page at <code>{path}</code>" in text
    assert '<a href="/">Go to the overview</a>' in text
    parsed = _parse(text)
    assert not parsed.inline
    # It names its icon (no request for /favicon.ico) and loads only hashed files that exist.
    assert any("favicon" in url for url in parsed.urls)
    for url in parsed.urls:
        assert client.get(url).status_code == 200, url
    # curl's default (*/*), a client asking for JSON, and no Accept at all: the API's JSON 404.
    for accept in ("*/*", "application/json", None):
        answer = client.get(path, headers={"Accept": accept} if accept else {})
        assert answer.status_code == 404
        assert answer.mimetype == "application/json"
        assert answer.get_json()["error"]["code"] == "not_found"
        assert answer.headers["Vary"] == "Accept"


def test_an_unknown_api_path_is_json_even_for_a_browser(client):
    for accept in (BROWSER_ACCEPT, "*/*"):
        answer = client.get("/api/v1/nope", headers={"Accept": accept})
        assert answer.status_code == 404
        assert answer.mimetype == "application/json"
        assert answer.get_json()["error"]["code"] == "not_found"
