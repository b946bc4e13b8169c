"""Login, refresh, logout and every kind of bad token, revoked ones included."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import jwt as pyjwt
import pytest
import redis
from flask_jwt_extended import create_access_token, create_refresh_token
from sqlalchemy import delete, select

from tests.conftest import JWT_SECRET, run_task, wait_redis
from webapp.api.ws import admission as ws
from webapp.models import RevokedToken, User
from webapp.security import revocation


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(tenant, **overrides):
    now = datetime.now(UTC)
    claims = {
        "sub": str(tenant.users["admin"]["id"]),
        "org_id": tenant.org_id,
        "role": "admin",
        "type": "access",
        "jti": "abc",
        "fresh": False,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_login_returns_tokens_that_work(client, tenant):
    admin = tenant.users["admin"]
    response = client.post(
        "/api/v1/auth/login", json={"email": admin["email"], "password": admin["password"]}
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    claims = pyjwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["org_id"] == tenant.org_id
    assert claims["role"] == "admin"
    listed = client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert listed.status_code == 200

    refreshed = client.post(
        "/api/v1/auth/refresh", headers={"Authorization": f"Bearer {body['refresh_token']}"}
    )
    assert refreshed.status_code == 200
    assert pyjwt.decode(refreshed.get_json()["access_token"], JWT_SECRET, algorithms=["HS256"])["org_id"] == (
        tenant.org_id
    )


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_read_in_any_case(client, tenant, scheme):
    """Scheme names are case-insensitive (RFC 9110 11.1); found from outside: 'bearer' was a 401."""
    admin = tenant.users["admin"]
    tokens = _login(client, admin)
    listed = client.get("/api/v1/tickets", headers={"Authorization": f"{scheme} {tokens['access_token']}"})
    assert listed.status_code == 200, listed.get_json()
    refreshed = client.post(
        "/api/v1/auth/refresh", headers={"Authorization": f"{scheme} {tokens['refresh_token']}"}
    )
    assert refreshed.status_code == 200, refreshed.get_json()


@pytest.mark.parametrize("org_id", ["ORG", 2.0, True, " 1 "])
def test_login_takes_org_id_as_an_integer_only(client, tenant, org_id):
    """Numbers are not converted from other types in any body (found from outside: "2", 2.0 and
    true were taken, true as organization 1, and spent a failure of the email)."""
    admin = tenant.users["admin"]
    value = str(tenant.org_id) if org_id == "ORG" else org_id
    response = client.post(
        "/api/v1/auth/login", json={"email": admin["email"], "password": admin["password"], "org_id": value}
    )
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["details"]["field"] == "org_id"


def test_access_token_is_not_a_refresh_token(client, tenant):
    response = client.post(
        "/api/v1/auth/refresh", headers={"Authorization": f"Bearer {tenant.users['admin']['token']}"}
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"email": "nobody@example.com", "password": "x"},
        {"email": "WRONG", "password": "wrong"},
    ],
)
def test_login_rejects_bad_credentials(client, tenant, body):
    response = client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_login_wrong_password(client, tenant):
    email = tenant.users["admin"]["email"]
    response = client.post("/api/v1/auth/login", json={"email": email, "password": "not-it"})
    assert response.status_code == 401


def test_login_validates_body(client):
    assert client.post("/api/v1/auth/login", json={"email": "a@b.c"}).status_code == 400
    assert client.post("/api/v1/auth/login", data="nope", content_type="application/json").status_code == 400


def _call(client, token: str):
    return client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token}"})


def test_missing_token(client):
    response = client.get("/api/v1/tickets")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_expired_token(client, tenant):
    past = datetime.now(UTC) - timedelta(hours=1)
    token = pyjwt.encode(_claims(tenant, exp=int(past.timestamp())), JWT_SECRET, algorithm="HS256")
    response = _call(client, token)
    assert response.status_code == 401
    assert "expired" in response.get_json()["error"]["message"]


def test_not_yet_valid_token(client, tenant):
    future = datetime.now(UTC) + timedelta(hours=1)
    token = pyjwt.encode(_claims(tenant, nbf=int(future.timestamp())), JWT_SECRET, algorithm="HS256")
    assert _call(client, token).status_code == 401


def test_wrong_signature(client, tenant):
    token = pyjwt.encode(_claims(tenant), "another-secret-that-is-long-enough-32b", algorithm="HS256")
    assert _call(client, token).status_code == 401


def test_alg_none_is_refused(client, tenant):
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(tenant))}."
    assert _call(client, token).status_code == 401


def test_other_algorithm_is_refused(client, tenant):
    token = pyjwt.encode(_claims(tenant), JWT_SECRET, algorithm="HS512")
    assert _call(client, token).status_code == 401


@pytest.mark.parametrize("claim", ["org_id", "role", "sub"])
def test_missing_claims(client, tenant, claim):
    token = pyjwt.encode(_claims(tenant, **{claim: None}), JWT_SECRET, algorithm="HS256")
    assert _call(client, token).status_code == 401


def test_every_token_failure_is_the_one_error_shape_with_a_bearer_challenge(client, tenant):
    expired = int((datetime.now(UTC) - timedelta(hours=1)).timestamp())
    cases = {
        "": "missing or malformed token: Missing Authorization Header",
        "Bearer not.a.jwt": "invalid token: ",
        f"Bearer {pyjwt.encode(_claims(tenant, exp=expired), JWT_SECRET, algorithm='HS256')}": (
            "token has expired"
        ),
        f"Bearer {pyjwt.encode(_claims(tenant, role=None), JWT_SECRET, algorithm='HS256')}": (
            "token is missing required claims"
        ),
    }
    for header, message in cases.items():
        response = client.get("/api/v1/tickets", headers={"Authorization": header} if header else {})
        assert response.status_code == 401
        assert response.mimetype == "application/json"
        assert response.headers["WWW-Authenticate"] == "Bearer"
        body = response.get_json()
        assert list(body) == ["error"]
        assert list(body["error"]) == ["code", "message", "details"]
        assert (body["error"]["code"], body["error"]["details"]) == ("unauthorized", {})
        if message.endswith(": "):
            assert body["error"]["message"].startswith(message)
        else:
            assert body["error"]["message"] == message


def test_garbage_token(client):
    assert _call(client, "not.a.jwt").status_code == 401
    response = client.get("/api/v1/tickets", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401


# --- logout and the blocklist -------------------------------------------------


def _login(client, user) -> dict:
    response = client.post("/api/v1/auth/login", json={"email": user["email"], "password": user["password"]})
    assert response.status_code == 200
    return response.get_json()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _jti(token: str) -> str:
    return pyjwt.decode(token, JWT_SECRET, algorithms=["HS256"])["jti"]


@pytest.fixture
def redis_client(services):
    return redis.Redis.from_url(services.redis_url)


def test_logout_revokes_the_access_and_refresh_tokens_and_no_other(client, tenant, db_session):
    tokens = _login(client, tenant.users["agent"])
    other = _login(client, tenant.users["agent"])
    response = client.post(
        "/api/v1/auth/logout",
        json={"refresh_token": tokens["refresh_token"]},
        headers=_bearer(tokens["access_token"]),
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"revoked": ["access", "refresh"]}

    refused = _call(client, tokens["access_token"])
    assert refused.status_code == 401
    assert refused.get_json()["error"]["message"] == "token has been revoked"
    assert client.post("/api/v1/auth/refresh", headers=_bearer(tokens["refresh_token"])).status_code == 401
    assert client.post("/api/v1/auth/logout", headers=_bearer(tokens["access_token"])).status_code == 401

    # The same user's other session, and the other users, are unaffected.
    assert _call(client, other["access_token"]).status_code == 200
    assert client.post("/api/v1/auth/refresh", headers=_bearer(other["refresh_token"])).status_code == 200
    assert _call(client, tenant.users["admin"]["token"]).status_code == 200
    rows = db_session.scalars(
        select(RevokedToken.jti).where(
            RevokedToken.jti.in_([_jti(tokens["access_token"]), _jti(tokens["refresh_token"])])
        )
    ).all()
    assert len(rows) == 2


def test_logout_without_a_body_revokes_the_refresh_token_of_its_login_too(client, tenant):
    tokens = _login(client, tenant.users["viewer"])
    other = _login(client, tenant.users["viewer"])
    response = client.post("/api/v1/auth/logout", headers=_bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.get_json() == {"revoked": ["access", "refresh"]}
    assert _call(client, tokens["access_token"]).status_code == 401
    assert client.post("/api/v1/auth/refresh", headers=_bearer(tokens["refresh_token"])).status_code == 401
    # Another login of the same user is another family.
    assert _call(client, other["access_token"]).status_code == 200
    assert client.post("/api/v1/auth/refresh", headers=_bearer(other["refresh_token"])).status_code == 200


def _refresh(client, refresh_token: str):
    return client.post("/api/v1/auth/refresh", headers=_bearer(refresh_token))


def test_a_refresh_token_may_come_in_a_json_body(app, client, tenant, monkeypatch):
    """The contract says only "(refresh token)": sent as the bearer token or, with no Authorization
    header, as {"refresh_token": ...}, it is the same exchange (and the same reuse rules)."""
    monkeypatch.setitem(app.config, "REFRESH_REUSE_GRACE_SECONDS", 0)
    first = _login(client, tenant.users["agent"])
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.get_json()
    assert _call(client, second.get_json()["access_token"]).status_code == 200
    # Used up, whichever way it came.
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert again.status_code == 401
    assert "already used" in again.get_json()["error"]["message"]
    # A header, when sent, is the token; a token in the body that is none is 401.
    other = _login(client, tenant.users["viewer"])
    both = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": "not.a.jwt"}, headers=_bearer(other["refresh_token"])
    )
    assert both.status_code == 200
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": "not.a.jwt"}).status_code == 401
    # A body its schema refuses is 400 naming what is wrong, with or without a header, before any
    # token is looked at: the token sent beside it is not used up.
    fresh = _login(client, tenant.users["viewer"])["refresh_token"]
    for body, says in (
        ({"refresh_token": 7}, "refresh_token"),
        (["x"], "object"),
        ({"token": fresh}, "token"),
        ({"refresh_token": fresh, "org_id": 2}, "org_id"),
    ):
        for headers in ({}, _bearer(fresh)):
            refused = client.post("/api/v1/auth/refresh", json=body, headers=headers)
            assert refused.status_code == 400, (body, refused.get_json())
            assert says in refused.get_json()["error"]["message"], refused.get_json()
    malformed = client.post("/api/v1/auth/refresh", data="{", content_type="application/json")
    assert malformed.status_code == 400
    assert "not valid JSON" in malformed.get_json()["error"]["message"]
    form = client.post("/api/v1/auth/refresh", data={"refresh_token": fresh})
    assert form.status_code == 415, form.get_json()
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": fresh}).status_code == 200
    too_big = client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 5000})
    assert too_big.status_code == 413


def test_refresh_rotates_and_a_reused_refresh_token_revokes_its_whole_family(
    app, client, tenant, monkeypatch
):
    monkeypatch.setitem(app.config, "REFRESH_REUSE_GRACE_SECONDS", 0)
    first = _login(client, tenant.users["agent"])
    bystander = _login(client, tenant.users["agent"])
    second = _refresh(client, first["refresh_token"])
    assert second.status_code == 200, second.get_json()
    second = second.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    claims = [
        pyjwt.decode(t, JWT_SECRET, algorithms=["HS256"])
        for t in (first["refresh_token"], second["refresh_token"])
    ]
    assert claims[0]["fam"] == claims[1]["fam"]
    third = _refresh(client, second["refresh_token"]).get_json()
    for tokens in (first, second, third):
        assert _call(client, tokens["access_token"]).status_code == 200

    # The first refresh token, used already, comes back (a copy of it was taken): the whole family goes.
    reused = _refresh(client, first["refresh_token"])
    assert reused.status_code == 401
    assert "already used" in reused.get_json()["error"]["message"]
    for tokens in (first, second, third):
        assert _call(client, tokens["access_token"]).status_code == 401
    assert _refresh(client, third["refresh_token"]).status_code == 401
    # Another login is another family.
    assert _call(client, bystander["access_token"]).status_code == 200
    assert _refresh(client, bystander["refresh_token"]).status_code == 200


def test_a_refresh_token_sent_again_within_the_grace_is_answered_again(app, client, tenant, monkeypatch):
    monkeypatch.setitem(app.config, "REFRESH_REUSE_GRACE_SECONDS", 30)
    first = _login(client, tenant.users["viewer"])
    once = _refresh(client, first["refresh_token"])
    twice = _refresh(client, first["refresh_token"])  # a client's retry of a refresh it never saw answered
    assert (once.status_code, twice.status_code) == (200, 200)
    once, twice = once.get_json(), twice.get_json()
    assert _call(client, once["access_token"]).status_code == 200
    assert _call(client, twice["access_token"]).status_code == 200
    # The retry gets the same successor, not a second one: one chain lives on, not two.
    assert twice["refresh_token"] == once["refresh_token"]
    family = pyjwt.decode(first["refresh_token"], JWT_SECRET, algorithms=["HS256"])["fam"]
    for token in (once["access_token"], twice["access_token"], twice["refresh_token"]):
        assert pyjwt.decode(token, JWT_SECRET, algorithms=["HS256"])["fam"] == family

    third = _refresh(client, once["refresh_token"])
    assert third.status_code == 200
    third = third.get_json()
    # Within the grace still, the first token again: its successor is used now, so it is no answer
    # (a used token whose next use would revoke the login); refused, and nothing is revoked.
    late_retry = _refresh(client, first["refresh_token"])
    assert late_retry.status_code == 401
    assert _call(client, third["access_token"]).status_code == 200
    # Past the grace (0 from now on), the successor sent again is a copy: the whole family goes.
    monkeypatch.setitem(app.config, "REFRESH_REUSE_GRACE_SECONDS", 0)
    reused = _refresh(client, twice["refresh_token"])
    assert reused.status_code == 401
    assert "already used" in reused.get_json()["error"]["message"]
    for tokens in (first, once, twice, third):
        assert _call(client, tokens["access_token"]).status_code == 401
    assert _refresh(client, third["refresh_token"]).status_code == 401


def test_concurrent_refreshes_of_one_token_get_one_successor(live_app, make_live_tenant):
    tenant = make_live_tenant("Refreshing")
    first = _login(live_app.test_client(), tenant.users["viewer"])
    answers: list = []
    start = threading.Barrier(6)

    def send() -> None:
        client = live_app.test_client()
        start.wait()
        answers.append(_refresh(client, first["refresh_token"]))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [a.status_code for a in answers] == [200] * 6, [a.get_json() for a in answers]
    assert len({a.get_json()["refresh_token"] for a in answers}) == 1


def test_a_refresh_token_not_issued_here_is_refused(app, client, tenant):
    with app.app_context():
        forged = create_refresh_token(
            str(tenant.users["viewer"]["id"]),
            additional_claims={"org_id": tenant.org_id, "role": "viewer"},
        )
    response = _refresh(client, forged)
    assert response.status_code == 401
    assert "not known" in response.get_json()["error"]["message"]


def test_a_disabled_users_tokens_are_refused_and_login_too(app, client, tenant):
    viewer = tenant.users["viewer"]
    tokens = _login(client, viewer)
    assert _call(client, tokens["access_token"]).status_code == 200  # verified, and remembered
    runner = app.test_cli_runner()

    def cli(*args: str):
        with app.app_context():
            return runner.invoke(args=list(args))

    result = cli("disable-user", "--email", viewer["email"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["disabled"] is True
    for token in (tokens["access_token"], viewer["token"]):
        refused = _call(client, token)
        assert refused.status_code == 401
        assert refused.get_json()["error"]["message"] == "token has been revoked"
    assert _refresh(client, tokens["refresh_token"]).status_code == 401
    login = client.post("/api/v1/auth/login", json={"email": viewer["email"], "password": viewer["password"]})
    assert login.status_code == 401
    assert cli("issue-token", "--email", viewer["email"]).exit_code == 2
    # The other users are not touched; enabled again, the user logs in (old tokens stay revoked).
    assert _call(client, tenant.users["admin"]["token"]).status_code == 200
    assert cli("disable-user", "--email", viewer["email"], "--enable").exit_code == 0
    again = _login(client, viewer)
    assert _call(client, again["access_token"]).status_code == 200
    assert _call(client, tokens["access_token"]).status_code == 401


def test_a_deleted_users_tokens_are_refused(app, client, tenant, make_tenant):
    agent = tenant.users["agent"]
    tokens = _login(client, agent)
    assert _call(client, tokens["access_token"]).status_code == 200
    other = make_tenant("Other")
    assert other.admin.delete(f"/api/v1/users/{agent['id']}").status_code == 404
    assert tenant.admin.delete(f"/api/v1/users/{tenant.users['admin']['id']}").status_code == 400
    assert tenant.agent.delete(f"/api/v1/users/{agent['id']}").status_code == 403
    assert tenant.admin.delete(f"/api/v1/users/{2**40}").status_code == 404
    response = tenant.admin.delete(f"/api/v1/users/{agent['id']}")
    assert response.status_code == 204
    for token in (tokens["access_token"], agent["token"]):
        assert _call(client, token).status_code == 401
    assert _refresh(client, tokens["refresh_token"]).status_code == 401
    assert tenant.admin.delete(f"/api/v1/users/{agent['id']}").status_code == 404


def test_a_token_never_recorded_is_refused_once_its_user_is_gone(app, client, tenant, db_session):
    """A token made without a record (before records existed) is checked against its user when a
    process first verifies it."""
    viewer = tenant.users["viewer"]
    with app.app_context():
        token = create_access_token(
            str(viewer["id"]), additional_claims={"org_id": tenant.org_id, "role": "viewer"}
        )
    db_session.execute(delete(User).where(User.id == viewer["id"]))
    db_session.commit()
    refused = _call(client, token)
    assert refused.status_code == 401
    assert refused.get_json()["error"]["message"] == "token user no longer exists"


@pytest.mark.parametrize("which", ["access_token_in_body", "another_users_refresh", "garbage"])
def test_logout_refuses_a_refresh_token_that_is_not_the_callers(client, tenant, which):
    mine = _login(client, tenant.users["viewer"])
    theirs = _login(client, tenant.users["admin"])
    body = {
        "access_token_in_body": mine["access_token"],
        "another_users_refresh": theirs["refresh_token"],
        "garbage": "not.a.jwt",
    }[which]
    response = client.post(
        "/api/v1/auth/logout", json={"refresh_token": body}, headers=_bearer(mine["access_token"])
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["details"]["field"] == "refresh_token"
    # Nothing was revoked by the refused request.
    assert _call(client, mine["access_token"]).status_code == 200
    assert client.post("/api/v1/auth/refresh", headers=_bearer(theirs["refresh_token"])).status_code == 200


def test_revoked_token_stays_revoked_when_redis_lost_its_key(client, tenant, redis_client):
    tokens = _login(client, tenant.users["viewer"])
    jti = _jti(tokens["access_token"])
    assert client.post("/api/v1/auth/logout", headers=_bearer(tokens["access_token"])).status_code == 200
    assert redis_client.get(revocation.key(jti)) == revocation.REVOKED
    ttl = redis_client.ttl(revocation.key(jti))
    assert 0 < ttl <= tokens["expires_in"] + 1

    redis_client.delete(revocation.key(jti))  # as after a flush, an eviction or a restart without data
    assert _call(client, tokens["access_token"]).status_code == 401
    # The database's answer is written back, so the next check is Redis alone again.
    assert redis_client.get(revocation.key(jti)) == revocation.REVOKED


def test_revoked_token_stays_revoked_with_redis_stopped(client, tenant, stoppable_redis, services):
    revoked = _login(client, tenant.users["viewer"])
    later = _login(client, tenant.users["agent"])
    assert _call(client, later["access_token"]).status_code == 200  # caches "not revoked" for it
    assert client.post("/api/v1/auth/logout", headers=_bearer(revoked["access_token"])).status_code == 200

    stoppable_redis.stop()
    try:
        assert _call(client, revoked["access_token"]).status_code == 401
        assert _call(client, later["access_token"]).status_code == 200
        assert _call(client, tenant.users["admin"]["token"]).status_code == 200
        # A logout during the outage is recorded in the database and enforced at once.
        assert client.post("/api/v1/auth/logout", headers=_bearer(later["access_token"])).status_code == 200
        assert _call(client, later["access_token"]).status_code == 401
    finally:
        stoppable_redis.start()
    wait_redis(services.redis_url)

    # Back with Redis: the outage's logout reached Redis too, over the "not revoked" it had cached.
    assert _call(client, revoked["access_token"]).status_code == 401
    assert _call(client, later["access_token"]).status_code == 401
    stored = redis.Redis.from_url(services.redis_url).get(revocation.key(_jti(later["access_token"])))
    assert stored == revocation.REVOKED
    assert _call(client, tenant.users["admin"]["token"]).status_code == 200


def test_a_revoked_token_cannot_open_the_websocket(app, client, tenant):
    tokens = _login(client, tenant.users["viewer"])
    with app.test_request_context():
        assert ws.from_token(tokens["access_token"]) is not None
    assert client.post("/api/v1/auth/logout", headers=_bearer(tokens["access_token"])).status_code == 200
    with app.test_request_context():
        assert ws.from_token(tokens["access_token"]) is None
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
        "Sec-WebSocket-Version": "13",
    }
    path = f"/api/v1/ws/analytics/{tenant.org_id}"
    refused = client.get(path, headers=upgrade | _bearer(tokens["access_token"]))
    assert refused.status_code == 401
    assert client.get(f"{path}?token={tokens['access_token']}", headers=upgrade).status_code == 401


@pytest.mark.worker
def test_cleanup_deletes_revocations_of_expired_tokens_only(celery_worker, live_app):
    now = datetime.now(UTC)
    expired, live = f"expired-{uuid.uuid4()}", f"live-{uuid.uuid4()}"
    session = live_app.extensions["db_sessionmaker"]()
    session.add_all(
        [
            RevokedToken(jti=expired, expires_at=now - timedelta(minutes=1)),
            RevokedToken(jti=live, expires_at=now + timedelta(hours=1)),
        ]
    )
    session.commit()
    try:
        celery = live_app.extensions["celery"]
        outcome = run_task(celery, "maintenance.cleanup_revoked_tokens")
        assert outcome["deleted"] >= 1
        session.expire_all()
        assert session.get(RevokedToken, expired) is None
        assert session.get(RevokedToken, live) is not None
    finally:
        session.execute(delete(RevokedToken).where(RevokedToken.jti.in_([expired, live])))
        session.commit()
        session.close()
