"""The browser's session: refresh token in an HttpOnly cookie, access token in the answer, CSRF refused."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest

CSRF = {"X-Requested-With": "dashboard"}


def _set_cookies(response) -> dict[str, SimpleCookie]:
    """Each Set-Cookie header of the response, by cookie name."""
    out = {}
    for header in response.headers.getlist("Set-Cookie"):
        cookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            out[name] = cookie[name]
    return out


def _sign_in(client, tenant, role="viewer", **kw):
    user = tenant.users[role]
    return client.post(
        "/web/session", json={"email": user["email"], "password": user["password"]}, headers=CSRF, **kw
    )


def test_sign_in_sets_an_http_only_strict_cookie_and_answers_an_access_token(client, tenant):
    response = _sign_in(client, tenant)
    assert response.status_code == 200
    body = response.get_json()
    assert "refresh_token" not in body
    assert body["user"] == {
        "id": tenant.users["viewer"]["id"],
        "email": tenant.users["viewer"]["email"],
        "role": "viewer",
        "org_id": tenant.org_id,
        "timezone": tenant.timezone,
    }
    cookies = _set_cookies(response)
    refresh = cookies["dashboard_refresh"]
    assert refresh["httponly"] is True
    assert refresh["samesite"] == "Strict"
    assert refresh["path"] == "/web/session"
    assert not refresh["secure"]  # plain HTTP here; see the HTTPS test
    # The hint cookie carries no credential: the refresh token is nowhere else.
    assert cookies["dashboard_session"].value == "1"
    assert refresh.value not in str(body)
    me = client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200


def test_the_cookie_is_secure_over_https(client, tenant):
    response = _sign_in(client, tenant, base_url="https://localhost")
    assert response.status_code == 200
    cookies = _set_cookies(response)
    assert cookies["dashboard_refresh"]["secure"] is True
    assert cookies["dashboard_session"]["secure"] is True


def test_wrong_password_is_401_and_sets_nothing(client, tenant):
    response = client.post(
        "/web/session",
        json={"email": tenant.users["admin"]["email"], "password": "not-the-password"},
        headers=CSRF,
    )
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("path", ["/web/session", "/web/session/refresh", "/web/session/logout"])
def test_calls_without_the_custom_header_or_from_another_origin_are_refused(client, tenant, path):
    assert _sign_in(client, tenant).status_code == 200
    bare = client.post(path, json={"email": "x@y.z", "password": "p"})
    assert bare.status_code == 403
    assert "X-Requested-With" in bare.get_json()["error"]["message"]
    foreign = client.post(path, json={}, headers={**CSRF, "Origin": "https://evil.example"})
    assert foreign.status_code == 403
    # The session survived both.
    assert client.post("/web/session/refresh", headers=CSRF).status_code == 200


def test_refresh_exchanges_the_cookie_for_a_new_access_token(client, tenant):
    first = _sign_in(client, tenant, role="agent").get_json()
    again = client.post("/web/session/refresh", headers=CSRF)
    assert again.status_code == 200
    token = again.get_json()["access_token"]
    assert token != first["access_token"]
    created = client.post(
        "/api/v1/tickets", json={"subject": "from the page"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 201


def test_two_tabs_refreshing_with_one_cookie_get_the_same_next_cookie(client, tenant):
    signed_in = _set_cookies(_sign_in(client, tenant))["dashboard_refresh"].value
    first = client.post("/web/session/refresh", headers=CSRF)
    # The second tab still sends the cookie the first tab's refresh used up (within the grace).
    client.set_cookie("dashboard_refresh", signed_in, path="/web/session")
    second = client.post("/web/session/refresh", headers=CSRF)
    assert (first.status_code, second.status_code) == (200, 200)
    rotated = [_set_cookies(r)["dashboard_refresh"].value for r in (first, second)]
    assert rotated[0] == rotated[1] != signed_in


def test_refresh_without_a_session_is_401_and_clears_the_cookies(client):
    response = client.post("/web/session/refresh", headers=CSRF)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    cookies = _set_cookies(response)
    assert cookies["dashboard_refresh"]["max-age"] == "0"
    assert cookies["dashboard_session"]["max-age"] == "0"


def test_an_access_token_in_the_cookie_does_not_refresh(client, tenant):
    client.set_cookie("dashboard_refresh", tenant.users["admin"]["token"], path="/web/session")
    assert client.post("/web/session/refresh", headers=CSRF).status_code == 401


def test_logout_revokes_both_tokens_and_drops_the_cookie(client, tenant):
    signed_in = _sign_in(client, tenant)
    refresh_token = _set_cookies(signed_in)["dashboard_refresh"].value
    access = signed_in.get_json()["access_token"]
    out = client.post("/web/session/logout", headers={**CSRF, "Authorization": f"Bearer {access}"})
    assert out.status_code == 200
    assert sorted(out.get_json()["revoked"]) == ["access", "refresh"]
    assert _set_cookies(out)["dashboard_refresh"]["max-age"] == "0"
    assert client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {access}"}).status_code == 401
    # The old cookie, replayed, no longer works.
    client.set_cookie("dashboard_refresh", refresh_token, path="/web/session")
    assert client.post("/web/session/refresh", headers=CSRF).status_code == 401


def test_bad_bodies_are_clear_4xx(client):
    assert client.post("/web/session", data="x", headers=CSRF).status_code == 415
    assert client.post("/web/session", json={"email": "a@b.c"}, headers=CSRF).status_code == 400
    big = client.post("/web/session", json={"email": "a@b.c", "password": "p" * 5000}, headers=CSRF)
    assert big.status_code == 413
    assert big.get_json()["error"]["code"] == "payload_too_large"
