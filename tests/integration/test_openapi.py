"""The OpenAPI document validates and describes every route the app serves."""

from __future__ import annotations

import gzip
import re
import zlib

import jsonschema
import pytest
from openapi_spec_validator import validate

from tests.integration.documented_operations import BODY_METHODS, example_path, operations


def _routes(app):
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            yield path, method.lower()


def test_document_validates_and_lists_every_route(client, app):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    validate(spec)
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    served = set(_routes(app))
    assert served - documented == set()
    assert documented - served == set()


def test_every_operation_documents_errors_and_auth(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert operation["summary"], (path, method)
            assert "500" in operation["responses"], (path, method)
            if operation["security"] and {} not in operation["security"]:  # a token required
                assert "401" in operation["responses"] or path.endswith("/refresh"), (path, method)


def test_request_models_are_the_validating_ones(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    create = spec["paths"]["/api/v1/tickets"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    name = create["$ref"].rsplit("/", 1)[1]
    schema = spec["components"]["schemas"][name]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) >= {"status", "priority", "channel", "category", "sentiment_score"}


def test_the_import_body_documents_what_an_import_accepts(client, tenant):
    """Found from outside: the document's import items were POST /tickets' body, which forbids the
    replies, rating and status history an import takes, so a client checking its body against the
    document refused imports the server accepts."""
    spec = client.get("/api/v1/openapi.json").get_json()
    body = spec["paths"]["/api/v1/tickets/import"]["post"]["requestBody"]["content"]["application/json"]
    schema = {**body["schema"], "components": spec["components"]}
    rows = [
        {
            "created_at": "2026-11-02T09:00:00Z",
            "status": "resolved",
            "resolved_at": "2026-11-02T12:00:00Z",
            "status_history": [
                {"status": "open", "at": "2026-11-02T09:00:00Z"},
                {"status": "resolved", "at": "2026-11-02T12:00:00Z"},
            ],
            "replies": [{"author": "agent", "at": "2026-11-02T10:00:00Z", "public": True}],
            "satisfaction": {"rating": 5, "at": "2026-11-02T13:00:00Z"},
        }
    ]
    jsonschema.validate(rows, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{**rows[0], "mood": "happy"}], schema)
    assert tenant.agent.post("/api/v1/tickets/import", json=rows).status_code == 202


def test_docs_page(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    assert "openapi.json" in response.get_data(as_text=True)


def test_every_operation_lists_what_any_route_may_answer(client):
    """Answers a route gives whatever it does: a request line or headers the server refuses before the
    application (400, 414, 431), an unserved method (405), the database out of reach (503); with a
    body, one too large (413) or of another type (415); with a method that may carry a body, a
    compressed one (415) even where none is read; 204 has no content."""
    spec = client.get("/api/v1/openapi.json").get_json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"400", "405", "414", "431", "500", "503"} <= statuses, (path, method)
            if "requestBody" in operation:
                assert {"413", "415"} <= statuses, (path, method)
            if method in BODY_METHODS:
                assert "415" in statuses, (path, method)
            if "204" in statuses:
                assert "content" not in operation["responses"]["204"], (path, method)
    assert "409" in spec["paths"]["/api/v1/tickets/{ticket_id}"]["patch"]["responses"]
    download = spec["paths"]["/api/v1/exports/{export_id}/download"]["get"]
    assert download["security"] == [{}, {"bearerAuth": []}]  # the link alone, or with a token


@pytest.mark.parametrize(
    ("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)], ids=["gzip", "deflate"]
)
def test_a_compressed_body_is_415_wherever_one_may_be_sent_and_documented_there(
    client, tenant, encoding, compress
):
    """A body with a Content-Encoding is refused before any view, whatever the route reads (even none):
    every operation of a method that may carry a body answers 415, and its document lists it."""
    token = {"Authorization": f"Bearer {tenant.users['admin']['token']}"}
    refused = []
    for method, path, operation in operations(client):
        if method not in BODY_METHODS:
            continue
        response = client.open(
            example_path(path, operation),
            method=method.upper(),
            data=compress(b"{}"),
            headers={**token, "Content-Type": "application/json", "Content-Encoding": encoding},
        )
        assert response.status_code == 415, (method, path, response.get_json())
        assert "415" in operation["responses"], (method, path)
        refused.append((method, path))
    assert ("post", "/api/v1/auth/refresh") in refused
    assert ("delete", "/api/v1/jobs/{job_id}") in refused


def _header_names(response: dict) -> set[str]:
    return set(response.get("headers", {}))


def test_the_headers_a_client_reads_are_documented(client, tenant):
    """A client generated from the document knows where to wait (Retry-After), where a created thing
    or a job is (Location), that an answer was replayed (Idempotent-Replayed), and what a download
    carries (ETag, Content-Disposition, ranges); and how to open the socket and refresh a token."""
    spec = client.get("/api/v1/openapi.json").get_json()
    assert set(spec["components"]["headers"]) >= {"Retry-After", "Location", "Idempotent-Replayed", "ETag"}
    located: set[tuple[str, str]] = set()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                names = _header_names(response)
                if status in ("429", "503"):
                    assert "Retry-After" in names, (path, method, status)
                if status == "202":
                    assert {"Location", "Retry-After"} <= names, (path, method)
                if status == "201" and "Location" in names:
                    located.add((method, path))
    # Only the creations whose object has a URL of its own say where it is.
    assert located == {
        ("post", "/api/v1/tickets"),
        ("post", "/api/v1/webhooks"),
        ("post", "/api/v1/schedules"),
        ("post", "/api/v1/alerts"),
        ("post", "/api/v1/report-schedules"),
    }
    paths = spec["paths"]
    # A download link's bearer token is ignored unless valid: the route never answers 401.
    assert "401" not in paths["/api/v1/exports/{export_id}/download"]["get"]["responses"]
    assert "Retry-After" in _header_names(paths["/api/v1/jobs/{job_id}"]["get"]["responses"]["200"])
    assert "Idempotent-Replayed" in _header_names(paths["/api/v1/tickets"]["post"]["responses"]["201"])
    download = paths["/api/v1/exports/{export_id}/download"]["get"]["responses"]
    assert {"ETag", "Content-Disposition"} <= _header_names(download["200"])
    assert "Content-Range" in _header_names(download["206"])
    socket = paths["/api/v1/ws/analytics/{org_id}"]["get"]
    query = {p["name"] for p in socket["parameters"] if p["in"] == "query"}
    assert query == {"ticket", "token", "last_event_id"}
    assert "subscribe" in socket["description"]
    refresh = paths["/api/v1/auth/refresh"]["post"]["requestBody"]
    assert refresh["required"] is False
    schema = spec["components"]["schemas"]["RefreshRequest"]
    assert "refresh_token" in schema["properties"]
    # What the server sends is what the document says: a running job's Retry-After is an integer.
    job = tenant.admin.post("/api/v1/analytics/refresh-cache")
    assert job.status_code == 202
    assert int(job.headers["Retry-After"]) >= 0
    assert job.headers["Location"].startswith("/api/v1/jobs/")


def test_the_documented_headers_come_with_the_answers(client, tenant):
    """What the document promises per status, the answers carry: a creation's Location on each route
    that names it, WWW-Authenticate on every 401 (a wrong password's too), where to follow a webhook's
    test delivery."""
    admin = tenant.admin
    created = {
        "/api/v1/tickets": {"subject": "located"},
        "/api/v1/schedules": {
            "name": "Office",
            "timezone": "UTC",
            "intervals": [{"day": "mon", "start": "09:00", "end": "17:00"}],
        },
        "/api/v1/alerts": {
            "name": "volume",
            "metric": "ticket_count",
            "granularity": "daily",
            "condition": {"type": "above", "value": 10},
            "channels": [{"type": "websocket"}],
        },
    }
    for path, body in created.items():
        answer = admin.post(path, json=body)
        assert answer.status_code == 201, (path, answer.get_json())
        location = answer.headers["Location"]
        assert admin.get(location).status_code == 200, location
    wrong = client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong-password"}
    )
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/api/v1/tickets").headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/analytics/time-series/response_time?granularity=daily",
        "/api/v1/analytics/dashboard",
        "/api/v1/analytics/performance",
        "/api/v1/analytics/distribution/channel",
        "/api/v1/analytics/time-in-status",
        "/api/v1/analytics/agents",
        "/api/v1/analytics/snapshots?type=daily",
    ],
)
def test_every_field_an_analytics_answer_carries_is_documented(client, tenant, path):
    spec = client.get("/api/v1/openapi.json").get_json()
    route = path.split("?")[0].replace("/time-series/response_time", "/time-series/{metric}")
    route = route.replace("/distribution/channel", "/distribution/{field}")
    schema = spec["paths"][route]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    name = schema["$ref"].rsplit("/", 1)[1]
    documented = set(spec["components"]["schemas"][name]["properties"])
    answer = tenant.viewer.get(path)
    assert answer.status_code == 200, answer.get_json()
    assert set(answer.get_json()) <= documented, set(answer.get_json()) - documented
