"""The one error shape of the API: the error that refuses a request, and its JSON body (no Flask)."""

from __future__ import annotations

from typing import Any

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    412: "precondition_failed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    426: "upgrade_required",
    422: "unprocessable_entity",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error answered to the client as JSON with `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or CODES.get(status, "error")
        self.details = details or {}
        self.headers = headers or {}


def error_body(
    status: int, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`{"error": {code, message, details}}`, the code by default the status's."""
    return {
        "error": {"code": code or CODES.get(status, "error"), "message": message, "details": details or {}}
    }
