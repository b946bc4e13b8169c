"""One webhook POST, sent to an address the SSRF check passed: no second lookup, no redirect followed,
at most a few KiB of the answer read, and no answer (a status line and its headers, whole) within the
timeout, counted over the whole exchange, is a failure."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import HTTPError

from webapp.webhooks.targets import IPAddress, Target

# Only the status decides an attempt; the start of the answer is kept for the delivery log.
MAX_ANSWER_BYTES = 4096
USER_AGENT = "ticket-analytics-webhooks/1"


@dataclass(frozen=True)
class Answer:
    """What one attempt came to: the status (None when there was no answer) or what went wrong."""

    status: int | None
    error: str | None
    address: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


def _pool(target: Target, address: IPAddress, timeout: float) -> urllib3.HTTPConnectionPool:
    options = {"timeout": urllib3.Timeout(total=timeout), "retries": False, "maxsize": 1}
    if target.scheme == "https":
        # TLS is checked against the URL's host (SNI and certificate), though the socket goes to `address`.
        return urllib3.HTTPSConnectionPool(
            str(address),
            target.port,
            cert_reqs="CERT_REQUIRED",
            assert_hostname=target.host,
            server_hostname=target.host,
            **options,
        )
    return urllib3.HTTPConnectionPool(str(address), target.port, **options)


class CutOff(Exception):
    """The timeout came before the answer's status line and headers were whole: no answer."""


class _Cutter:
    """Shuts the pool's sockets down once `timeout` seconds have passed: urllib3's timeouts bound each
    read, so a receiver sending a byte every few seconds would hold the attempt (and the worker) as
    long as it likes. The read blocked on the socket then ends at once, and what it read so far (a
    status line, some headers: http.client takes the closed socket for their end) is no answer."""

    def __init__(self, pool: urllib3.HTTPConnectionPool, timeout: float) -> None:
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._over = self._fired = False
        cutter = self
        base = pool.ConnectionCls

        class Watched(base):  # type: ignore[misc,valid-type]
            def connect(self) -> None:
                super().connect()
                cutter._watch(self.sock)

        pool.ConnectionCls = Watched
        self._timer = threading.Timer(timeout, self._shut)
        self._timer.daemon = True
        self._timer.start()

    def _watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            late = self._fired and not self._over
        if late:  # connected as the timeout came: shut at once
            self._shut_down(sock)

    @staticmethod
    def _shut_down(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # closed already
            # The plain socket's shutdown, also under TLS: SSLSocket.shutdown would unwrap the TLS
            # object under a read in progress in the other thread.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _shut(self) -> None:
        with self._lock:
            if self._over:
                return
            self._fired = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shut_down(sock)

    def stop(self) -> None:
        """The exchange is over, however it went: the timer shuts nothing any more."""
        self._timer.cancel()
        with self._lock:
            self._over = True

    @property
    def fired(self) -> bool:
        """Whether the timeout shut the sockets: what was read until now may have been cut short."""
        with self._lock:
            return self._fired


def _send(target: Target, address: IPAddress, body: bytes, headers: dict[str, str], timeout: float) -> int:
    pool = _pool(target, address, timeout)
    cutter = _Cutter(pool, timeout)
    try:
        try:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
        except HTTPError:
            if cutter.fired:  # the timeout, not the broken exchange, is what happened
                raise CutOff from None
            raise
        # The status line and headers came whole only if the sockets were not shut while they were read
        # (a shut socket ends them as if they were done); what follows only goes to the delivery log.
        if cutter.fired:
            raise CutOff
        try:
            response.read(MAX_ANSWER_BYTES, decode_content=False)
        except HTTPError:
            pass  # the status and headers came in time; the rest only goes to the delivery log
        finally:
            response.release_conn()
        return response.status
    finally:
        cutter.stop()
        pool.close()


def post(
    target: Target,
    addresses: Sequence[IPAddress],
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
) -> Answer:
    """POST `body` to the first of `addresses` that answers, within `timeout` seconds in all."""
    started = time.monotonic()
    deadline = started + timeout
    sent = {
        **headers,
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    error = "no address to connect to"
    tried: IPAddress | None = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        tried = address
        try:
            status = _send(target, address, body, sent, remaining)
        except CutOff:
            error = f"no answer within {timeout:g} s"
            break
        except HTTPError as exc:
            error = _said(exc)
            if isinstance(exc, urllib3.exceptions.NewConnectionError):
                continue  # refused or unreachable: the next address may answer
            break
        return Answer(status, None, str(address), _elapsed_ms(started))
    if time.monotonic() >= deadline:
        error = f"no answer within {timeout:g} s"
    return Answer(None, error, str(tried) if tried is not None else None, _elapsed_ms(started))


def _said(exc: HTTPError) -> str:
    """An HTTP failure as the delivery log says it: its kind and urllib3's words, without the
    connection object urllib3 names first ("HTTPConnection(host=..., port=...): Failed to ...", the
    class one of this module's own)."""
    text = str(exc)
    if "): " in text and text.split("(", 1)[0].endswith("Connection"):
        text = text.split("): ", 1)[1]
    return f"{type(exc).__name__}: {text}"[:500]


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
