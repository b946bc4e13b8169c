"""Each route has its own body limit, refused with 413 before the body is parsed; the strict JSON
decoder refuses documents with too many values or too long a string."""

from __future__ import annotations

import io
import json

import pytest

from webapp.core import strict_json
from webapp.models import Job

HOSTILE_LOGIN = b"[" + b"{}," * (4 * 1024 * 1024 // 3) + b"{}]"  # the outside client's 4 MiB body


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    return response.get_json()["error"]


@pytest.fixture
def parses(monkeypatch):
    """Counts the JSON documents the strict decoder is asked to parse."""
    calls = []
    real = strict_json.loads

    def counting(text, **kw):
        calls.append(len(text))
        return real(text, **kw)

    monkeypatch.setattr(strict_json, "loads", counting)
    return calls


def test_a_4_mib_login_body_is_413_before_parsing(client, app, parses):
    response = client.post("/api/v1/auth/login", data=HOSTILE_LOGIN, content_type="application/json")
    error = _error(response, 413)
    assert error["details"] == {
        "max_bytes": app.config["AUTH_BODY_MAX_BYTES"],
        "setting": "AUTH_BODY_MAX_BYTES",
    }
    assert "AUTH_BODY_MAX_BYTES" in error["message"]
    assert parses == []


@pytest.mark.parametrize("path", ["/api/v1/auth/refresh", "/api/v1/auth/logout"])
def test_token_routes_take_the_auth_limit(client, app, path, parses):
    body = b"x" * (app.config["AUTH_BODY_MAX_BYTES"] + 1)
    assert (
        _error(client.post(path, data=body, content_type="application/json"), 413)["details"]["max_bytes"]
        == (app.config["AUTH_BODY_MAX_BYTES"])
    )
    assert parses == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/v1/nowhere", 404),
        ("PATCH", "/api/v1/schedules/1.5e-38", 404),
        ("PUT", "/api/v1/health", 405),
    ],
)
def test_a_path_no_route_serves_is_404_or_405_whatever_its_body(client, app, method, path, status, parses):
    body = b"x" * (app.config["BODY_MAX_BYTES"] + 1)
    _error(client.open(path, method=method, data=body, content_type="application/json"), status)
    assert parses == []


def test_a_compressed_body_is_415_naming_the_encoding(tenant):
    import gzip

    body = gzip.compress(b'{"subject": "zipped"}')
    response = tenant.agent.post(
        "/api/v1/tickets", data=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )
    error = _error(response, 415)
    assert "gzip" in error["message"]
    assert error["details"] == {"field": "Content-Encoding"}
    # identity is no encoding at all
    plain = tenant.agent.post(
        "/api/v1/tickets", json={"subject": "plain"}, headers={"Content-Encoding": "identity"}
    )
    assert plain.status_code == 201


def test_a_plain_request_to_the_socket_path_is_426_naming_websocket(client, tenant):
    path = f"/api/v1/ws/analytics/{tenant.org_id}"
    for response in (client.get(path), tenant.viewer.get(path)):
        assert _error(response, 426)["code"] == "upgrade_required"
        assert response.headers["Upgrade"] == "websocket"


def test_an_unannounced_chunked_body_is_cut_at_the_limit(client, app, parses):
    limit = app.config["AUTH_BODY_MAX_BYTES"]
    response = client.post(
        "/api/v1/auth/login",
        input_stream=io.BytesIO(b"[" + b"{}," * limit + b"{}]"),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert _error(response, 413)["details"]["max_bytes"] == limit
    assert parses == []


def _chunked(client, path: str, body: bytes, content_type: str = "application/json"):
    """POST `body` chunked: no length announced, its end told by the server (gunicorn's input)."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        content_type=content_type,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_an_unannounced_body_past_the_limit_is_refused_not_cut(tenant, app):
    """Cut at the limit, this body would still be a valid document (its padding is what goes): it is
    refused whole, and nothing is written. One of exactly the limit is taken."""
    limit = app.config["BODY_MAX_BYTES"]
    document = b'{"subject": "padded"}'
    over = document + b" " * (limit + 1 - len(document))
    assert _error(_chunked(tenant.agent, "/api/v1/tickets", over), 413)["details"] == {
        "max_bytes": limit,
        "setting": "BODY_MAX_BYTES",
    }
    assert tenant.agent.get("/api/v1/tickets").get_json()["items"] == []
    at_limit = document + b" " * (limit - len(document))
    assert _chunked(tenant.agent, "/api/v1/tickets", at_limit).status_code == 201


def test_an_unannounced_import_past_its_limit_imports_nothing(tenant, app, monkeypatch):
    monkeypatch.setitem(app.config, "IMPORT_MAX_BYTES", 64 * 1024)
    line = b'{"subject": "row"}\n'
    body = line * (64 * 1024 // len(line) + 10)  # whole rows up to the limit and past it
    response = _chunked(tenant.agent, "/api/v1/tickets/import", body, "application/x-ndjson")
    assert _error(response, 413)["details"] == {"max_bytes": 64 * 1024, "setting": "IMPORT_MAX_BYTES"}
    assert tenant.agent.get("/api/v1/jobs").get_json()["items"] == []


def test_ordinary_routes_take_body_max_bytes_and_nothing_is_written(tenant, app, db_session):
    limit = app.config["BODY_MAX_BYTES"]
    subject = "x" * (limit + 10)
    response = tenant.agent.post("/api/v1/tickets", json={"subject": subject})
    assert _error(response, 413)["details"] == {"max_bytes": limit, "setting": "BODY_MAX_BYTES"}
    assert tenant.agent.get("/api/v1/tickets").get_json()["items"] == []


def test_imports_take_import_max_bytes(tenant, app, monkeypatch):
    monkeypatch.setitem(app.config, "IMPORT_MAX_BYTES", 300 * 1024)
    rows = b'[{"subject": "padded"}]'
    within = rows + b" " * (280 * 1024)  # past BODY_MAX_BYTES, within the import limit
    assert len(within) > app.config["BODY_MAX_BYTES"]
    response = tenant.agent.post("/api/v1/tickets/import", data=within, content_type="application/json")
    assert response.status_code == 202, response.get_json()
    too_big = tenant.agent.post(
        "/api/v1/tickets/import", data=rows + b" " * (300 * 1024), content_type="application/json"
    )
    assert _error(too_big, 413)["details"] == {"max_bytes": 300 * 1024, "setting": "IMPORT_MAX_BYTES"}


def test_a_small_login_still_works(client, tenant):
    email = tenant.users["viewer"]["email"]
    response = client.post(
        "/api/v1/auth/login", json={"email": email, "password": tenant.users["viewer"]["password"]}
    )
    assert response.status_code == 200


def test_the_decoder_refuses_too_many_values():
    strict_json.loads("[" + ",".join(["1"] * 1000) + "]", max_elements=1000)
    with pytest.raises(strict_json.JsonError, match="more than 1000 values"):
        strict_json.loads("[" + ",".join(["{}"] * 1001) + "]", max_elements=1000)
    with pytest.raises(strict_json.JsonError, match="more than 10 values"):
        strict_json.loads('{"a": [1, 2, 3, 4, 5], "b": {"c": [1, 2, 3, 4]}}', max_elements=10)


def test_the_decoder_counts_an_arrays_items_before_walking_its_values(monkeypatch):
    """An import of too many rows is refused on its row count, before a value is walked."""
    walked = []
    monkeypatch.setattr(strict_json, "_check_shape", lambda *args, **kwargs: walked.append(1))
    with pytest.raises(strict_json.TooManyItems, match="more than 3 items"):
        strict_json.loads("[{}, {}, {}, {}]", max_items=3)
    assert walked == []
    assert strict_json.loads("[{}, {}, {}]", max_items=3) == [{}, {}, {}]


def test_the_decoder_refuses_long_strings_and_keys():
    strict_json.loads('["' + "a" * 100 + '"]', max_string=100)
    with pytest.raises(strict_json.JsonError, match="string is longer than 100"):
        strict_json.loads('["' + "a" * 101 + '"]', max_string=100)
    with pytest.raises(strict_json.JsonError, match="key is longer than 100"):
        strict_json.loads('{"' + "k" * 101 + '": 1}', max_string=100)
    with pytest.raises(strict_json.JsonError, match="string is longer"):
        strict_json.loads('"' + "a" * (strict_json.MAX_STRING_CHARS + 1) + '"')


def test_a_json_body_with_too_many_values_is_a_400(tenant, app, monkeypatch):
    body = b'{"subject": "x", "junk": [' + b",".join([b"0"] * (strict_json.MAX_ELEMENTS + 1)) + b"]}"
    monkeypatch.setitem(app.config, "BODY_MAX_BYTES", len(body) + 1)
    error = _error(tenant.agent.post("/api/v1/tickets", data=body, content_type="application/json"), 400)
    assert f"more than {strict_json.MAX_ELEMENTS} values" in error["message"]


def test_an_import_of_many_replies_is_bounded_by_its_size_and_rows_not_by_values(tenant, app, db_session):
    """A JSON array whose rows carry many replies holds more values than MAX_ELEMENTS within the
    import's byte and row limits: accepted, as the same rows in NDJSON are (found from outside)."""
    replies = [{"author": "agent", "at": "2026-03-02T10:00:00+00:00"}] * 60
    row = {"subject": "chatty", "created_at": "2026-03-02T09:00:00+00:00", "replies": replies}
    body = json.dumps([row] * (strict_json.MAX_ELEMENTS // 180 + 1)).encode()
    assert len(body) < app.config["IMPORT_MAX_BYTES"]
    with pytest.raises(strict_json.JsonError, match="values"):  # past what any other body may hold
        strict_json.loads(body)
    response = tenant.agent.post("/api/v1/tickets/import", data=body, content_type="application/json")
    assert response.status_code == 202, response.get_json()
    assert db_session.get(Job, response.get_json()["job_id"]) is not None


def test_a_get_announcing_a_body_past_the_limit_is_413_and_a_small_one_is_ignored(tenant, app):
    limit = app.config["BODY_MAX_BYTES"]
    # The body is never read: the announced length alone decides.
    big = tenant.viewer.get(
        "/api/v1/tickets", data=b"x" * (limit + 1), headers={"Content-Type": "application/json"}
    )
    assert _error(big, 413)["details"]["max_bytes"] == limit
    small = tenant.viewer.get("/api/v1/tickets", data=b"{}", headers={"Content-Type": "application/json"})
    assert small.status_code == 200


def test_a_socket_asked_of_a_path_that_serves_none_says_so(client):
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
    error = _error(client.get("/api/v1/health", headers=upgrade), 400)
    assert "not a WebSocket" in error["message"]
