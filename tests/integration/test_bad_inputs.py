"""Inputs an outside audit found answered with 500 or silently accepted: each is a 4xx in the error
shape now, and nothing of it is written."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from urllib.parse import quote as requests_quote
from zoneinfo import ZoneInfo

import pytest

from tests.integration.documented_operations import declares_query, example_path, operations

SERIES = "/api/v1/analytics/time-series/ticket_count?granularity=daily"


def _error(response, status: int = 400) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return body["error"]


def _tickets(api) -> int:
    listed = api.get("/api/v1/tickets?limit=500")
    assert listed.status_code == 200
    return len(listed.get_json()["items"])


def _post_raw(api, path: str, data: str | bytes, content_type: str = "application/json"):
    return api.post(path, data=data, headers={"Content-Type": content_type})


@pytest.mark.parametrize(
    "moment",
    ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00", "1899-12-31T23:59:59Z", "1850-06-01T12:00:00-05:00"],
)
def test_timestamps_before_1900_are_refused_and_nothing_is_written(tenant, moment):
    before = _tickets(tenant.agent)
    error = _error(tenant.agent.post("/api/v1/tickets", json={"subject": "ancient", "created_at": moment}))
    assert "1900" in error["message"]
    assert _tickets(tenant.agent) == before
    ticket = tenant.agent.post("/api/v1/tickets", json={"subject": "now"}).get_json()
    patched = tenant.agent.patch(f"/api/v1/tickets/{ticket['id']}", json={"first_response_at": moment})
    assert patched.status_code == 400
    assert tenant.agent.get(f"/api/v1/tickets/{ticket['id']}").status_code == 200


@pytest.mark.parametrize(
    "tz",
    [
        "America",
        "Etc",
        "Europe/",
        "America/../Europe/Berlin",
        "Not/AZone",
        "right/Europe/Berlin",
        "posix/UTC",
        "localtime",
        "Factory",
    ],
)
def test_time_zone_names_that_are_folders_or_nonsense_are_400(tenant, tz):
    assert _error(tenant.viewer.get(f"{SERIES}&tz={tz}"))
    for path in ("/api/v1/analytics/distribution/status", "/api/v1/analytics/performance"):
        assert _error(tenant.viewer.get(f"{path}?tz={tz}"))
    assert _error(tenant.viewer.get(f"/api/v1/analytics/dashboard?tz={tz}"))
    body = {"metrics": ["ticket_count"], "tz": tz}
    assert _error(tenant.viewer.post("/api/v1/analytics/aggregations", json=body))
    export = {"format": "csv", "dataset": "tickets", "query": {"tz": tz}}
    assert _error(tenant.viewer.post("/api/v1/analytics/export", json=export))


@pytest.mark.parametrize(
    "query",
    [
        "start=0001-01-01T00:00:00Z&end=0001-02-01T00:00:00Z",
        "start=9999-12-01&end=9999-12-31",
        "start=1899-01-01&end=1900-01-02",
    ],
)
def test_ranges_outside_the_supported_years_are_400_on_every_route(tenant, query):
    for path in (
        "/api/v1/analytics/time-series/ticket_count",
        "/api/v1/analytics/distribution/status",
        "/api/v1/analytics/performance",
        "/api/v1/analytics/dashboard",
    ):
        assert "1900" in _error(tenant.viewer.get(f"{path}?{query}"))["message"], path


def test_the_years_bound_the_instant_whether_a_bound_is_written_as_a_date_or_a_time(make_tenant):
    """East of Greenwich the first hours of 1900 are instants of 1899: a date and the same midnight
    written as a time are both refused, naming the instant; west of it both are read."""
    path = "/api/v1/analytics/time-series/ticket_count?granularity=monthly&end=1900-03-01"
    chatham = make_tenant("East", "Pacific/Chatham")
    for start in ("1900-01-01", "1900-01-01T00:00:00"):
        error = _error(chatham.viewer.get(f"{path}&start={start}"))
        assert error["message"].startswith("start 1900-01-01T00:00:00+12:15 ")
        assert "(1899-12-31T11:45:00Z)" in error["message"]
        assert "1900-01-01T00:00Z to 2200-01-01T00:00Z" in error["message"]
    new_york = make_tenant("West", "America/New_York")
    for start in ("1900-01-01", "1900-01-01T00:00:00"):
        answer = new_york.viewer.get(f"{path}&start={start}")
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["start"] == "1900-01-01T00:00:00-05:00"


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1899-12-31", "2200-01-01"])
@pytest.mark.parametrize("kind", ["daily", "weekly", "monthly"])
def test_snapshot_dates_outside_the_supported_years_are_400(tenant, kind, day):
    assert _error(tenant.admin.post("/api/v1/analytics/snapshots", json={"type": kind, "date": day}))


def test_a_daily_snapshot_of_a_date_the_clock_skipped_is_400_and_its_week_a_job(make_tenant):
    tenant = make_tenant("Skipped", "Pacific/Apia")
    error = _error(
        tenant.admin.post("/api/v1/analytics/snapshots", json={"type": "daily", "date": "2011-12-30"})
    )
    assert error["details"]["field"] == "date"
    assert "skipped" in error["message"]
    week = tenant.admin.post("/api/v1/analytics/snapshots", json={"type": "weekly", "date": "2011-12-30"})
    assert week.status_code == 202, week.get_json()


@pytest.mark.parametrize("kind", ["daily", "weekly", "monthly"])
def test_a_snapshot_of_a_period_not_begun_is_400_and_one_begun_today_a_job(make_tenant, kind):
    # Pacific/Kiritimati (UTC+14) is a day ahead of UTC for ten hours of every day: its today counts.
    tenant = make_tenant("Ahead", "Pacific/Kiritimati")
    today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    after = {"daily": today + timedelta(days=1), "weekly": today + timedelta(days=7 - today.weekday())}
    after["monthly"] = (today.replace(day=28) + timedelta(days=4)).replace(day=1)
    error = _error(
        tenant.admin.post("/api/v1/analytics/snapshots", json={"type": kind, "date": str(after[kind])})
    )
    assert error["details"]["field"] == "date"
    assert "has not begun" in error["message"]
    begun = tenant.admin.post("/api/v1/analytics/snapshots", json={"type": kind, "date": str(today)})
    assert begun.status_code == 202, begun.get_json()


@pytest.mark.parametrize(
    "body",
    [
        '[{"subject": "x", "sentiment_score": NaN}]',
        '[{"subject": "x", "sentiment_score": Infinity}]',
        '[{"subject": "x", "sentiment_score": -Infinity}]',
        '[{"subject": "x", "sentiment_score": 1e400}]',
        '[{"subject": "x", "sentiment_score": ' + "9" * 5000 + "}]",
        "[" * 5000 + "]" * 5000,
    ],
)
@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
def test_imports_with_numbers_or_nesting_json_cannot_hold_are_400(tenant, body, content_type):
    if content_type == "application/x-ndjson":
        body = body[1:-1] if body.startswith("[{") else body
    error = _error(_post_raw(tenant.agent, "/api/v1/tickets/import", body, content_type))
    assert "JSON" in error["message"]
    assert tenant.agent.get("/api/v1/jobs?kind=import").get_json()["items"] == []


def test_an_unterminated_csv_quote_is_400(tenant):
    error = _error(_post_raw(tenant.agent, "/api/v1/tickets/import", 'subject\n"abc\n', "text/csv"))
    assert "CSV" in error["message"]


@pytest.mark.parametrize(
    "path",
    ["/api/v1/auth/login", "/api/v1/tickets", "/api/v1/analytics/aggregations", "/api/v1/analytics/export"],
)
def test_deeply_nested_json_bodies_are_400(tenant, path):
    assert _error(_post_raw(tenant.admin, path, "[" * 1500 + "]" * 1500))
    assert _error(_post_raw(tenant.admin, path, '{"a":' * 100 + "1" + "}" * 100))
    assert _error(_post_raw(tenant.admin, path, '{"subject": NaN}'))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/tickets", '{"subject": "a", "subject": "b"}'),
        ("/api/v1/tickets/import", '[{"subject": "a", "priority": "low", "priority": "high"}]'),
        ("/api/v1/schedules", '{"name": "x", "timezone": "UTC", "intervals": [], "name": "y"}'),
        ("/api/v1/auth/login", '{"email": "a@b.test", "password": "x", "password": "y"}'),
    ],
)
def test_a_key_repeated_in_one_json_object_is_400_and_nothing_is_written(tenant, path, body):
    before = _tickets(tenant.admin)
    error = _error(_post_raw(tenant.admin, path, body))
    assert "more than once" in error["message"]
    assert _tickets(tenant.admin) == before


@pytest.mark.parametrize(
    "body",
    [
        {"subject": "x", "sentiment_score": True},
        {"subject": "x", "sentiment_score": "0.5"},
    ],
)
def test_a_ticket_field_of_the_wrong_json_type_is_400(tenant, body):
    before = _tickets(tenant.agent)
    error = _error(tenant.agent.post("/api/v1/tickets", json=body))
    assert error["details"]["errors"][0]["field"] == "sentiment_score"
    assert _tickets(tenant.agent) == before


@pytest.mark.parametrize(
    ("body", "content_type", "problem"),
    [
        ('[{"subject": "a\\u0000b"}]', "application/json", "NUL"),
        ('{"subject": "ok", "category": "x\\u0000"}', "application/x-ndjson", "NUL"),
        ('[{"subject": "\\ud800"}]', "application/json", "surrogate"),
        ('[{"subject": "ok", "assigned_to": "\\udfff x"}]', "application/json", "surrogate"),
        ("subject,category\na\x00b,x\n", "text/csv", "NUL"),
        # A CSV import's JSON cells have JSON's escapes.
        ('subject,satisfaction\nhi,"{""rating"": 5, ""comment"": ""a\\u0000b""}"\n', "text/csv", "NUL"),
    ],
)
def test_imports_with_text_postgresql_cannot_store_are_400(tenant, body, content_type, problem):
    error = _error(_post_raw(tenant.agent, "/api/v1/tickets/import", body.encode(), content_type))
    assert problem in error["message"]
    assert tenant.agent.get("/api/v1/jobs?kind=import").get_json()["items"] == []


@pytest.mark.parametrize(
    ("body", "content_type", "line"),
    [
        ('[{"subject": "ok"}, {"subject": "a\\u0000b"}, {"subject": "ok"}]', "application/json", None),
        ('{"subject": "ok"}\n\n{"subject": "a\\u0000b"}\n', "application/x-ndjson", 3),
        ('subject,satisfaction\nok,\nhi,"{""rating"": 5, ""comment"": ""a\\u0000b""}"\n', "text/csv", 3),
    ],
)
def test_an_imports_text_postgresql_cannot_store_is_named_by_its_row(tenant, body, content_type, line):
    """As every other row error: the row (and the body's line, where lines mean something)."""
    error = _error(_post_raw(tenant.agent, "/api/v1/tickets/import", body.encode(), content_type))
    assert error["message"] == "row 2 contains a NUL character", error
    assert error["details"]["row"] == 2, error
    assert error["details"].get("line") == line, error


def test_imports_with_harmless_json_escapes_are_accepted(tenant):
    accepted = _post_raw(tenant.agent, "/api/v1/tickets/import", '[{"subject": "caf\\u00e9 \\ud83d\\ude00"}]')
    assert accepted.status_code == 202, accepted.get_json()


def test_csv_imports_still_read_scores_from_text(tenant):
    accepted = _post_raw(
        tenant.agent, "/api/v1/tickets/import", "subject,sentiment_score\na,0.25\nb,-1\n", "text/csv"
    )
    assert accepted.status_code == 202, accepted.get_json()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("percentiles", ["50"]),
        ("percentiles", [True]),
        ("percentiles", [50.5]),
        ("async", "yes"),
        ("exact", 1),
    ],
)
def test_aggregation_fields_of_the_wrong_json_type_are_400(tenant, field, value):
    body = {"metrics": ["response_time"], field: value}
    error = _error(tenant.viewer.post("/api/v1/analytics/aggregations", json=body))
    assert field in json.dumps(error)
    assert tenant.viewer.get("/api/v1/jobs").get_json()["items"] == []


@pytest.mark.parametrize("raw", ["category=%FF", "category=%ED%B3%BF", "status=open&x%C3=1"])
def test_query_strings_that_are_not_utf8_are_400(tenant, raw):
    assert "UTF-8" in _error(tenant.viewer.get(f"{SERIES}&{raw}"))["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/users"),
        ("delete", "/api/v1/analytics/cache"),
        ("post", "/api/v1/analytics/refresh-cache"),
        ("post", "/api/v1/ws/ticket"),
        ("get", "/api/v1/jobs/00000000-0000-0000-0000-000000000000"),
    ],
)
def test_routes_without_query_parameters_refuse_any(tenant, method, path):
    error = _error(getattr(tenant.admin, method)(f"{path}?bogus=1"))
    assert error["details"]["field"] == "bogus"


# The routes open without a token, which ignore query parameters they do not declare (a health probe's
# or a docs link's cache-buster is no mistake to refuse); SECURITY.md names the same ones.
OPEN_ROUTES = {
    ("get", "/api/v1/health"),
    ("get", "/api/v1/ping"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/docs"),
    ("post", "/api/v1/auth/login"),
}


def test_open_routes_ignore_query_parameters(client):
    assert client.get("/api/v1/health?probe=1").status_code == 200
    assert client.get("/api/v1/ping?probe=1").status_code == 200
    assert client.get("/api/v1/openapi.json?v=2").status_code == 200
    assert client.get("/api/v1/docs?v=2").status_code == 200


def test_every_route_without_query_parameters_refuses_any_but_the_open_ones(client, tenant):
    """SECURITY.md's rule, over the whole document: an operation that declares no query parameter
    answers 400 naming an unknown one, unless it is open without a token (OPEN_ROUTES), where the
    parameter changes nothing, or is the WebSocket handshake."""
    token = {"Authorization": f"Bearer {tenant.users['admin']['token']}"}
    ignoring = set()
    for method, path, operation in operations(client):
        if declares_query(operation) or "101" in operation["responses"]:
            continue  # the WebSocket handshake takes its ticket or token there (test_websocket.py)
        url = example_path(path, operation)
        answer = client.open(f"{url}?bogus=1", method=method.upper(), headers=token)
        if operation["security"] == []:
            plain = client.open(url, method=method.upper(), headers=token)
            assert answer.status_code == plain.status_code, (method, path)
            ignoring.add((method, path))
        else:
            assert answer.status_code == 400, (method, path, answer.status_code)
            assert answer.get_json()["error"]["details"]["field"] == "bogus", (method, path)
    assert ignoring == OPEN_ROUTES


# The operations that may carry a body by their method but take none.
BODYLESS = {
    ("post", "/api/v1/analytics/refresh-cache"),
    ("post", "/api/v1/webhooks/{webhook_id}/test"),
    ("post", "/api/v1/report-schedules/{report_schedule_id}/run"),
    ("post", "/api/v1/ws/ticket"),
}


def test_every_route_without_a_body_refuses_one(client, tenant):
    """An outside tester's `POST /report-schedules/{id}/run {"x": 1}` ran the report, where every
    body with a field its route does not know is a 400: a route that takes no body refuses one (an
    empty one, {} and null are none), before it does anything."""
    token = {"Authorization": f"Bearer {tenant.users['admin']['token']}"}
    bodyless = set()
    for method, path, operation in operations(client):
        if method not in ("post", "put", "patch") or "requestBody" in operation:
            continue
        bodyless.add((method, path))
        url = example_path(path, operation)
        answer = client.open(url, method=method.upper(), headers=token, json={"x": 1})
        assert answer.status_code == 400, (method, path, answer.status_code)
        assert "takes no body" in answer.get_json()["error"]["message"]
    assert bodyless == BODYLESS
    # None is what the decoder reads as nothing, {} or null: a byte order mark and JSON's white space
    # around them; other white space, or anything else, is a body.
    for raw, status in (
        (b"\xef\xbb\xbf{}", 200),
        (b" {\r\n} ", 200),
        (b"\tnull\n", 200),
        (b"nu ll", 400),
        (b"{\x0c}", 400),
        (b"[]", 400),
    ):
        answer = client.post("/api/v1/ws/ticket", headers=token, data=raw, content_type="application/json")
        assert answer.status_code == status, (raw, answer.get_json())
    for body in (None, {}, "null"):
        kwargs = (
            {"data": body, "content_type": "application/json"} if isinstance(body, str) else {"json": body}
        )
        answer = client.post("/api/v1/ws/ticket", headers=token, **kwargs)
        assert answer.status_code in (200, 503), (body, answer.get_json())


@pytest.mark.parametrize("value", [1767225600, "1767225600", 0, -62135596800, True])
def test_timestamps_must_be_iso_text_not_unix_numbers(tenant, value):
    error = _error(tenant.agent.post("/api/v1/tickets", json={"subject": "x", "created_at": value}))
    assert error["details"]["errors"][0]["field"] == "created_at"


@pytest.mark.parametrize("name", ["created_at", "first_response_at", "resolved_at"])
def test_a_ticket_time_cannot_be_cleared(tenant, name):
    ticket = tenant.agent.post("/api/v1/tickets", json={"subject": "x"}).get_json()
    error = _error(tenant.agent.patch(f"/api/v1/tickets/{ticket['id']}", json={name: None}))
    assert error["details"]["field"] == name


def test_async_is_spelled_async(tenant):
    body = {"metrics": ["ticket_count"], "async_": True}
    assert _error(tenant.viewer.post("/api/v1/analytics/aggregations", json=body))


def test_a_filter_value_holding_a_comma_is_written_in_double_quotes(make_tenant):
    tenant = make_tenant("Commas", "UTC")
    for category in ("returns, damaged", "returns", "damaged", 'say "hi"', "billing", '24" monitors'):
        assert tenant.agent.post("/api/v1/tickets", json={"category": category}).status_code == 201
    series = "/api/v1/analytics/time-series/ticket_count?granularity=daily"
    expected = {
        '"returns, damaged"': ["returns, damaged"],
        '"returns, damaged",billing': ["billing", "returns, damaged"],
        ' "returns, damaged" , "billing"': ["billing", "returns, damaged"],
        "returns,damaged": ["damaged", "returns"],
        '"say ""hi"""': ['say "hi"'],
        # A quote that does not begin a value is an ordinary character.
        '24" monitors,billing': ['24" monitors', "billing"],
    }
    for raw, values in expected.items():
        quoted = requests_quote(raw)
        answer = tenant.viewer.get(f"{series}&category={quoted}").get_json()
        assert answer["filters"]["category"] == values, raw
        assert answer["summary"]["total_count"] == len(values), raw
        listed = tenant.viewer.get(f"/api/v1/tickets?category={quoted}").get_json()["items"]
        assert sorted(t["category"] for t in listed) == values, raw
    unclosed = requests_quote('"open')
    error = _error(tenant.viewer.get(f"{series}&category={unclosed}"))
    assert error["details"]["field"] == "category"


def test_an_assignee_named_null_is_filtered_in_double_quotes(make_tenant):
    """`assigned_to=null` is the unassigned tickets; `"null"` in double quotes the assignee of that name."""
    tenant = make_tenant("Null agent", "UTC")
    for assignee in ("null", None, "ana"):
        assert tenant.agent.post("/api/v1/tickets", json={"assigned_to": assignee}).status_code == 201
    series = "/api/v1/analytics/time-series/ticket_count?granularity=daily"
    expected = {"null": [None], '"null"': ["null"], '"null",null': ["null", None], "ana,null": ["ana", None]}
    for raw, values in expected.items():
        answer = tenant.viewer.get(f"{series}&assigned_to={requests_quote(raw)}").get_json()
        assert answer["filters"]["assigned_to"] == values, raw
        assert answer["summary"]["total_count"] == len(values), raw


@pytest.mark.parametrize("zero", ["\uff10", "\u0660", "\U0001d7ce"])  # full-width, Arabic-Indic, bold
def test_an_id_in_digits_other_than_ascii_names_nothing(tenant, zero, app, monkeypatch):
    """`\\d` and int() read any script's digits: a full-width or Arabic-Indic 2 named object 2, and a
    DELETE removed it. Such a path is no route (404, the error shape) and the object stays."""
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOW_PRIVATE", True)
    hook = tenant.admin.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/in"}).get_json()["id"]
    other_digits = "".join(chr(ord(zero) + int(d)) for d in str(hook))
    assert int(other_digits) == hook  # what the old converter read
    spelled = requests_quote(other_digits)
    for method in ("get", "delete"):
        _error(getattr(tenant.admin, method)(f"/api/v1/webhooks/{spelled}"), 404)
    assert tenant.admin.get(f"/api/v1/webhooks/{hook}").status_code == 200
