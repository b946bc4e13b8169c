"""gunicorn.conf.py sends a response's head with its first body bytes in one write (gunicorn alone
writes them one after the other: two packets, and a client reading the head first wakes twice)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

from gunicorn.http import wsgi

ROOT = Path(__file__).resolve().parents[2]


class Sock:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))


def _response(status: str, headers: list[tuple[str, str]], method: str = "GET") -> tuple[wsgi.Response, Sock]:
    spec = importlib.util.spec_from_file_location("gunicorn_conf_under_test", ROOT / "gunicorn.conf.py")
    assert spec is not None
    assert spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # installs the write
    req = SimpleNamespace(version=(1, 1), method=method, should_close=lambda: False, headers=[])
    sock = Sock()
    response = wsgi.Response(req, sock, SimpleNamespace(is_ssl=False, sendfile=False))
    response.start_response(status, headers)
    return response, sock


def test_the_head_and_the_first_body_bytes_go_in_one_write():
    body = b'{"job_id": "x"}'
    response, sock = _response(
        "202 Accepted", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    response.write(body)
    response.close()
    assert len(sock.writes) == 1
    head, sent = sock.writes[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 202 Accepted\r\n")
    assert b"Content-Length: 15" in head
    assert sent == body


def test_later_bytes_chunks_and_bodiless_answers_keep_gunicorns_framing():
    response, sock = _response("200 OK", [("Content-Type", "text/plain")])  # no length: chunked
    response.write(b"one")
    response.write(b"two")
    response.close()
    assert len(sock.writes) == 3
    assert sock.writes[0].endswith(b"\r\n\r\n3\r\none\r\n")
    assert sock.writes[1:] == [b"3\r\ntwo\r\n", b"0\r\n\r\n"]

    response, sock = _response("204 No Content", [])
    response.write(b"")
    response.close()
    assert len(sock.writes) == 1
    assert sock.writes[0].startswith(b"HTTP/1.1 204 No Content\r\n")
    assert sock.writes[0].endswith(b"\r\n\r\n")

    # A length shorter than what the application writes: gunicorn's cut still applies.
    response, sock = _response("200 OK", [("Content-Length", "2")])
    response.write(b"abcdef")
    assert sock.writes[0].endswith(b"\r\n\r\nab")
