"""Login, refresh and every kind of bad token."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt as pyjwt
import pytest

from tests.conftest import JWT_SECRET


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


def test_garbage_token(client):
    assert _call(client, "not.a.jwt").status_code == 401
    response = client.get("/api/v1/tickets", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401
