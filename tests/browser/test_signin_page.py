"""The sign-in page in a real browser: a network that fails, and an email of several organizations."""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import PASSWORD

pytestmark = pytest.mark.worker

UNREACHABLE = "the server could not be reached"
OTHER_PASSWORD = "an0ther-s3cret"


def _fill(page, email: str, password: str = PASSWORD) -> None:
    page.fill("#email", email)
    page.fill("#password", password)


def _signed_out(desktop, page) -> None:
    """The sign-in page with no session: the dashboard left first (its scripts, renewing the session
    as they start, could set the cookie again after it is cleared), then the cookie cleared."""
    page.goto("about:blank")
    desktop.context.clear_cookies()
    page.goto("/signin")


@pytest.mark.parametrize("failure", ["offline", "aborted"])
def test_a_sign_in_the_network_fails_is_said_and_can_be_sent_again(desktop, demo, web_server, failure):
    desktop.allowed.append("net::ERR_")  # the browser logs the request that never got an answer
    page = desktop.page()
    page.goto("/signin")
    _fill(page, demo.users["viewer"]["email"])
    if failure == "offline":
        desktop.context.set_offline(True)
    else:
        page.route("**/web/session", lambda route: route.abort())
    page.click("button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert UNREACHABLE in page.inner_text("#error")
    assert page.is_enabled("button[type=submit]")
    if failure == "offline":
        desktop.context.set_offline(False)
    else:
        page.unroute("**/web/session")
    page.click("button[type=submit]")
    page.wait_for_url(f"{web_server.base_url}/")
    page.wait_for_selector("body[data-loaded]")
    # An email of one organization had no organization to give: none is remembered, no field shown.
    assert page.evaluate("localStorage.getItem('dashboard.signInOrganizations')") is None


def test_an_email_of_several_organizations_past_its_budget_gives_its_organization_and_is_remembered(
    desktop, fresh, make_live_tenant, web_server
):
    other = make_live_tenant("Browser Other")
    email = f"several-{fresh.org_id}@example.test"
    # Each organization's user has a password of their own: no sign-in is ever answered 409.
    for tenant, password in ((fresh, PASSWORD), (other, OTHER_PASSWORD)):
        body = {"email": email, "password": password, "role": "viewer"}
        status, created = web_server.request("POST", "/api/v1/users", tenant.users["admin"]["token"], body)
        assert status == 201, created
    # Sign-ins without org_id for such an email have a budget; spend it.
    for _ in range(10):
        status, answer = web_server.request(
            "POST", "/api/v1/auth/login", body={"email": email, "password": OTHER_PASSWORD}
        )
        if status == 429:
            break
        assert status == 200, answer
    assert status == 429, answer
    assert "without org_id" in answer["error"]["message"], answer
    desktop.allowed.append("status of 429")
    page = desktop.page()
    sent: list[dict] = []
    page.on(
        "request",
        lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/web/session") else None,
    )
    page.goto("/signin")
    assert page.is_hidden("#organization-number")
    _fill(page, email, OTHER_PASSWORD)
    page.click("button[type=submit]")
    # The page asks for the organization, in plain words, in a field of its own.
    page.wait_for_selector("#organization-number:not([hidden])")
    assert "give the organization id" in page.inner_text("#error")
    assert page.is_enabled("button[type=submit]")
    page.fill("#org_number", str(other.org_id))
    page.click("button[type=submit]")
    page.wait_for_url(f"{web_server.base_url}/")
    page.wait_for_selector("body[data-loaded]")
    assert sent[-1]["org_id"] == other.org_id

    # Signed out, the next sign-in of that email sends the organization remembered, at once.
    _signed_out(desktop, page)
    _fill(page, email, OTHER_PASSWORD)
    assert page.input_value("#org_number") == str(other.org_id)
    sent.clear()
    page.click("button[type=submit]")
    page.wait_for_url(f"{web_server.base_url}/")
    assert [body.get("org_id") for body in sent] == [other.org_id]
    # Only the organization id is kept, under a hash of the email: not the email itself.
    stored = page.evaluate("localStorage.getItem('dashboard.signInOrganizations')")
    assert email not in stored
    assert str(other.org_id) in stored

    # With the other organization's password, the remembered id is wrong: the 401 says in which
    # organization, forgets it, and leaves the field empty (sending no org_id).
    desktop.allowed.append("status of 401")
    _signed_out(desktop, page)
    _fill(page, email, PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#error:not([hidden])")
    assert f"organization #{other.org_id}" in page.inner_text("#error")
    assert page.input_value("#org_number") == ""
    assert page.evaluate("localStorage.getItem('dashboard.signInOrganizations')") == "{}"


def test_the_organization_picker_names_organizations_by_number(desktop, fresh, make_live_tenant, web_server):
    other = make_live_tenant("Browser Other")
    email = f"both-{fresh.org_id}@example.test"
    for tenant in (fresh, other):
        body = {"email": email, "password": PASSWORD, "role": "viewer"}
        status, created = web_server.request("POST", "/api/v1/users", tenant.users["admin"]["token"], body)
        assert status == 201, created
    desktop.allowed.append("status of 409")
    page = desktop.page()
    page.goto("/signin")
    _fill(page, email)
    page.click("button[type=submit]")
    page.wait_for_selector("#organization:not([hidden])")
    labels = page.eval_on_selector_all("#org_id option", "options => options.map(o => o.textContent)")
    assert labels == [f"organization #{i}" for i in sorted((fresh.org_id, other.org_id))]
    assert f"#{other.org_id}" in page.inner_text("#error")
