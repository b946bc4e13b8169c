"""Embed links: an admin signs a read-only view with locked filters; the link shows that and no more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from webapp.web import embed_links

BODY = {"view": "overview", "filters": {"priority": "high"}, "expires_in": 3600}


def _link(tenant, **overrides) -> str:
    response = tenant.admin.post("/api/v1/embed-tokens", json={**BODY, **overrides})
    assert response.status_code == 201, response.get_json()
    return urlsplit(response.get_json()["url"]).path


def _tickets(tenant, **counts: int) -> None:
    """`counts` tickets of each priority, created now (inside every default range)."""
    for priority, n in counts.items():
        for i in range(n):
            created = tenant.agent.post(
                "/api/v1/tickets", json={"subject": f"{priority} {i}", "priority": priority}
            )
            assert created.status_code == 201


def _expired_link(app, tenant, frame_ancestors=()) -> str:
    """An overview link of `tenant` signed by this server, expired a second ago."""
    with app.test_request_context():
        return embed_links.sign(
            embed_links.EmbedClaims(
                org_id=tenant.org_id,
                view="overview",
                metric=None,
                filters={},
                frame_ancestors=frame_ancestors,
                expires_at=datetime.now(UTC) - timedelta(seconds=1),
                maker_id=tenant.users["admin"]["id"],
            )
        )


def test_only_admins_make_links(tenant):
    for role in ("viewer", "agent"):
        assert tenant.apis[role].post("/api/v1/embed-tokens", json=BODY).status_code == 403
    response = tenant.admin.post(
        "/api/v1/embed-tokens", json={**BODY, "frame_ancestors": ["https://support.example.com"]}
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["url"].startswith("http://localhost/embed/")
    assert body["filters"] == {"priority": ["high"]}
    assert body["frame_ancestors"] == ["https://support.example.com"]
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(seconds=3590) < expires - datetime.now(UTC) <= timedelta(seconds=3600)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"view": "agents"}, "view"),
        ({"view": "time-series"}, "metric"),
        ({"metric": "ticket_count"}, "metric"),
        ({"filters": {"priority": "critical"}}, "priority"),
        ({"filters": {"team": "a"}}, "filters.team.[key]"),
        ({"expires_in": 10}, "expires_in"),
        ({"expires_in": 91 * 86400}, "expires_in"),
        ({"expires_in": "3600"}, "expires_in"),
        ({"frame_ancestors": ["https://ok.example/path"]}, "frame_ancestors.0"),
        ({"frame_ancestors": ["javascript:alert(1)"]}, "frame_ancestors.0"),
        ({"frame_ancestors": ["https://x.example; script-src *"]}, "frame_ancestors.0"),
        ({"frame_ancestors": ["https://a.example:99999"]}, "frame_ancestors.0"),
        ({"frame_ancestors": ["https://a.example:0"]}, "frame_ancestors.0"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_requests_are_400_naming_the_field(tenant, change, field):
    response = tenant.admin.post("/api/v1/embed-tokens", json={**BODY, **change})
    assert response.status_code == 400
    error = response.get_json()["error"]
    fields = [e["field"] for e in error["details"].get("errors", [])] + [error["details"].get("field")]
    assert field in fields, error


def test_the_page_is_framable_only_by_the_allowed_origins(client, tenant):
    path = _link(tenant, frame_ancestors=["https://support.example.com", "http://localhost:3000"])
    page = client.get(path)
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors https://support.example.com http://localhost:3000" in policy
    assert "script-src 'self'" in policy
    assert "X-Frame-Options" not in page.headers
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    own = client.get(_link(tenant))
    assert "frame-ancestors 'self'" in own.headers["Content-Security-Policy"]


def test_the_overview_shows_the_locked_filters_numbers(client, tenant, make_tenant):
    _tickets(tenant, high=3, low=2)
    other = make_tenant("Other")
    _tickets(other, high=4)
    path = _link(tenant)
    embedded = client.get(f"{path}/api/dashboard")
    assert embedded.status_code == 200
    body = embedded.get_json()
    assert body["filters"] == {"priority": ["high"]}
    assert body["kpis"]["ticket_count"]["value"] == 3
    assert sum(v["count"] for v in body["distributions"]["priority"]["values"]) == 3
    channel = client.get(f"{path}/api/distribution/channel").get_json()
    assert channel["total"] == 3
    series = client.get(f"{path}/api/time-series/ticket_count").get_json()
    assert sum(p["count"] for p in series["points"]) == 3
    # The API, asked the same with the filter, agrees.
    api = tenant.viewer.get("/api/v1/analytics/dashboard?period=30d&priority=high").get_json()
    assert api["kpis"] == body["kpis"]
    assert api["ticket_count_series"] == body["ticket_count_series"]


def test_filters_cannot_be_changed_nor_other_views_read(client, tenant):
    _tickets(tenant, high=1, low=5)
    path = _link(tenant)
    for url in (
        f"{path}?priority=low",
        f"{path}/api/dashboard?priority=low",
        f"{path}/api/dashboard?status=open",
        f"{path}/api/distribution/status?assigned_to=null",
        f"{path}/api/time-series/ticket_count?channel=email",
    ):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "locked" in response.get_json()["error"]["message"]
    assert client.get(f"{path}/api/dashboard").get_json()["kpis"]["ticket_count"]["value"] == 1
    # Only what the overview draws: no agents' names, no categories.
    for field in ("subject", "assigned_to", "category"):
        assert client.get(f"{path}/api/distribution/{field}").status_code == 403, field
    assert client.get(f"{path}/api/time-series/response_time").status_code == 403
    assert client.get(f"{path}/api/dashboard?start=2020-01-01").status_code == 400
    assert client.get(f"{path}/api/dashboard?period=1y").status_code == 400
    assert client.get(f"{path}/api/dashboard?period=7d&period=30d").status_code == 400
    # The page itself refuses what its reads would (it used to load, then every read failed).
    assert client.get(f"{path}?period=365d").status_code == 400
    assert client.get(f"{path}?period=90d").status_code == 200
    assert client.get(f"{path}/api/time-series/ticket_count?granularity=hourly").status_code == 400


def test_a_time_series_link_shows_its_metric_only(client, tenant):
    _tickets(tenant, urgent=2)
    path = _link(tenant, view="time-series", metric="ticket_count", filters={})
    weekly = client.get(f"{path}/api/time-series/ticket_count?granularity=weekly&period=7d")
    assert weekly.status_code == 200
    assert weekly.get_json()["granularity"] == "weekly"
    assert sum(p["count"] for p in weekly.get_json()["points"]) == 2
    for url in (
        f"{path}/api/time-series/response_time",
        f"{path}/api/dashboard",
        f"{path}/api/distribution/status",
    ):
        assert client.get(url).status_code == 403, url


def test_tampered_expired_and_foreign_tokens(client, tenant, app):
    path = _link(tenant)
    token = path.rsplit("/", 1)[1]
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert client.get(f"/embed/{tampered}").status_code == 403
    assert client.get(f"/embed/{tampered}/api/dashboard").status_code == 403
    assert client.get("/embed/not-a-token/api/dashboard").status_code == 403
    expired = _expired_link(app, tenant)
    with app.test_request_context():
        # Another kind of signed token of this server (an export link) is no embed link.
        from webapp.security import signing

        export_token = signing.sign("00000000-0000-0000-0000-000000000000", tenant.org_id, datetime.now(UTC))
    response = client.get(f"/embed/{expired}/api/dashboard")
    assert response.status_code == 410
    assert response.get_json()["error"]["code"] == "gone"
    assert client.get(f"/embed/{export_token}").status_code == 403


def test_a_browser_opening_a_dead_link_gets_a_page_saying_why(client, app, tenant):
    """In an iframe a JSON error would show as raw text: a browser (asking for HTML first) gets a page
    with the same status and message, framable where the link allowed; other clients keep the JSON."""
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    expired = _expired_link(app, tenant, frame_ancestors=("https://intranet.example",))
    page = client.get(f"/embed/{expired}", headers=browser)
    assert page.status_code == 410
    assert page.mimetype == "text/html"
    assert "has expired" in page.get_data(as_text=True)
    assert "frame-ancestors https://intranet.example" in page.headers["Content-Security-Policy"]
    assert "<script" not in page.get_data(as_text=True)
    bad = client.get("/embed/not-a-token", headers=browser)
    assert bad.status_code == 403
    assert bad.mimetype == "text/html"
    assert "frame-ancestors 'self'" in bad.headers["Content-Security-Policy"]
    assert page.headers["Vary"] == "Accept"
    for accept in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        answer = client.get(f"/embed/{expired}", headers=accept)
        assert answer.status_code == 410
        assert answer.get_json()["error"]["code"] == "gone"
        assert (answer.headers["Vary"], answer.headers["Cache-Control"]) == ("Accept", "no-store")


def test_a_link_works_while_its_maker_is_an_enabled_admin(client, tenant, db_session):
    """A link is its maker's grant: deleting the admin who made it (or disabling or demoting them)
    withdraws it at once, as it does their tokens; made again an admin, their links work again."""
    from webapp.models import User

    maker = db_session.get(User, tenant.users["admin"]["id"])
    path = _link(tenant)
    assert client.get(f"{path}/api/dashboard").status_code == 200
    for change in ({"role": "agent"}, {"disabled_at": datetime.now(UTC)}):
        for name, value in change.items():
            setattr(maker, name, value)
        db_session.flush()
        withdrawn = client.get(f"{path}/api/dashboard")
        assert withdrawn.status_code == 410, withdrawn.get_json()
        assert "withdrawn" in withdrawn.get_json()["error"]["message"]
        assert client.get(path).status_code == 410
        maker.role, maker.disabled_at = "admin", None
        db_session.flush()
        assert client.get(f"{path}/api/dashboard").status_code == 200
    db_session.delete(maker)
    db_session.flush()
    assert client.get(f"{path}/api/dashboard").status_code == 410


def test_a_link_naming_no_maker_is_refused(client, app, tenant):
    """Links signed before they named their maker could never be withdrawn: refused, 410."""
    with app.test_request_context():
        token = embed_links.sign(
            embed_links.EmbedClaims(
                org_id=tenant.org_id,
                view="overview",
                metric=None,
                filters={},
                frame_ancestors=(),
                expires_at=datetime.now(UTC) + timedelta(hours=1),
            )
        )
    answer = client.get(f"/embed/{token}/api/dashboard")
    assert answer.status_code == 410
    assert "withdrawn" in answer.get_json()["error"]["message"]
