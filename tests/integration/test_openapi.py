"""The OpenAPI document validates and describes every route the app serves."""

from __future__ import annotations

import re

from openapi_spec_validator import validate


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
            if operation["security"]:
                assert "401" in operation["responses"] or path.endswith("/refresh"), (path, method)


def test_request_models_are_the_validating_ones(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    create = spec["paths"]["/api/v1/tickets"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    name = create["$ref"].rsplit("/", 1)[1]
    schema = spec["components"]["schemas"][name]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) >= {"status", "priority", "channel", "category", "sentiment_score"}


def test_docs_page(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    assert "openapi.json" in response.get_data(as_text=True)
