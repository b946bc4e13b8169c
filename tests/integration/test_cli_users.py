"""The user commands of the CLI with an email that users of several organizations have: `--org` picks one."""

from __future__ import annotations

import json

import jwt as pyjwt
import pytest

from tests.conftest import JWT_SECRET

PASSWORD = "s3cret-password-of-the-other"


def _cli(app, *args: str):
    runner = app.test_cli_runner()
    with app.app_context():
        return runner.invoke(args=list(args))


@pytest.fixture
def shared_email(app, tenant, make_tenant):
    """The tenant's viewer's email, given to a viewer of another organization too: (email, other org id)."""
    other = make_tenant("Other")
    email = tenant.users["viewer"]["email"]
    created = _cli(app, "create-user", "--org", str(other.org_id), "--email", email, "--password", PASSWORD)
    assert created.exit_code == 0, created.output
    return email, other.org_id


def _last_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("command", [["disable-user"], ["delete-user"], ["issue-token"]])
def test_an_email_of_several_organizations_needs_org(app, shared_email, command):
    email, _ = shared_email
    result = _cli(app, *command, "--email", email)
    assert result.exit_code == 2
    assert "name one with --org" in result.stderr


@pytest.mark.parametrize("command", [["disable-user"], ["delete-user"], ["issue-token"]])
def test_org_naming_no_user_with_the_email_is_refused(app, tenant, shared_email, command):
    email, _ = shared_email
    result = _cli(app, *command, "--email", email, "--org", str(2**30))
    assert result.exit_code == 2
    assert f"no user with email {email} in organization {2**30}" in result.stderr


def test_disable_user_with_org_disables_that_organizations_user_only(app, client, tenant, shared_email):
    email, other_org = shared_email
    disabled = _cli(app, "disable-user", "--email", email, "--org", str(other_org))
    assert disabled.exit_code == 0, disabled.output
    assert _last_json(disabled)["org_id"] == other_org
    assert _last_json(disabled)["disabled"] is True
    refused = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert refused.status_code == 401
    # The tenant's user with the same email is untouched.
    kept = client.get(
        "/api/v1/tickets", headers={"Authorization": f"Bearer {tenant.users['viewer']['token']}"}
    )
    assert kept.status_code == 200
    enabled = _cli(app, "disable-user", "--email", email, "--org", str(other_org), "--enable")
    assert enabled.exit_code == 0, enabled.output
    assert _last_json(enabled)["disabled"] is False
    login = client.post(
        "/api/v1/auth/login", json={"email": email, "password": PASSWORD, "org_id": other_org}
    )
    assert login.status_code == 200, login.get_json()


def test_delete_user_with_org_deletes_that_organizations_user_only(app, client, tenant, shared_email):
    email, other_org = shared_email
    deleted = _cli(app, "delete-user", "--email", email, "--org", str(other_org))
    assert deleted.exit_code == 0, deleted.output
    assert _last_json(deleted)["org_id"] == other_org
    # The email now names one user, the tenant's, which still works.
    token = _cli(app, "issue-token", "--email", email)
    assert token.exit_code == 0, token.output
    listed = client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token.stdout.strip()}"})
    assert listed.status_code == 200


def test_issue_token_with_org_is_of_that_organization(app, client, shared_email):
    email, other_org = shared_email
    token = _cli(app, "issue-token", "--email", email, "--org", str(other_org))
    assert token.exit_code == 0, token.output
    assert pyjwt.decode(token.stdout.strip(), JWT_SECRET, algorithms=["HS256"])["org_id"] == other_org
    me = client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token.stdout.strip()}"})
    assert me.status_code == 200


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("short@acme.test", "x", "password must be 8 to 1024 characters"),
        ("not an email", "long-enough-pass", "is not an email address"),
    ],
)
def test_create_user_checks_what_post_users_checks(app, tenant, email, password, message):
    result = _cli(app, "create-user", "--org", str(tenant.org_id), "--email", email, "--password", password)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    answer = tenant.admin.post("/api/v1/users", json={"email": email, "password": password})
    assert answer.status_code == 400


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_create_org_refuses_a_name_that_is_empty_or_too_long(app, name):
    result = _cli(app, "create-org", name, "--timezone", "UTC")
    assert result.exit_code != 0
    assert "1 to 200 characters" in result.output + result.stderr
