"""gunicorn settings of the web process (`gunicorn -c gunicorn.conf.py`); command-line options win.

Workers are gevent workers: each request and each open WebSocket is a greenlet, so an open socket
costs memory (some tens of KiB), not a thread. gevent patches the standard library (sockets, select,
threading, time.sleep) before the application is imported, which makes Redis, psycopg (it waits
with `select.poll`, patched) and the relay cooperative; `post_worker_init` checks that psycopg did
pick a cooperative wait, since one C-level wait would stall every socket of the worker.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import resource
import socket
import sys
from typing import Any

from gunicorn import util
from gunicorn.glogging import Logger, SafeAtoms
from gunicorn.http import wsgi

worker_class = "gevent"
workers = 2
# Connections one worker serves at once (open sockets and requests in flight); past it a worker
# stops accepting. Above WS_MAX_SOCKETS_PER_PROCESS (webapp/config.py), so that REST keeps room
# when the sockets reach their cap and a socket past the cap gets its 503 rather than a hang.
worker_connections = 12_000
timeout = 120
graceful_timeout = 10
# gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl), which every
# instance and test server on the machine would take from each other; nothing here uses it.
control_socket_disable = True


def raise_open_files_limit() -> int:
    """Lift the soft limit of open files to the hard limit (workers inherit it): every socket is a
    file descriptor, and the usual soft limit of 1024 would cap a worker far below its sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


raise_open_files_limit()


def on_starting(server: Any) -> None:
    """In the master, before any worker loads the app: the web's database connections start with the
    analytics statement timeout (DB_STATEMENT_TIMEOUT_MS in webapp/config.py), so an analytics read
    makes no round trip to set it; the operator's value wins, and workers and beat keep none."""
    os.environ.setdefault("DB_STATEMENT_TIMEOUT_MS", "analytics")


accesslog = "-"
# %(U)s is the path without the query string: `?token=` and `?ticket=` never reach the access log.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'


def _spelled(name: str) -> str:
    """A pattern of `name` as a query may spell it: each letter itself or percent-encoded."""
    return "".join(f"(?:{letter}|%{ord(letter):02x})" for letter in name)


# A query's token and ticket values (a parameter name's letters may be percent-encoded, as the
# server decodes them; the `q` atom is a query without its `?`).
_SECRET_QUERY = re.compile(
    rf"((?:^|[?&;])(?:{_spelled('token')}|{_spelled('ticket')})=)[^&;\s\"']*", re.IGNORECASE
)
# An embed link's token is a path segment (/embed/<token>/...): a signed read of the organization for
# up to 90 days, so it is no more logged than a download link's.
_EMBED_TOKEN = re.compile(r"(/+embed/+)[^/?\s\"']+", re.IGNORECASE)


def hide_secrets(text: str) -> str:
    """`text` with token and ticket query values and embed tokens blanked."""
    if "=" in text:
        text = _SECRET_QUERY.sub(r"\1[redacted]", text)
    if "mbed/" in text.lower():
        text = _EMBED_TOKEN.sub(r"\1[redacted]", text)
    return text


def redact(record: logging.LogRecord) -> bool:
    """A logging filter blanking secrets in a line (gunicorn logs a failed request's URI)."""
    message = record.getMessage()
    hidden = hide_secrets(message)
    if hidden != message:
        record.msg, record.args = hidden, ()
    return True


class RedactedAtoms(SafeAtoms):
    """gunicorn's access-log atoms with secrets blanked in each one the log format reads (the path,
    the request line, the referer: an embed page's own reads name its link), and only those."""

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        return hide_secrets(value) if isinstance(value, str) else value


class RedactingLogger(Logger):
    """gunicorn's logger with `redact` on its error log and secrets blanked in its access log."""

    atoms_wrapper_class = RedactedAtoms

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.addFilter(redact)


logger_class = RedactingLogger


# A request whose client goes quiet while sending its body is dropped after this long (without it,
# stalled uploads would hold their connections, and a worker's worker_connections, for ever).
# WebSockets keep their own pings instead.
BODY_READ_TIMEOUT_SECONDS = 30.0


def pre_request(worker: Any, req: Any) -> None:
    """Give the connection a receive timeout before the application reads the body."""
    upgrade = any(name == "UPGRADE" and value.lower() == "websocket" for name, value in req.headers)
    sock = getattr(req.unreader, "sock", None)
    if not upgrade and sock is not None:
        sock.settimeout(BODY_READ_TIMEOUT_SECONDS)


def post_worker_init(worker: Any) -> None:
    """The application's log handlers (set up by create_app) redact too; under gevent, psycopg must
    wait cooperatively (it chooses how when first imported: after the patching, it picks `poll`)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    if "gevent.monkey" in sys.modules:
        from psycopg import waiting

        if waiting.wait is getattr(waiting, "wait_c", None):
            worker.log.critical("psycopg was imported before gevent patched select: its waits would block")
            sys.exit(3)  # gunicorn's worker-boot-error code: the arbiter stops rather than restart it
    # The loaded application (some 130,000 objects that live as long as the process) leaves the
    # cyclic collector's view: a full collection walked all of them, some 20 ms during which every
    # request and socket of the worker waited, and a busy worker makes one every few seconds.
    gc.freeze()


_ERROR_CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's answer to a request it cannot parse (too long, malformed), in the API's error shape.

    gunicorn answers those itself, before the application sees them, with an HTML page; it calls
    this function (util.write_error) for every one of them, so replacing it is all it takes.
    """
    message = mesg or reason
    body = json.dumps(
        {"error": {"code": _ERROR_CODES.get(status_int, "bad_request"), "message": message, "details": {}}}
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)
    _linger(sock)


def _linger(sock: socket.socket, *, max_bytes: int = 1 << 20, seconds: float = 1.0) -> None:
    """Read what the client already sent before gunicorn closes the socket: closing with unread
    bytes makes the kernel send a reset, and a reset can make the client drop the answer unread."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(seconds)
        read = 0
        while read < max_bytes and (chunk := sock.recv(65536)):
            read += len(chunk)
    except OSError:
        pass


util.write_error = write_json_error


class _Gathered:
    """Stands in for the client socket while gunicorn writes a response's head and first body bytes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.parts.append(bytes(data))


# gunicorn's own (this file may be read again, e.g. by a test: the write is installed once).
_write_response = getattr(wsgi.Response.write, "gunicorn_write", wsgi.Response.write)


def write_head_with_body(self: wsgi.Response, arg: bytes) -> None:
    """gunicorn's Response.write, with the head and the first body bytes sent in one write.

    gunicorn sends the status line and headers, then the body, with a write each: two packets, and a
    client that reads the head first wakes twice for one answer. The head is gathered with the first
    body bytes instead (gunicorn's own framing and length checks apply unchanged), and goes out in one
    sendall.
    """
    if self.headers_sent or not isinstance(arg, bytes) or not arg:
        _write_response(self, arg)
        return
    sock, gathered = self.sock, _Gathered()
    self.sock = gathered
    try:
        _write_response(self, arg)
    finally:
        self.sock = sock
    sock.sendall(b"".join(gathered.parts))


write_head_with_body.gunicorn_write = _write_response  # type: ignore[attr-defined]
wsgi.Response.write = write_head_with_body  # type: ignore[method-assign]
