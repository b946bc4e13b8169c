"""Token checks on analytics reads, where a verified token is remembered per process and its
revocation mark and budget may be known without asking Redis: every check must still hold, before
the view, whether the answer comes from the near cache or from a lookup in Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import jwt as pyjwt
import pytest

from tests.conftest import JWT_SECRET, Api, wait_redis
from tests.integration.redis_monitor import Monitor, lookups, warm

SERIES = "/api/v1/analytics/time-series/ticket_count?granularity=daily&start=2026-01-01&end=2026-01-08"
BAD_SERIES = "/api/v1/analytics/time-series/ticket_count?granularity=fortnightly"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _login(client, user) -> dict:
    response = client.post("/api/v1/auth/login", json={"email": user["email"], "password": user["password"]})
    assert response.status_code == 200
    return response.get_json()


def _get(client, token: str, path: str = SERIES):
    return client.get(path, headers=_bearer(token))


def _token(tenant, role: str, *, expires_in: float) -> str:
    now = time.time()
    claims = {
        "sub": str(tenant.users[role]["id"]),
        "org_id": tenant.org_id,
        "role": role,
        "type": "access",
        "jti": uuid.uuid4().hex,
        "fresh": False,
        "iat": int(now),
        "exp": int(now + expires_in),
    }
    return pyjwt.encode(claims, JWT_SECRET, algorithm="HS256")


def test_a_hit_answers_what_the_miss_answered(client, tenant):
    token = tenant.users["viewer"]["token"]
    miss, hit = _get(client, token), _get(client, token)
    assert miss.status_code == hit.status_code == 200
    first, second = miss.get_json(), hit.get_json()
    assert (first["meta"]["cache"], second["meta"]["cache"]) == ("miss", "hit")
    assert first["meta"]["computed_at"] == second["meta"]["computed_at"]
    for body in (first, second):
        del body["meta"]["cache"]
    assert first == second
    assert hit.mimetype == "application/json"
    # Every bucket of the week is there, in order, once.
    assert [p["bucket"][:10] for p in second["points"]] == [f"2026-01-0{d}" for d in range(1, 8)]


def test_a_remembered_token_is_refused_once_revoked(client, tenant):
    tokens = _login(client, tenant.users["viewer"])
    access = tokens["access_token"]
    assert _get(client, access).status_code == 200  # verified and remembered
    assert _get(client, access).status_code == 200  # from memory, checks with the lookup
    assert client.post("/api/v1/auth/logout", headers=_bearer(access)).status_code == 200

    refused = _get(client, access)
    assert refused.status_code == 401
    assert refused.get_json()["error"]["message"] == "token has been revoked"
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    # A request the view would refuse as bad input is refused for the token first.
    assert _get(client, access, BAD_SERIES).status_code == 401
    # Other tokens of the organization read on.
    assert _get(client, tenant.users["viewer"]["token"]).status_code == 200


def test_a_remembered_token_expires(client, tenant):
    token = _token(tenant, "viewer", expires_in=2)
    assert _get(client, token).status_code == 200
    assert _get(client, token).status_code == 200
    time.sleep(max(0.0, pyjwt.decode(token, options={"verify_signature": False})["exp"] - time.time()) + 0.1)
    refused = _get(client, token)
    assert refused.status_code == 401
    assert "expired" in refused.get_json()["error"]["message"]


def test_bad_input_from_a_remembered_token_is_a_400(client, tenant):
    token = tenant.users["viewer"]["token"]
    assert _get(client, token).status_code == 200
    response = _get(client, token, BAD_SERIES)
    assert response.status_code == 400
    assert [e["field"] for e in response.get_json()["error"]["details"]["errors"]] == ["granularity"]


def test_a_tampered_remembered_token_is_verified_again(client, tenant):
    token = tenant.users["viewer"]["token"]
    assert _get(client, token).status_code == 200
    header, payload, signature = token.split(".")
    other = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    assert _get(client, f"{header}.{payload}.{other}").status_code == 401


def test_revocation_holds_on_cached_reads_with_redis_stopped(client, tenant, stoppable_redis, services):
    revoked = _login(client, tenant.users["viewer"])["access_token"]
    kept = _login(client, tenant.users["agent"])["access_token"]
    for token in (revoked, kept):
        assert _get(client, token).status_code == 200
        assert _get(client, token).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=_bearer(revoked)).status_code == 200

    stoppable_redis.stop()
    try:
        assert _get(client, revoked).status_code == 401
        answer = _get(client, kept)
        assert answer.status_code == 200
        assert answer.get_json()["meta"]["cache"] == "bypass"
    finally:
        stoppable_redis.start()
    wait_redis(services.redis_url)
    assert _get(client, revoked).status_code == 401
    assert _get(client, kept).status_code == 200


@pytest.mark.parametrize("path", [SERIES, BAD_SERIES])
def test_each_cached_read_spends_the_budget_once(app, make_tenant, monkeypatch, path):
    monkeypatch.setitem(app.config, "RATE_LIMITS_PER_MINUTE", {"analytics": 4, "jobs": 4, "exports": 4})
    tenant = make_tenant()
    expected = 200 if path == SERIES else 400
    token = tenant.users["viewer"]["token"]
    window = datetime.now(UTC)
    statuses = [_get(app.test_client(), token, path).status_code for _ in range(5)]
    if datetime.now(UTC).replace(second=0, microsecond=0) != window.replace(second=0, microsecond=0):
        pytest.skip("the requests straddled a budget window")
    assert statuses == [expected] * 4 + [429]


# --- refused on a cache hit, whether the near cache holds the entry or the lookup asks Redis -------

NEAR = ["near cache holds the entry", "no near cache"]


@pytest.fixture
def monitor(services) -> Iterator[Monitor]:
    watching = Monitor(services.redis_url)
    yield watching
    watching.close()


def _hits(app, monkeypatch, api, path: str, monitor: Monitor, near: str, org_id: int) -> int:
    """Ask `path` until it is a hit served as `near` says: from the near cache (no lookup in Redis)
    or, with the near cache turned off, from a lookup in Redis; how many requests that took.
    (The monitor sees the whole server: only the organization's own lookups are counted, not those
    of tests running beside this one.)"""
    if near == "no near cache":
        monkeypatch.setitem(app.extensions, "near_cache", None)
        monitor.lines()
        answers = [api.get(path) for _ in range(2)]
        assert [a.get_json()["meta"]["cache"] for a in answers] == ["miss", "hit"]
        assert sum('"EVALSHA"' in line for line in lookups(monitor.lines(), org_id)) == 2
        return 2
    made = warm(api, path, monitor, org_id)
    assert api.get(path).get_json()["meta"]["cache"] == "hit"
    assert lookups(monitor.lines(), org_id) == []
    return made + 1


@pytest.mark.parametrize("near", NEAR)
def test_a_revoked_token_is_refused_on_a_cache_hit(app, tenant, monitor, monkeypatch, near):
    tokens = _login(app.test_client(), tenant.users["viewer"])
    api = Api(app.test_client(), tokens["access_token"])
    path = SERIES
    _hits(app, monkeypatch, api, path, monitor, near, tenant.org_id)
    assert api.post("/api/v1/auth/logout").status_code == 200

    refused = api.get(path)
    assert refused.status_code == 401
    assert refused.get_json()["error"] == {
        "code": "unauthorized",
        "message": "token has been revoked",
        "details": {},
    }
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    # The entry is still there for a token that was not revoked.
    assert tenant.viewer.get(path).get_json()["meta"]["cache"] == "hit"


@pytest.mark.parametrize("near", NEAR)
def test_an_over_budget_token_is_refused_on_a_cache_hit(app, make_tenant, monitor, monkeypatch, near):
    limit = 12
    monkeypatch.setitem(app.config, "RATE_LIMITS_PER_MINUTE", {"analytics": limit, "jobs": 4, "exports": 4})
    tenant = make_tenant()
    path = SERIES
    window = datetime.now(UTC)
    made = _hits(app, monkeypatch, tenant.viewer, path, monitor, near, tenant.org_id)
    assert made < limit
    statuses = [tenant.viewer.get(path).status_code for _ in range(limit - made + 1)]
    refused = tenant.viewer.get(path)
    if datetime.now(UTC).replace(second=0, microsecond=0) != window.replace(second=0, microsecond=0):
        pytest.skip("the requests straddled a budget window")
    # The window admits `limit` requests in all, hits included, and refuses the next ones.
    assert statuses == [200] * (limit - made) + [429]
    assert refused.status_code == 429
    assert refused.get_json()["error"]["details"]["limit"] == limit
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert tenant.admin.get(path).status_code == 429  # the organization's budget, whoever asks
