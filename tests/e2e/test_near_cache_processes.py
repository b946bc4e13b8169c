"""Near caches in several gunicorn worker processes: a change made through one process is seen by the
next request to any of them, a logout is refused by all of them at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.worker

SERIES = "/api/v1/analytics/time-series/ticket_count?granularity=daily&start={start}&end={end}"


def _path() -> str:
    today = datetime.now(UTC).date()
    return SERIES.format(start=today - timedelta(days=2), end=today + timedelta(days=2))


def _total(web, token: str, path: str) -> tuple[int, str]:
    # urllib opens a new connection per request, so requests spread over both worker processes.
    status, body = web.request("GET", path, token)
    assert status == 200, body
    return body["summary"]["total_count"], body["meta"]["cache"]


def test_every_process_sees_a_change_made_through_another(web_server, make_live_tenant):
    tenant = make_live_tenant("NearProcesses")
    viewer, agent = tenant.users["viewer"]["token"], tenant.users["agent"]["token"]
    path = _path()
    for _ in range(30):  # both processes copy the generations and the answer
        total, _ = _total(web_server, viewer, path)
    assert total == 0
    hits = 0
    for n in range(1, 11):
        status, body = web_server.request("POST", "/api/v1/tickets", agent, {"subject": f"t{n}"})
        assert status == 201, body
        answers = [_total(web_server, viewer, path) for _ in range(8)]
        assert [count for count, _ in answers] == [n] * 8
        hits += sum(verdict == "hit" for _, verdict in answers)
    assert hits >= 40  # most of them from a cache, none of them stale


def test_every_process_refuses_a_token_once_logged_out(web_server, make_live_tenant):
    tenant = make_live_tenant("NearLogout")
    user = tenant.users["viewer"]
    status, tokens = web_server.request(
        "POST", "/api/v1/auth/login", body={"email": user["email"], "password": user["password"]}
    )
    assert status == 200
    token = tokens["access_token"]
    path = _path()
    for _ in range(20):
        _total(web_server, token, path)
    status, _ = web_server.request("POST", "/api/v1/auth/logout", token)
    assert status == 200
    statuses = [web_server.request("GET", path, token)[0] for _ in range(20)]
    assert statuses == [401] * 20
    # The organization's other tokens read on.
    assert _total(web_server, tenant.users["agent"]["token"], path)[0] == 0
