"""gunicorn settings of the web process (`gunicorn -c gunicorn.conf.py`); command-line options win.

A WebSocket holds one gthread thread for as long as it is open, so `threads` bounds the sockets
plus concurrent requests of each worker.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from typing import Any

from gunicorn import util
from gunicorn.glogging import Logger

worker_class = "gthread"
workers = 2
# Each open WebSocket holds a thread: 64 per worker leaves room for sockets and requests alike.
threads = 64
timeout = 120
graceful_timeout = 10
# gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl), which every
# instance and test server on the machine would take from each other; nothing here uses it.
control_socket_disable = True

accesslog = "-"
# %(U)s is the path without the query string: `?token=` and `?ticket=` never reach the access log.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'

_SECRET_QUERY = re.compile(r"([?&](?:token|ticket)=)[^&\s\"']*", re.IGNORECASE)


def redact(record: logging.LogRecord) -> bool:
    """A logging filter blanking token and ticket query values (gunicorn logs a failed request's URI)."""
    message = record.getMessage()
    if _SECRET_QUERY.search(message):
        record.msg, record.args = _SECRET_QUERY.sub(r"\1[redacted]", message), ()
    return True


class RedactingLogger(Logger):
    """gunicorn's logger with `redact` on its error log."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.addFilter(redact)


logger_class = RedactingLogger


# A request whose client goes quiet while sending its body frees its thread after this long (the
# threads are shared by every request and socket of the process; without it a few hundred stalled
# uploads would hold them all). WebSockets keep their own pings instead.
BODY_READ_TIMEOUT_SECONDS = 30.0


def pre_request(worker: Any, req: Any) -> None:
    """Give the connection a receive timeout before the application reads the body."""
    upgrade = any(name == "UPGRADE" and value.lower() == "websocket" for name, value in req.headers)
    sock = getattr(req.unreader, "sock", None)
    if not upgrade and sock is not None:
        sock.settimeout(BODY_READ_TIMEOUT_SECONDS)


def post_worker_init(worker: Any) -> None:
    """The application's log handlers (set up by create_app) redact too."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)


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


util.write_error = write_json_error
