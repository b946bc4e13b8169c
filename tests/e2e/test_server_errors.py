"""Requests the web server refuses before the application sees them still answer in the API's JSON
error shape (gunicorn's own HTML pages are replaced in gunicorn.conf.py)."""

from __future__ import annotations

import json
import socket

import pytest


def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /api/v1/health?" + b"x" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET /api/v1/tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + b"a" * 10_000
            + b"\r\n\r\n",
            431,
            "request_header_fields_too_large",
        ),
        ("GET /api/v1/tïckets HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 400, "bad_request"),
        (b"G(T /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"GET /api/v1/health HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
    ],
)
def test_requests_the_server_cannot_parse_get_json_errors(web_server, request_bytes, status, code):
    got, headers, body = _raw(web_server.port, request_bytes)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert error["message"]
