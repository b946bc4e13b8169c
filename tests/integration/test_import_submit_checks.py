"""An import's rows are refused at submit by every per-row rule POST /tickets applies (an outside tester
found rows POST /tickets refuses accepted with 202, then failed by the job while it held a job slot)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from webapp.models import Job

BERLIN = "Europe/Berlin"
# Each row with the field its refusal names; None marks a row every rule accepts.
ROWS: list[tuple[dict[str, Any], str | None]] = [
    ({"subject": "fine", "created_at": "2026-03-01T09:00:00"}, None),
    (
        {
            "subject": "resolved before created",
            "created_at": "2026-03-02T10:00:00+01:00",
            "resolved_at": "2026-03-02T09:00:00+01:00",
        },
        "resolved_at",
    ),
    # 02:00 to 03:00 on 29 March 2026 does not exist in Berlin (clocks go from 02:00 to 03:00).
    ({"subject": "spring gap", "created_at": "2026-03-29T02:30:00"}, "created_at"),
    # 02:00 to 03:00 on 25 October 2026 happens twice in Berlin (clocks go from 03:00 back to 02:00).
    ({"subject": "autumn repeat", "created_at": "2026-10-25T02:30:00"}, "created_at"),
    (
        {
            "subject": "first response before created",
            "created_at": "2026-03-04T10:00:00+01:00",
            "first_response_at": "2026-03-04T08:00:00+01:00",
        },
        "first_response_at",
    ),
    (
        {
            "subject": "history descends",
            "created_at": "2026-03-03T09:00:00+01:00",
            "status_history": [
                {"status": "open", "at": "2026-03-03T09:00:00+01:00"},
                {"status": "resolved", "at": "2026-03-03T12:00:00+01:00"},
                {"status": "open", "at": "2026-03-03T11:00:00+01:00"},
            ],
        },
        "status_history",
    ),
    (
        {
            "subject": "first response after the first agent reply",
            "created_at": "2026-03-05T09:00:00+01:00",
            "first_response_at": "2026-03-05T11:00:00+01:00",
            "replies": [{"author": "agent", "at": "2026-03-05T10:00:00+01:00"}],
        },
        "first_response_at",
    ),
    (
        {
            "subject": "fine with a history",
            "created_at": "2026-03-06T09:00:00+01:00",
            "status_history": [
                {"status": "open", "at": "2026-03-06T09:00:00+01:00"},
                {"status": "resolved", "at": "2026-03-06T12:00:00+01:00"},
            ],
        },
        None,
    ),
    # An offset with seconds, as exports write a local mean time (an export imported back).
    ({"subject": "local mean time", "created_at": "1960-06-01T11:15:30-00:44:30"}, None),
]
FLAT_FIELDS = {"subject", "created_at", "first_response_at", "resolved_at"}


def _csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV: a column per field, JSON cells for lists, an empty cell where a row has none."""
    names = sorted({name for row in rows for name in row})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(names)
    for row in rows:
        cells = [row.get(name, "") for name in names]
        writer.writerow([json.dumps(c) if isinstance(c, (list, dict)) else c for c in cells])
    return out.getvalue()


def _body(rows: list[dict[str, Any]], content_type: str) -> str:
    if content_type == "application/json":
        return json.dumps(rows)
    if content_type == "application/x-ndjson":
        return "".join(json.dumps(row) + "\n" for row in rows)
    return _csv(rows)


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson", "text/csv"])
def test_rows_post_tickets_refuses_are_refused_at_submit_each_named(make_tenant, db_session, content_type):
    tenant = make_tenant(timezone=BERLIN)
    rows = [row for row, _ in ROWS]
    refused = tenant.agent.post(
        "/api/v1/tickets/import",
        data=_body(rows, content_type),
        headers={"Content-Type": content_type},
    )
    assert refused.status_code == 400, refused.get_json()
    details = refused.get_json()["error"]["details"]
    expected = [(number, field) for number, (_, field) in enumerate(ROWS, start=1) if field is not None]
    assert (details["rows"], details["invalid"]) == (len(ROWS), len(expected))
    assert [(e["row"], e["field"]) for e in details["errors"]] == expected
    messages = {e["row"]: e["message"] for e in details["errors"]}
    assert "does not exist" in messages[3]
    assert "ambiguous" in messages[4]
    assert "ascending" in messages[6]
    # No job row, so no job slot held.
    assert db_session.query(Job).filter_by(org_id=tenant.org_id).count() == 0
    assert tenant.agent.get("/api/v1/jobs?kind=import").get_json()["items"] == []


def test_the_same_rows_are_refused_by_post_tickets_on_the_same_field(make_tenant):
    """The import's refusals above are POST /tickets' own, for the rows it takes (no import-only field)."""
    tenant = make_tenant(timezone=BERLIN)
    for row, field in ROWS:
        if not set(row) <= FLAT_FIELDS:
            continue
        answer = tenant.agent.post("/api/v1/tickets", json=row)
        if field is None:
            assert answer.status_code == 201, answer.get_json()
        else:
            assert answer.status_code == 400, answer.get_json()
            assert answer.get_json()["error"]["details"]["field"] == field


def test_rows_every_rule_accepts_still_make_a_job(make_tenant):
    tenant = make_tenant(timezone=BERLIN)
    rows = [row for row, field in ROWS if field is None]
    accepted = tenant.agent.post("/api/v1/tickets/import", json=rows)
    assert accepted.status_code == 202, accepted.get_json()


@pytest.mark.parametrize(
    ("content_type", "body", "line"),
    [
        # Blank lines before the bad row: row 2 stands on line 4.
        ("application/x-ndjson", '{"subject": "good"}\n\n\n{"subject": "bad", "priority": "vital"}\n', 4),
        # A quoted cell holding two line breaks, then a blank line: row 2 starts on line 6.
        ("text/csv", 'subject,priority\r\n"one\r\ntwo\r\nthree",low\r\n\r\nbad,vital\r\n', 6),
    ],
)
def test_a_refused_rows_line_in_the_body_is_named(make_tenant, content_type, body, line):
    """An outside tester's NDJSON and CSV with blank lines and multi-line cells: the report said row 2,
    which stands on another line of the file; each failing row now names its line too."""
    tenant = make_tenant("Lines")
    refused = tenant.agent.post(
        "/api/v1/tickets/import", data=body.encode(), headers={"Content-Type": content_type}
    )
    assert refused.status_code == 400, refused.get_json()
    errors = refused.get_json()["error"]["details"]["errors"]
    assert [(e["row"], e["field"], e["line"]) for e in errors] == [(2, "priority", line)]


def test_a_json_arrays_refused_rows_name_no_line(make_tenant):
    tenant = make_tenant("Lines")
    refused = tenant.agent.post("/api/v1/tickets/import", json=[{"subject": "ok"}, {"priority": "vital"}])
    assert [e.get("line") for e in refused.get_json()["error"]["details"]["errors"]] == [None]


def test_an_ndjson_string_may_hold_a_raw_line_separator(make_tenant):
    """JSON allows U+2028 raw in a string; NDJSON lines end at \\n, \\r\\n or \\r only (str.splitlines()
    also broke there and refused the row as two halves of JSON)."""
    tenant = make_tenant("Separators")
    body = '{"subject": "one\u2028two"}\n{"subject": "three"}\n'.encode()
    answer = tenant.agent.post(
        "/api/v1/tickets/import", data=body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert answer.status_code == 202, answer.get_json()
