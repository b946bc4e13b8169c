"""Only a job's creator or an admin cancels it; creating a user reveals nothing of other
organizations' users; signing in works for an email used in several organizations."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from tests.conftest import Api
from webapp.models import Job, User
from webapp.security.passwords import hash_password
from webapp.security.tokens import access_token_for

SNAPSHOT = {"type": "daily", "date": "2026-03-01"}


def _second_agent(app, db_session, tenant) -> Api:
    user = User(
        org_id=tenant.org_id, email="agent2@acme.test", password_hash=hash_password("x" * 10), role="agent"
    )
    db_session.add(user)
    db_session.commit()
    with app.app_context():
        token = access_token_for(user)
    return Api(app.test_client(), token)


def test_an_agent_cannot_cancel_an_admins_or_another_agents_job(app, db_session, tenant):
    other_agent = _second_agent(app, db_session, tenant)
    admins = tenant.admin.post("/api/v1/analytics/snapshots", json=SNAPSHOT).get_json()["job_id"]
    agents = tenant.agent.post("/api/v1/tickets/import", json=[{"subject": "one"}]).get_json()["job_id"]
    for api, job_id in ((tenant.agent, admins), (other_agent, admins), (other_agent, agents)):
        refused = api.delete(f"/api/v1/jobs/{job_id}")
        assert refused.status_code == 403, refused.get_json()
        assert "creator or an admin" in refused.get_json()["error"]["message"]
    db_session.expire_all()
    assert {db_session.get(Job, j).state for j in (admins, agents)} == {"queued"}
    assert all(not db_session.get(Job, j).cancel_requested for j in (admins, agents))
    # The creator cancels their own; an admin cancels anyone's.
    assert tenant.agent.delete(f"/api/v1/jobs/{agents}").status_code == 200
    assert tenant.admin.delete(f"/api/v1/jobs/{admins}").status_code == 200


def test_a_viewer_cancels_its_own_jobs_and_no_one_elses(tenant, db_session):
    """A viewer may start reads as jobs (async aggregations, exports), so it may cancel them."""
    own = tenant.viewer.post(
        "/api/v1/analytics/aggregations", json={"metrics": ["ticket_count"], "async": True}
    ).get_json()["job_id"]
    agents = tenant.agent.post("/api/v1/tickets/import", json=[{"subject": "one"}]).get_json()["job_id"]
    refused = tenant.viewer.delete(f"/api/v1/jobs/{agents}")
    assert refused.status_code == 403
    assert "creator or an admin" in refused.get_json()["error"]["message"]
    cancelled = tenant.viewer.delete(f"/api/v1/jobs/{own}")
    assert cancelled.status_code == 200, cancelled.get_json()
    db_session.expire_all()
    assert db_session.get(Job, own).cancel_requested or db_session.get(Job, own).state == "cancelled"
    assert not db_session.get(Job, agents).cancel_requested


def test_identical_jobs_of_two_users_are_two_jobs_each_its_creators(tenant, db_session):
    """An identical queued job answers a repeat of the same user's request only: another user's
    identical request gets a job of its own, which that user may cancel and the first may not."""
    body = {"metrics": ["ticket_count"], "async": True}
    first = tenant.viewer.post("/api/v1/analytics/aggregations", json=body).get_json()
    again = tenant.viewer.post("/api/v1/analytics/aggregations", json=body).get_json()
    assert (again["job_id"], again["deduplicated"]) == (first["job_id"], True)
    agents = tenant.agent.post("/api/v1/analytics/aggregations", json=body).get_json()
    assert agents["job_id"] != first["job_id"]
    assert agents["deduplicated"] is False
    assert tenant.viewer.delete(f"/api/v1/jobs/{agents['job_id']}").status_code == 403
    assert tenant.agent.delete(f"/api/v1/jobs/{first['job_id']}").status_code == 403
    assert tenant.agent.delete(f"/api/v1/jobs/{agents['job_id']}").status_code == 200
    db_session.expire_all()
    assert not db_session.get(Job, first["job_id"]).cancel_requested


def test_the_organizations_own_jobs_stay_shared_by_whoever_asks(tenant, db_session):
    """A snapshot is stored for the organization: an identical one queued by anyone (beat included,
    which asks as no user) answers the request, as a refresh of its cache does."""
    from webapp.core.vocabulary import JOB_KINDS
    from webapp.jobs.submission import PERSONAL_KINDS, params_hash

    assert PERSONAL_KINDS <= set(JOB_KINDS)
    first = tenant.admin.post("/api/v1/analytics/snapshots", json=SNAPSHOT).get_json()
    other_admin = tenant.admin.post("/api/v1/analytics/snapshots", json=SNAPSHOT).get_json()
    assert (other_admin["job_id"], other_admin["deduplicated"]) == (first["job_id"], True)
    job = db_session.get(Job, first["job_id"])
    assert job.params_hash == params_hash("snapshot", job.params)  # what beat's submission looks up
    assert job.params_hash == params_hash("snapshot", job.params, tenant.users["admin"]["id"])


def test_creating_a_user_does_not_reveal_another_organizations_email(client, make_tenant):
    acme, other = make_tenant("Acme"), make_tenant("Other")
    taken = other.users["agent"]["email"]
    created = acme.admin.post(
        "/api/v1/users", json={"email": taken, "password": "another-pass", "role": "viewer"}
    )
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["org_id"] == acme.org_id
    # Within the organization an email is still unique.
    again = acme.admin.post("/api/v1/users", json={"email": taken.upper(), "password": "another-pass"})
    assert again.status_code == 409
    # Each signs in with their own password, into their own organization.
    for password, org_id in (("another-pass", acme.org_id), (other.users["agent"]["password"], other.org_id)):
        response = client.post("/api/v1/auth/login", json={"email": taken, "password": password})
        assert response.status_code == 200
        token = response.get_json()["access_token"]
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["org_id"] == org_id
    assert client.post("/api/v1/auth/login", json={"email": taken, "password": "neither"}).status_code == 401


def test_an_email_and_password_of_several_organizations_signs_in_where_org_id_says(client, make_tenant):
    acme, other = make_tenant("Acme"), make_tenant("Other")
    login = {"email": other.users["agent"]["email"], "password": other.users["agent"]["password"]}
    created = acme.admin.post("/api/v1/users", json={**login, "role": "viewer"})
    assert created.status_code == 201, created.get_json()
    # Both accounts take the password: no organization is picked silently.
    ambiguous = client.post("/api/v1/auth/login", json=login)
    assert ambiguous.status_code == 409
    error = ambiguous.get_json()["error"]
    assert error["details"]["field"] == "org_id"
    assert error["details"]["org_ids"] == sorted([acme.org_id, other.org_id])
    for org_id, role in ((acme.org_id, "viewer"), (other.org_id, "agent")):
        chosen = client.post("/api/v1/auth/login", json={**login, "org_id": org_id})
        assert chosen.status_code == 200, chosen.get_json()
        payload = chosen.get_json()["access_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert (claims["org_id"], claims["role"]) == (org_id, role)
    # An organization without the user is a wrong login, as any.
    third = make_tenant("Third")
    assert client.post("/api/v1/auth/login", json={**login, "org_id": third.org_id}).status_code == 401
    assert client.post("/api/v1/auth/login", json={**login, "org_id": 0}).status_code == 400


def test_an_admin_cannot_test_another_organizations_password_faster_than_by_guessing(
    client, make_tenant, app, monkeypatch, services
):
    """An admin who adds a user with another organization's user's email could try passwords on their
    own user and read the answer (200: not the other's password; 409: it is). Sign-ins without org_id
    tried against several organizations' users have a budget of their own per email, as its failures
    do: past it, 429 (org_id still signs in), and a sign-in of one of them clears no failures."""
    import redis

    from webapp.security import throttle

    monkeypatch.setitem(app.config, "AUTH_MAX_FAILURES_PER_EMAIL", 5)
    acme, other = make_tenant("Acme"), make_tenant("Other")
    email = other.users["agent"]["email"]
    store = redis.Redis.from_url(services.redis_url)
    for key in store.keys(throttle.PREFIX + "*"):
        store.delete(key)
    answers = []
    for n in range(7):
        guess = f"guess-number-{n}"
        user = acme.admin.post("/api/v1/users", json={"email": email, "password": guess, "role": "viewer"})
        assert user.status_code == 201, user.get_json()
        login = {"email": email, "password": guess}
        answers.append(
            client.post(
                "/api/v1/auth/login", json=login, environ_base={"REMOTE_ADDR": f"10.9.0.{n}"}
            ).status_code
        )
        assert acme.admin.delete(f"/api/v1/users/{user.get_json()['id']}").status_code == 204
    assert answers == [200] * 5 + [429] * 2
    # The other organization's user, naming their organization, is not locked out by it.
    own = {**{"email": email, "password": other.users["agent"]["password"]}, "org_id": other.org_id}
    assert client.post("/api/v1/auth/login", json=own).status_code == 200

    # Guesses at the other organization's user, then the admin's own user signing in with org_id:
    # the email's failures stay.
    for key in store.keys(throttle.PREFIX + "*"):
        store.delete(key)
    mine = acme.admin.post(
        "/api/v1/users", json={"email": email, "password": "mine-all-mine", "role": "viewer"}
    )
    assert mine.status_code == 201
    for n in range(4):
        wrong = {"email": email, "password": f"wrong-{n}", "org_id": other.org_id}
        assert client.post("/api/v1/auth/login", json=wrong).status_code == 401
    mine_login = {"email": email, "password": "mine-all-mine", "org_id": acme.org_id}
    assert client.post("/api/v1/auth/login", json=mine_login).status_code == 200
    wrong = {"email": email, "password": "wrong-again", "org_id": other.org_id}
    # The fifth failure is answered, the sixth waits (had the sign-in cleared them, both 401).
    assert [client.post("/api/v1/auth/login", json=wrong).status_code for _ in range(2)] == [401, 429]


def test_a_disabled_account_does_not_make_a_login_ambiguous(client, make_tenant, db_session):
    acme, other = make_tenant("Acme"), make_tenant("Other")
    login = {"email": other.users["agent"]["email"], "password": other.users["agent"]["password"]}
    created = acme.admin.post("/api/v1/users", json={**login, "role": "viewer"}).get_json()
    user = db_session.get(User, created["id"])
    user.disabled_at = datetime.now(UTC)
    db_session.commit()
    answer = client.post("/api/v1/auth/login", json=login)
    assert answer.status_code == 200, answer.get_json()
    payload = answer.get_json()["access_token"].split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["org_id"] == other.org_id
