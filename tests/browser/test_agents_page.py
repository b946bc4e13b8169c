"""The agents page in a real browser: a server without the agents report gets a clear "not available"
state, whether its API document leaves the report out or the report's route answers 404."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Route

from tests.browser.conftest import Watched
from tests.conftest import Tenant

pytestmark = pytest.mark.worker

REPORT = "/api/v1/analytics/agents"


def _document(route: Route, *, with_report: bool) -> None:
    """The server's own API document, with or without the agents report."""
    document = route.fetch().json()
    if with_report:
        document["paths"].setdefault(REPORT, {"get": {"parameters": [], "responses": {}}})
    else:
        document["paths"].pop(REPORT, None)
    route.fulfill(json=document)


def _agents(watched: Watched, tenant: Tenant, *, with_report: bool) -> tuple[Page, list[str]]:
    watched.sign_in(tenant.users["viewer"]["email"])
    page = watched.page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if REPORT in request.url else None)
    page.route("**/api/v1/openapi.json", lambda route: _document(route, with_report=with_report))
    return page, asked


def test_without_the_report_in_the_api_document_the_page_says_it_is_not_available(desktop, fresh):
    page, asked = _agents(desktop, fresh, with_report=False)
    page.goto("/agents")
    page.wait_for_selector("body[data-loaded]")
    assert page.is_visible("#unavailable")
    assert "not available" in page.inner_text("#unavailable")
    assert page.is_hidden("#agents")
    assert asked == [], "nothing asked of a route the API does not have"


def test_a_report_answering_404_shows_not_available(desktop, fresh, web_server):
    page, asked = _agents(desktop, fresh, with_report=True)
    # The server's real answer for a route it does not have.
    page.route(
        f"**{REPORT}?*",
        lambda route: route.continue_(url=f"{web_server.base_url}/api/v1/analytics/no-such-report"),
    )
    desktop.allowed.append("status of 404")
    page.goto("/agents")
    page.wait_for_selector("body[data-loaded]")
    assert len(asked) == 1
    assert page.is_visible("#unavailable")
    assert page.is_hidden("#agents")
    assert page.is_hidden("#error")
