"""Every error is JSON in the API's shape."""

from __future__ import annotations


def _assert_error(response, status):
    assert response.status_code == status
    assert response.is_json
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["message"]


def test_unknown_route_is_json_404(client):
    _assert_error(client.get("/api/v1/nope"), 404)


def test_wrong_method_is_json_405(client):
    _assert_error(client.put("/api/v1/health"), 405)


def test_body_too_large_is_413(client, tenant, app):
    limit = app.config["BODY_MAX_BYTES"]
    response = tenant.agent.post(
        "/api/v1/tickets", data=b"x" * (limit + 1), headers={"Content-Type": "application/json"}
    )
    _assert_error(response, 413)


def test_unexpected_exception_is_json_500_with_request_id(app, tenant, monkeypatch, caplog):
    from webapp.tickets import reads as domain

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(domain, "list_tickets", boom)
    response = tenant.viewer.get("/api/v1/tickets", headers={"X-Request-ID": "req-123"})
    _assert_error(response, 500)
    assert response.get_json()["error"]["details"]["request_id"] == "req-123"
    assert "kaboom" not in response.get_data(as_text=True)
    assert any("req-123" in record.getMessage() for record in caplog.records)
