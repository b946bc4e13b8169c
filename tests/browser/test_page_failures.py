"""A page whose start fails (the API document unavailable, the API out of reach) says so in words
instead of staying blank, and raises nothing uncaught."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Watched
from tests.conftest import Tenant


@pytest.mark.parametrize("path", ["/", "/explorer", "/agents", "/alerts"])
def test_a_page_whose_api_document_does_not_load_says_so(desktop: Watched, demo: Tenant, path: str):
    desktop.sign_in(demo.users["admin"]["email"])
    desktop.allowed.append("status of 503")
    page = desktop.page()
    unavailable = {"error": {"code": "service_unavailable", "message": "down", "details": {}}}
    page.route(
        "**/api/v1/openapi.json",
        lambda route: route.fulfill(status=503, json=unavailable, headers={"Retry-After": "5"}),
    )
    page.goto(path)
    page.wait_for_selector("#error:not([hidden])")
    page.wait_for_function("() => document.querySelector('#error').textContent.includes('(503)')")
    assert "the API document did not load (503)" in page.inner_text("#error")


def test_a_session_that_ends_under_an_open_page_is_said_on_the_sign_in_page(desktop: Watched, demo: Tenant):
    desktop.sign_in(demo.users["viewer"]["email"])
    desktop.allowed.append("status of 401")
    page = desktop.page()
    query = "/explorer?metric=ticket_count&granularity=daily&start=2026-11-01&end=2026-11-10"
    page.goto(query)
    page.wait_for_selector("body[data-loaded]")
    # The access token is refused and the session cannot be renewed any more (the user was disabled,
    # the refresh token revoked): the next request sends the reader to sign in, saying why.
    expired = {"error": {"code": "token_expired", "message": "token has expired", "details": {}}}
    gone = {"error": {"code": "unauthorized", "message": "token has been revoked", "details": {}}}
    page.route("**/api/v1/analytics/**", lambda route: route.fulfill(status=401, json=expired))
    page.route("**/web/session/refresh", lambda route: route.fulfill(status=401, json=gone))
    page.fill("input[name=start]", "2026-11-03")
    page.dispatch_event("input[name=start]", "change")
    # (Both the request and the live socket may send it there: the first navigation can be superseded.)
    page.wait_for_selector("#session-ended:not([hidden])", timeout=20_000)
    assert "ended=1" in page.url
    assert "next=%2Fexplorer" in page.url
    assert "Your session has ended" in page.inner_text("#session-ended")
    # A first visit to the sign-in page says nothing of the kind.
    page.goto("/signin")
    page.wait_for_selector("#signin")
    assert page.is_hidden("#session-ended")
