"""The TCP socket under a WebSocket, as simple-websocket is given it: one write at a time, a close
that lingers until the peer has read the close frame, and an abort for a send stuck on a client that
stopped reading.

simple-websocket writes from two threads (the socket's loop sends messages; its own reader thread
answers pings and closes) with plain `sock.send` calls, and closes the socket from its reader
thread. It has no hook for either, but it takes the connection's socket from the WSGI environ: adopt()
puts a SocketWire there before the upgrade, and that is the one place that knows where it looks.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any

# After its close frame the server reads and discards what the client still sends, this long and
# this much at most: closing with unread bytes (the rest of a too-big message) resets the connection
# and the client loses the close frame.
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024
# Where the servers simple-websocket supports with a plain socket (Werkzeug's development server,
# gunicorn) put the connection's socket in the WSGI environ, in the order simple-websocket looks.
_ENVIRON_SOCKETS = ("werkzeug.socket", "gunicorn.socket")
_OPCODE_TEXT_FIN = 0x81


@lru_cache(maxsize=64)
def text_frame(text: str) -> bytes:
    """`text` as one final, unmasked text frame (RFC 6455 5.2), as a server sends it.

    A relayed event is one string object offered to every socket of the organization, so its frame
    is made once for all of them (a str caches its hash: the lookup is cheap). No extension is ever
    negotiated (socket.admit_socket removes the client's offer), so the frame is the same on every
    socket, and no per-socket state of simple-websocket's is involved in sending a whole message.
    """
    payload = text.encode()
    n = len(payload)
    if n < 126:
        head = bytes((_OPCODE_TEXT_FIN, n))
    elif n < 65536:
        head = bytes((_OPCODE_TEXT_FIN, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((_OPCODE_TEXT_FIN, 127)) + n.to_bytes(8, "big")
    return head + payload


class SocketWire:
    """The socket with one write at a time, a write that never waits, a lingering close and an abort;
    anything else passes through."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        # The OS socket under gevent's cooperative one (whose writes would wait for the event loop):
        # a write with MSG_DONTWAIT on it returns at once, under gevent or threads alike. None under
        # TLS, whose bytes only the TLS socket may write: every write then goes through `send`.
        self._raw = None if hasattr(sock, "cipher") else getattr(sock, "_sock", sock)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        # The rest of a frame that send_now could write only in part: written before anything else.
        self.backlog = b""

    def send(self, data: bytes) -> int:
        """Write all of `data` (after the backlog): two sends blocked on a full buffer would otherwise
        interleave their frames' bytes and corrupt the stream."""
        with self._lock:
            if self.backlog:
                self._sock.sendall(self.backlog)
                self.backlog = b""
            self._sock.sendall(data)
        return len(data)

    def send_now(self, data: bytes) -> bool:
        """Write `data` without waiting, if nothing else is being written and nothing is left over;
        True once it is written (what the socket's buffer could not take waits in `backlog` for the
        next write, which the caller must see to), False when nothing was written."""
        if self._raw is None or self.backlog or not self._lock.acquire(blocking=False):
            return False
        try:
            try:
                written = self._raw.send(data, socket.MSG_DONTWAIT)
            except OSError:
                return False  # the buffer is full, or the connection is gone: the socket's loop sees to it
            if written < len(data):
                self.backlog = data[written:]
            return True
        finally:
            self._lock.release()

    def drain(self) -> None:
        """Write the backlog, waiting as long as it takes (the relay's sweep aborts a stuck one)."""
        if self.backlog:
            self.send(b"")

    def close(self) -> None:
        """Close after the peer has read our close frame: FIN, then discard what it still sends.

        simple-websocket closes from its own thread, e.g. right after answering a too-big message with
        1009 while the rest of that message is still arriving; a plain close with those bytes unread
        makes the kernel send a reset, and the client never sees the 1009.
        """
        try:
            self._sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self._sock.settimeout(left)
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass  # already closed or reset: nothing left to protect
        finally:
            self._sock.close()
            self._closed.set()

    def abort(self) -> None:
        """Shut the connection down, which unblocks a send stuck on a client that stopped reading."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def wait_closed(self, timeout: float) -> bool:
        """Wait for the lingering close to finish (the server closes the socket once the view returns)."""
        return self._closed.wait(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def adopt(environ: MutableMapping[str, Any]) -> SocketWire:
    """Put a SocketWire in place of the connection's socket in `environ`, where simple-websocket takes
    it from when the socket is accepted; RuntimeError under a server that puts none there."""
    for key in _ENVIRON_SOCKETS:
        sock = environ.get(key)
        if sock is not None:
            wire = environ[key] = SocketWire(sock)
            return wire
    raise RuntimeError("the WSGI server gives no socket for a WebSocket (use gunicorn or Werkzeug)")
