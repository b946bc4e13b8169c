"""Conditional and range requests for a file, answered as RFC 9110 (sections 13 and 14) orders them.

Preconditions first (`check_preconditions`): If-Match, or without it If-Unmodified-Since, that fails
is 412 with the error body and no file; If-None-Match that matches, or without it If-Modified-Since
the file has not changed since, is 304, a Range header or not. Only then a range: a Range header of a
unit other than bytes MUST be ignored; a malformed one, or one asking for several ranges (a multipart
answer this server does not make), may be, and is (`ignore_unservable_range`): the whole file goes
out with 200. A single byte range past the end of the file is 416, naming the file's length in
Content-Range.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, request
from werkzeug.http import parse_date, parse_etags, parse_range_header, quote_etag

from webapp.core.errors import ApiError

# Evaluated here, so send_file's own evaluation (which lets a Range win over a matching
# If-None-Match, and answers a failed If-Match with the whole file) never sees them.
_CONDITIONS = ("HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE")


def check_preconditions(etag: str, modified: datetime) -> Response | None:
    """A 304 answer when the client's copy is current, None to go on; raises 412 (ApiError) when a
    precondition fails. `etag` is the file's strong entity tag (unquoted), `modified` its time."""
    environ = request.environ
    seconds = modified.astimezone(UTC).replace(microsecond=0)
    if_match = environ.get("HTTP_IF_MATCH")
    if if_match is not None:
        if not parse_etags(if_match).contains(etag):
            raise ApiError(412, "the file is not the version If-Match names", details={"etag": etag})
    else:
        since = parse_date(environ.get("HTTP_IF_UNMODIFIED_SINCE"))
        if since is not None and seconds > since:
            raise ApiError(412, "the file changed after If-Unmodified-Since", details={"etag": etag})
    current = False
    if request.method in ("GET", "HEAD"):
        if_none_match = environ.get("HTTP_IF_NONE_MATCH")
        if if_none_match is not None:
            current = parse_etags(if_none_match).contains_weak(etag)
        else:
            since = parse_date(environ.get("HTTP_IF_MODIFIED_SINCE"))
            current = since is not None and seconds <= since
    for name in _CONDITIONS:
        environ.pop(name, None)
    if not current:
        return None
    response = Response(status=304)
    response.headers["ETag"] = quote_etag(etag)
    return response


def ignore_unservable_range() -> None:
    """Drop the request's Range header unless it is one well-formed byte range (call before send_file)."""
    header = request.environ.get("HTTP_RANGE")
    if header is None:
        return
    parsed = parse_range_header(header)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        del request.environ["HTTP_RANGE"]
        request.__dict__.pop("range", None)  # werkzeug's cached parse, if anything read it already
