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


def test_a_malformed_token_or_a_huge_number_is_said_in_plain_words(client, tenant):
    """Found from outside: the JWT library's and Python's own words ("'utf-8' codec can't decode byte",
    "use sys.set_int_max_str_digits() to increase the limit") reached clients."""
    answer = client.get("/api/v1/tickets", headers={"Authorization": "Bearer abc.def.ghi"})
    assert answer.status_code == 401
    message = answer.get_json()["error"]["message"]
    assert message.startswith("invalid token: not a well-formed JWT"), message
    assert "codec" not in message
    huge = tenant.agent.client.post(
        "/api/v1/tickets",
        data='{"sentiment_score": 1' + "0" * 5000 + "}",
        headers={"Authorization": f"Bearer {tenant.agent.token}", "Content-Type": "application/json"},
    )
    assert huge.status_code == 400
    message = huge.get_json()["error"]["message"]
    assert "digits than the platform reads" in message, message
    assert "sys." not in message


def test_a_body_that_is_not_utf8_is_said_so(client, tenant):
    """Found in review: invalid UTF-8 was refused as 'a number has more digits than the platform reads'."""
    answer = tenant.agent.client.post(
        "/api/v1/tickets",
        data=b'{"subject": "\xff"}',
        headers={"Authorization": f"Bearer {tenant.agent.token}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert "not UTF-8" in answer.get_json()["error"]["message"], answer.get_json()


def test_a_utf16_or_utf32_body_is_refused_like_any_body_that_is_not_utf8(client, tenant):
    """JSON is exchanged as UTF-8 (RFC 8259): a UTF-16 or UTF-32 body was read (json.loads guesses
    them from zero bytes) while invalid UTF-8 was refused. A UTF-8 byte order mark is ignored."""
    headers = {"Authorization": f"Bearer {tenant.agent.token}", "Content-Type": "application/json"}
    body = '{"subject": "übersetzt"}'
    for encoding in ("utf-16", "utf-16-le", "utf-32", "utf-32-be"):
        answer = tenant.agent.client.post("/api/v1/tickets", data=body.encode(encoding), headers=headers)
        assert answer.status_code == 400, (encoding, answer.get_json())
        assert "UTF-16 or UTF-32" in answer.get_json()["error"]["message"], answer.get_json()
    with_mark = tenant.agent.client.post("/api/v1/tickets", data=body.encode("utf-8-sig"), headers=headers)
    assert with_mark.status_code == 201, with_mark.get_json()
    assert with_mark.get_json()["subject"] == "übersetzt"
