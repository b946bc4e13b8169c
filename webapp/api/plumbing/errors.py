"""The handlers that make every failure JSON, in the one error shape (webapp.core.errors)."""

from __future__ import annotations

import logging
import uuid
from typing import Any
from urllib.parse import unquote_to_bytes

import psycopg
from flask import Flask, Response, g, jsonify, request
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc
from werkzeug.exceptions import HTTPException, RequestedRangeNotSatisfiable
from werkzeug.routing.exceptions import WebsocketMismatch

from webapp.api.plumbing import body_limits
from webapp.core.errors import CODES, ApiError, error_body

__all__ = ["CODES", "ApiError", "error_response", "not_found"]

log = logging.getLogger(__name__)


def asks_upgrade(headers: Any) -> bool:
    """Whether the request's Connection header lists the token "upgrade" (RFC 7230: comma-separated,
    case-insensitive)."""
    return "upgrade" in {token.strip().lower() for token in headers.get("Connection", "").split(",")}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """`{"error": {code, message, details}}` with `status`."""
    response = jsonify(error_body(status, message, code=code, details=details))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, f"{what} not found")


def pydantic_details(exc: ValidationError) -> dict[str, Any]:
    """The fields a validation failed on, with what each expected."""
    problems = []
    for err in exc.errors(include_url=False, include_context=False):
        field = ".".join(str(part) for part in err["loc"]) or "body"
        problems.append({"field": field, "message": err["msg"], "type": err["type"]})
    return {"errors": problems}


def pydantic_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_context=False)[:5]:
        field = ".".join(str(part) for part in err["loc"]) or "body"
        parts.append(f"{field}: {err['msg']}")
    return "invalid request: " + "; ".join(parts)


DATABASE_RETRY_AFTER = "5"


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached (down, restarting, connection lost)."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, sa_exc.InterfaceError):
            return True
        exc = exc.orig or exc
    # QueryCanceled (a statement timeout) is an OperationalError too, but the server is up.
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not isinstance(
        exc, psycopg.errors.QueryCanceled
    )


def statement_timed_out(exc: BaseException) -> bool:
    """Whether `exc` is a statement cancelled by its timeout (psycopg's, or wrapped by SQLAlchemy)."""
    if isinstance(exc, sa_exc.DBAPIError):
        exc = exc.orig or exc
    return isinstance(exc, psycopg.errors.QueryCanceled)


BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _read_whole_body(config: Any) -> None:
    """Read the body before any view runs (within the route's limit), and refuse one that is too
    large, ended early or is malformed.

    gunicorn marks its input as terminated, so a client that closes after part of the Content-Length
    it announced would have its partial body read as the whole (and a cut import half-written).
    """
    limit, setting = body_limits.enforce(config)
    try:
        data = request.get_data(cache=True)
    except HTTPException:
        raise  # 413 and the like, answered as they are
    except Exception as exc:  # gunicorn's errors for a malformed chunked body, a dropped connection
        raise ApiError(400, f"the request body could not be read: {type(exc).__name__}") from exc
    body_limits.checked_length(data, limit, setting)
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if data and encoding not in ("", "identity"):
        # Read as it came, a compressed body would be refused as malformed JSON or UTF-8.
        raise ApiError(
            415,
            f"Content-Encoding {encoding} is not accepted: send the body uncompressed",
            details={"field": "Content-Encoding"},
        )
    expected = request.content_length
    if expected is not None and len(data) != expected:
        raise ApiError(
            400,
            f"the body ended after {len(data)} of the {expected} bytes its Content-Length announced",
        )


def _check_query_encoding(raw: bytes) -> None:
    """Refuse a query string that is not UTF-8 once percent-decoded (werkzeug would put U+FFFD in)."""
    try:
        unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "the query string is not valid UTF-8 once percent-decoded") from exc


# Seconds a 503 or 429 that named no time of its own asks a client to wait.
DEFAULT_RETRY_AFTER = "5"


def init_app(app: Flask) -> None:
    """Register handlers so no error leaves as an HTML page."""

    @app.before_request
    def assign_request_id() -> None:
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        if request.query_string:
            _check_query_encoding(request.query_string)
        if request.routing_exception is not None:
            # No route: its 404 (or 405) is the answer, whatever the body; none of it is read.
            request.max_content_length = 0
            return
        if request.method in BODY_METHODS and request.headers.get("Upgrade", "").lower() != "websocket":
            _read_whole_body(app.config)
        else:
            # Never read, but announced past the route's limit: 413 too, as for any other method
            # (at once: nothing is read of a body these requests do not send, or send to the socket).
            body_limits.enforce(app.config, drain=False)

    @app.after_request
    def add_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response

    @app.after_request
    def headers_a_status_promises(response: Response) -> Response:
        # Whatever answered it: a 401 names the scheme to authenticate with (RFC 9110 15.5.2), a 503
        # or 429 when to come back; the OpenAPI document promises them on every such answer.
        status = response.status_code
        if status == 401:
            response.headers.setdefault("WWW-Authenticate", "Bearer")
        elif status in (429, 503):
            response.headers.setdefault("Retry-After", DEFAULT_RETRY_AFTER)
        return response

    @app.after_request
    def no_type_without_content(response: Response) -> Response:
        # No content, so no type: Flask would otherwise call an empty 204 text/html.
        if response.status_code == 204:
            response.headers.pop("Content-Type", None)
        return response

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError) -> Response:
        return error_response(
            exc.status, exc.message, code=exc.code, details=exc.details, headers=exc.headers
        )

    @app.errorhandler(ValidationError)
    def handle_validation(exc: ValidationError) -> Response:
        return error_response(400, pydantic_message(exc), details=pydantic_details(exc))

    @app.errorhandler(HTTPException)
    def handle_http(exc: HTTPException) -> Response:
        if isinstance(exc, WebsocketMismatch):
            if request.headers.get("Upgrade", "").strip().lower() == "websocket":
                if asks_upgrade(request.headers):  # a socket asked of a path that serves none
                    return error_response(
                        400, "this path is not a WebSocket: only /api/v1/ws/analytics/{org_id} is"
                    )
                return error_response(400, "a WebSocket upgrade needs the header Connection: Upgrade")
            # A plain request to the socket's path (RFC 6455 4.2.2: 426 names the protocol to upgrade to).
            return error_response(
                426,
                "this path speaks WebSocket only: send a GET with Upgrade: websocket",
                headers={"Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
            )
        status = exc.code or 500
        message = exc.description or CODES.get(status, "error")
        if status == 413:  # a body without Content-Length read past the route's limit
            return handle_api_error(
                body_limits.too_large(*body_limits.limit_for(request.endpoint, app.config))
            )
        headers = {}
        if status == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        if isinstance(exc, RequestedRangeNotSatisfiable) and exc.length is not None:
            # The length a satisfiable range must fall within (RFC 9110, 15.5.17).
            headers["Content-Range"] = f"{exc.units} */{exc.length}"
        return error_response(status, message, headers=headers)

    @app.errorhandler(orm_exc.StaleDataError)
    @app.errorhandler(orm_exc.ObjectDeletedError)
    def handle_deleted_meanwhile(exc: Exception) -> Response:
        # A change of an object whose row another request deleted between its read and its write (a
        # PATCH or DELETE racing a DELETE): gone, as it would have been found a moment later. Anywhere
        # else (a creation's own bookkeeping, say) it is no client's doing: an internal error.
        if request.method not in ("PATCH", "DELETE"):
            return handle_unexpected(exc)
        log.warning(
            "deleted meanwhile request_id=%s path=%s: %s", g.get("request_id", "-"), request.path, exc
        )
        return error_response(404, "not found: another request deleted it meanwhile")

    @app.errorhandler(sa_exc.DBAPIError)
    @app.errorhandler(psycopg.Error)
    def handle_database_error(exc: Exception) -> Response:
        if statement_timed_out(exc):
            # A statement past its timeout wherever it ran (a raw psycopg cursor too): the analytics
            # routes' 503, or a plain one elsewhere (a wait for a lock), not an internal error.
            analytics = request.path.startswith("/api/v1/analytics/")
            message = (
                "the query took longer than the analytics time limit; narrow the range, "
                "or use POST /analytics/aggregations with async: true"
                if analytics
                else "the database took too long to answer; try again shortly"
            )
            return error_response(503, message, headers={"Retry-After": "30"})
        if not database_unreachable(exc):
            return handle_unexpected(exc)
        log.warning(
            "database unavailable request_id=%s path=%s: %s",
            g.get("request_id", "-"),
            request.path,
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        return error_response(
            503,
            "database unavailable; try again shortly",
            code="database_unavailable",
            headers={"Retry-After": DATABASE_RETRY_AFTER},
        )

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        request_id = g.get("request_id", "-")
        log.exception("unhandled error request_id=%s path=%s", request_id, request.path)
        return error_response(
            500,
            "internal error; the request id identifies it in the server log",
            details={"request_id": request_id},
        )
