"""No room for another export (webapp.exports.room) as the API's 429, with Retry-After."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from webapp.core.errors import ApiError
from webapp.exports.room import NoRoom


@contextlib.contextmanager
def room_errors() -> Iterator[None]:
    try:
        yield
    except NoRoom as exc:
        raise ApiError(
            429,
            exc.message,
            code=exc.code,
            details=dict(exc.details),
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
