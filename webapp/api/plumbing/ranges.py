"""Range requests as RFC 9110 (section 14) wants them answered by a server that serves single ranges.

A Range header of a unit other than bytes MUST be ignored; a malformed one, or one asking for several
ranges (a multipart answer this server does not make), may be, and is: the whole file goes out with
200. A single byte range past the end of the file stays 416, as werkzeug answers it.
"""

from __future__ import annotations

from flask import request
from werkzeug.http import parse_range_header


def ignore_unservable_range() -> None:
    """Drop the request's Range header unless it is one well-formed byte range (call before send_file)."""
    header = request.environ.get("HTTP_RANGE")
    if header is None:
        return
    parsed = parse_range_header(header)
    if parsed is None or parsed.units != "bytes" or len(parsed.ranges) != 1:
        del request.environ["HTTP_RANGE"]
        request.__dict__.pop("range", None)  # werkzeug's cached parse, if anything read it already
