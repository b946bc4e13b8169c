"""One webhook POST against a real local receiver: the timeout counts over the whole exchange, so a
receiver that trickles its answer a byte at a time is cut off like one that says nothing."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from webapp.webhooks import transport
from webapp.webhooks.targets import Target

STATUS = b"HTTP/1.1 200 OK\r\n"
REST = b"Content-Length: 2\r\nConnection: close\r\n\r\nok"


def _receiver(answer) -> Iterator[int]:
    """A one-connection-at-a-time receiver on a free port; `answer(conn)` writes the answer."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                while len(body) < length:
                    body += conn.recv(4096)
                with contextlib.suppress(OSError):  # the client hung up
                    answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    server.close()


def _trickle(data: bytes, every: float):
    def answer(conn: socket.socket) -> None:
        for byte in data:
            conn.sendall(bytes([byte]))
            time.sleep(every)

    return answer


@pytest.fixture
def receiver(request) -> Iterator[int]:
    yield from _receiver(request.param)


def _post(port: int, timeout: float) -> transport.Answer:
    target = Target("http", "127.0.0.1", port, "/hook")
    return transport.post(target, [ipaddress.ip_address("127.0.0.1")], b"{}", {}, timeout=timeout)


@pytest.mark.parametrize("receiver", [lambda conn: conn.sendall(STATUS + REST)], indirect=True)
def test_a_prompt_answer_is_its_status(receiver):
    answer = _post(receiver, timeout=2)
    assert (answer.status, answer.error) == (200, None)


@pytest.mark.parametrize("receiver", [_trickle(STATUS + REST, 0.25)], indirect=True)
def test_a_status_line_trickled_past_the_timeout_is_no_answer(receiver):
    started = time.monotonic()
    answer = _post(receiver, timeout=1.5)
    elapsed = time.monotonic() - started
    assert answer.status is None
    assert answer.error == "no answer within 1.5 s"
    assert elapsed < 2.5, elapsed  # cut off at the timeout, not at the end of the trickle (~15 s)


@pytest.mark.parametrize(
    "receiver", [lambda conn: (conn.sendall(STATUS), _trickle(b"X-A: b\r\n" * 40, 0.1)(conn))], indirect=True
)
def test_a_status_whose_headers_trickle_past_the_timeout_is_no_answer(receiver):
    """Found from outside: a status line in time, then header lines trickled past the timeout, was
    logged as a 200 (the socket the timeout shut ended the headers) and never retried."""
    started = time.monotonic()
    answer = _post(receiver, timeout=1.5)
    assert (answer.status, answer.error) == (None, "no answer within 1.5 s")
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    "receiver",
    [lambda conn: (conn.sendall(STATUS + REST[:-2]), _trickle(b"ok" * 20, 0.25)(conn))],
    indirect=True,
)
def test_a_status_in_time_counts_whatever_the_rest_of_the_answer_does(receiver):
    started = time.monotonic()
    answer = _post(receiver, timeout=1.5)
    assert answer.status == 200
    assert time.monotonic() - started < 2.5
