"""Requests the web server refuses before the application sees them still answer in the API's JSON
error shape (gunicorn's own HTML pages are replaced in gunicorn.conf.py)."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest

from webapp.api.plumbing import body_limits


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
        # A download link with a long token: 414, as the document lists for every operation.
        (
            b"GET /api/v1/exports/e/download?token=" + b"t" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "uri_too_long",
        ),
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


def _post(port: int, token: str, head: str, body: bytes, *, close_early: bool) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/v1/tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{head}\r\n".encode()
            + body
        )
        if close_early:
            sock.shutdown(socket.SHUT_WR)  # the client stops sending: the body is cut short
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_a_body_cut_short_or_malformed_is_refused_and_nothing_is_written(web_server, make_live_tenant):
    tenant = make_live_tenant("CutShort")
    token = tenant.users["agent"]["token"]
    whole = json.dumps({"subject": "whole ticket, sent in part"}).encode()
    status, body = _post(
        web_server.port, token, f"Content-Length: {len(whole)}\r\n", whole[:16], close_early=True
    )
    assert status == 400
    assert "Content-Length" in json.loads(body)["error"]["message"]
    status, body = _post(
        web_server.port, token, "Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n", close_early=False
    )
    assert status == 400
    assert json.loads(body)["error"]["code"] == "bad_request"
    listed = web_server.request("GET", "/api/v1/tickets", tenant.users["viewer"]["token"])
    assert listed == (200, {"items": [], "next_cursor": None})


def test_a_chunked_body_past_the_limit_is_refused_whole(web_server, make_live_tenant):
    """gunicorn's chunked input, no length announced: a body past the route's limit is 413, not read
    up to the limit and taken for the whole (padding cut off, this one would still parse)."""
    tenant = make_live_tenant("Chunked")
    token = tenant.users["agent"]["token"]
    document = json.dumps({"subject": "padded past the limit"}).encode()
    body = document + b" " * (300 * 1024)  # BODY_MAX_BYTES is 256 KiB

    def chunked(data: bytes) -> bytes:
        parts = [data[i : i + 8192] for i in range(0, len(data), 8192)]
        return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"

    status, answer = _post(
        web_server.port,
        token,
        "Transfer-Encoding: chunked\r\nConnection: close\r\n",
        chunked(body),
        close_early=False,
    )
    assert status == 413, answer[:300]
    assert json.loads(answer)["error"]["details"]["setting"] == "BODY_MAX_BYTES"
    status, answer = _post(
        web_server.port,
        token,
        "Transfer-Encoding: chunked\r\nConnection: close\r\n",
        chunked(document + b" " * 1024),
        close_early=False,
    )
    assert status == 201, answer[:300]
    listed = web_server.request("GET", "/api/v1/tickets", tenant.users["viewer"]["token"])
    assert [t["subject"] for t in listed[1]["items"]] == ["padded past the limit"]


def test_an_announced_body_past_the_limit_is_answered_413_to_a_client_that_closes_after(
    web_server, make_live_tenant
):
    """A tester's urllib (which sends Connection: close) got a reset connection, never the 413, for a
    body announced past the limit: the server answered and closed with the body unread. It reads and
    drops the body first (up to DRAIN_MAX_BYTES), so the client, done sending, reads the answer."""
    tenant = make_live_tenant("Announced")
    token = tenant.users["agent"]["token"]
    for size in (3 * 1024 * 1024, 8 * 1024 * 1024):
        body = b'{"subject": "' + b"x" * (size - 16) + b'"}'
        status, answer = _post(
            web_server.port,
            token,
            f"Content-Length: {len(body)}\r\nConnection: close\r\n",
            body,
            close_early=False,
        )
        assert status == 413, answer[:300]
        assert json.loads(answer)["error"]["details"]["setting"] == "BODY_MAX_BYTES"


@pytest.mark.parametrize("upgrade", [False, True])
def test_a_body_announced_past_the_limit_and_never_sent_holds_nothing_past_the_drain(web_server, upgrade):
    """The drain before a 413 is bounded in time, not only between reads (a review found a read of
    gunicorn's input waits until it holds what it asked for): a client that announces 10 MiB to the
    sign-in route and sends nothing gets its 413 within DRAIN_SECONDS. A request asking to upgrade
    reads no body: it is answered at once."""
    head = (
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\nConnection: close\r\n"
    )
    if upgrade:
        head += "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", web_server.port), timeout=10) as sock:
        sock.sendall((head + "\r\n").encode() + b'{"email": ')
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    elapsed = time.monotonic() - started
    status = int(data.split(b" ", 2)[1])
    # (The upgrade is refused before its body is looked at: the sign-in route takes no socket.)
    assert status == (400 if upgrade else 413), data[:300]
    # At once with an upgrade (sooner than any drain's timer); else by the drain's timer, with room
    # for a loaded machine.
    assert elapsed < (body_limits.DRAIN_SECONDS if upgrade else body_limits.DRAIN_SECONDS + 1.5), elapsed
