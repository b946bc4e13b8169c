"""The `Idempotency-Key` header of create routes: a retry with the same key and request gets the first
answer again and writes nothing; the same key with another request is 422.

The first answer is stored in the transaction of the write itself: the view hands it over just before
its commit (`answer_before_commit`), so a write acknowledged with an error because the connection
dropped after the commit still answers its retry with what it wrote. A view that does not hand it over
has a placeholder written with its first commit and its answer stored just after; should that second
step be lost, the retry is told so (409) instead of writing again. Requests with one key take turns
(a transaction-level advisory lock), so a retry sent while the first is still running waits for it,
and one that comes between those two steps waits a few seconds for the answer.
Keys are kept IDEMPOTENCY_KEY_HOURS (24) and are per user.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Response, current_app, g, make_response, request
from sqlalchemy import delete, event, func, select
from sqlalchemy.orm import Session

from webapp.api.plumbing.errors import ApiError
from webapp.core import strict_json
from webapp.core.timeutil import utcnow
from webapp.infra.db import get_session
from webapp.models import IdempotencyKey
from webapp.security.admission import current_principal

F = TypeVar("F", bound=Callable[..., Any])

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Printable ASCII without spaces: a UUID, a ULID, or any client's own scheme.
KEY_PATTERN = re.compile(r"[!-~]{1,255}")
# The answer of a write whose commit carried no answer: stored right after the view returns.
PLACEHOLDER = 0
KEPT_HEADERS = ("Location", "Retry-After")
# The answers that say something was made or done (an answer with a body read from data is not kept).
CREATED = (201, 202, 204)
# A retry that finds the first request's placeholder waits this long for its answer, reading again
# every poll; the placeholder left after that was lost with its request (409).
PLACEHOLDER_WAIT_SECONDS = 5.0
PLACEHOLDER_POLL_SECONDS = 0.05
# JSON bodies up to this size are compared by content (an import's larger body by its bytes).
CANONICAL_JSON_BYTES = 1 << 20


@dataclass
class Pending:
    """A key being answered for the first time."""

    user_id: int
    org_id: int
    key: str
    request_hash: str
    row: IdempotencyKey | None = None


def idempotent(view: F) -> F:
    """Honour the request's `Idempotency-Key` (under require_role, which names the user)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        if not KEY_PATTERN.fullmatch(key):
            raise ApiError(
                400,
                f"{HEADER} must be 1 to 255 printable ASCII characters without spaces",
                details={"field": HEADER},
            )
        principal = current_principal()
        pending = Pending(principal.user_id, principal.org_id, key, _fingerprint())
        session = get_session()
        stored = _take_turn(session, pending)
        deadline = time.monotonic() + PLACEHOLDER_WAIT_SECONDS
        while _answer_coming(stored, pending) and time.monotonic() < deadline:
            # The first request committed its write and is storing its answer just now: wait for it
            # (its turn ended with its commit), rather than tell the client the answer was lost.
            session.rollback()
            time.sleep(PLACEHOLDER_POLL_SECONDS)
            stored = _take_turn(session, pending)
        if stored is not None:
            return _replay(stored, pending)
        g.idempotency = pending

        def placeholder(committing: Session) -> None:
            if pending.row is None:
                _add(committing, pending, PLACEHOLDER, None, {})

        event.listen(session, "before_commit", placeholder)
        try:
            response = make_response(view(*args, **kwargs))
        finally:
            event.remove(session, "before_commit", placeholder)
            g.pop("idempotency", None)
        # A write's answer, or what answered a view that wrote (a read made nothing to keep).
        if pending.row is not None or response.status_code in CREATED:
            _complete(session, pending, response)
        return response

    wrapper.__idempotent__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def answer_before_commit(status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    """Store the answer of the request's key (if it sent one) in the session, to commit with the write."""
    pending: Pending | None = g.get("idempotency")
    if pending is not None and pending.row is None:
        _add(get_session(), pending, status, body, _kept(headers or {}))


def forget_answer() -> None:
    """Drop the answer stored for the request's key (committed): the write it answered was undone."""
    pending: Pending | None = g.get("idempotency")
    if pending is not None and pending.row is not None:
        session = get_session()
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.user_id == pending.user_id, IdempotencyKey.key == pending.key
            )
        )
        session.commit()
        pending.row = None


def _fingerprint() -> str:
    """What makes two requests the same: method, path, query arguments and body.

    A JSON body counts by what it says, not how it is written: a retry that serializes the same object
    with its keys in another order or other spacing is the same request. Other bodies (CSV, NDJSON, a
    JSON body too large to parse twice or not JSON at all) count by their bytes.
    """
    query = json.dumps(sorted(request.args.items(multi=True)))
    return _digest(query, _canonical_body(request.get_data(cache=True)))


def _byte_fingerprint() -> str:
    """The fingerprint keys stored before JSON bodies were compared by content had: method, path,
    query string and body bytes (a retry across that change is still the same request)."""
    return _digest(request.query_string.decode("latin-1"), request.get_data(cache=True))


def _digest(query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (request.method, request.path, query):
        digest.update(part.encode() + b"\0")
    digest.update(body)
    return digest.hexdigest()


def _canonical_body(body: bytes) -> bytes:
    if not body or not request.is_json or len(body) > CANONICAL_JSON_BYTES:
        return body
    try:
        parsed = strict_json.loads(body)
    except strict_json.JsonError:
        return body
    return b"json:" + json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()


def _take_turn(session: Session, pending: Pending) -> IdempotencyKey | None:
    """Wait for the key's turn, then its stored answer (None: this request is the first)."""
    lock = int.from_bytes(
        hashlib.sha256(f"{pending.user_id}:{pending.key}".encode()).digest()[:8], "big", signed=True
    )
    session.execute(select(func.pg_advisory_xact_lock(lock)))
    now = utcnow()
    stored = session.scalar(
        select(IdempotencyKey)
        .where(IdempotencyKey.user_id == pending.user_id, IdempotencyKey.key == pending.key)
        .execution_options(populate_existing=True)
    )
    if stored is not None and stored.expires_at <= now:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.user_id == pending.user_id, IdempotencyKey.key == pending.key
            )
        )
        return None
    return stored


def _answer_coming(stored: IdempotencyKey | None, pending: Pending) -> bool:
    """Whether `stored` is the placeholder of this same request written moments ago, whose answer is
    being stored now (another request's key is 422 at once; an old placeholder was lost)."""
    if stored is None or stored.status != PLACEHOLDER or stored.request_hash != pending.request_hash:
        return False
    written = stored.expires_at - timedelta(hours=_hours())
    return utcnow() - written < timedelta(seconds=PLACEHOLDER_WAIT_SECONDS)


def _replay(stored: IdempotencyKey, pending: Pending) -> Response:
    if stored.request_hash not in (pending.request_hash, _byte_fingerprint()):
        raise ApiError(
            422,
            f"this {HEADER} was used for another request (another route or body) in the last "
            f"{_hours()} hours; use a new key",
            code="idempotency_key_reused",
            details={"field": HEADER},
        )
    if stored.status == PLACEHOLDER:
        raise ApiError(
            409,
            f"the request with this {HEADER} was carried out, but its answer was lost; "
            "look the result up instead of sending it again",
            code="idempotency_answer_lost",
            details={"field": HEADER},
        )
    if stored.body is None:
        response = Response(status=stored.status)
        del response.headers["Content-Type"]
    else:
        response = Response(json.dumps(stored.body), status=stored.status, mimetype="application/json")
    response.headers.update(stored.headers or {})
    response.headers[REPLAYED_HEADER] = "true"
    return response


def _add(session: Session, pending: Pending, status: int, body: Any, headers: dict[str, str]) -> None:
    pending.row = IdempotencyKey(
        user_id=pending.user_id,
        key=pending.key,
        org_id=pending.org_id,
        request_hash=pending.request_hash,
        status=status,
        body=body,
        headers=headers,
        expires_at=utcnow() + timedelta(hours=_hours()),
    )
    session.add(pending.row)


def _complete(session: Session, pending: Pending, response: Response) -> None:
    """The answer of a view that handed none over before its commit (or made none), stored now."""
    row = pending.row
    if (row is not None and row.status != PLACEHOLDER) or response.status_code >= 400 or response.is_streamed:
        return
    body = response.get_json(silent=True) if response.get_data() else None
    if row is None:
        _add(session, pending, response.status_code, body, _kept(response.headers))
    else:
        row.status, row.body, row.headers = response.status_code, body, _kept(response.headers)
    session.commit()


def _kept(headers: Any) -> dict[str, str]:
    return {name: headers[name] for name in KEPT_HEADERS if name in headers}


def _hours() -> int:
    return current_app.config["IDEMPOTENCY_KEY_HOURS"]
