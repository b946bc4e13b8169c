"""The analytics domain's errors as API answers, shared by every route that runs analytics queries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.exc import OperationalError

from webapp.analytics.buckets import BucketError
from webapp.analytics.cost import TooCostly
from webapp.analytics.read_time import ReadTimeSpent
from webapp.analytics.window import QueryError
from webapp.api.plumbing.errors import ApiError
from webapp.core.filters import FilterError
from webapp.core.timeutil import TimeError


@contextmanager
def client_errors() -> Iterator[None]:
    """Validation errors as 400s that name the field and what is allowed; a query timeout as 503."""
    try:
        yield
    except TooCostly as exc:
        raise ApiError(400, str(exc), code="too_costly", details={"field": exc.field, **exc.details}) from exc
    except ReadTimeSpent as exc:
        raise ApiError(
            429,
            str(exc),
            code="read_time_budget",
            details={"limit_seconds": exc.budget, "retry_after": exc.retry_after},
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
    except QueryError as exc:
        raise ApiError(exc.status, str(exc), details={"field": exc.field}) from exc
    except FilterError as exc:
        raise ApiError(400, str(exc), details={"field": exc.field}) from exc
    except BucketError as exc:
        # Too many buckets is a cost limit, answered as the cells limit is (an estimate and a limit).
        code = "too_costly" if "estimate" in exc.details else None
        details = {"field": "start/end/granularity", **exc.details}
        raise ApiError(400, str(exc), code=code, details=details) from exc
    except TimeError as exc:
        raise ApiError(400, str(exc), details={"field": exc.field} if exc.field else None) from exc
    except OverflowError as exc:
        raise ApiError(
            400, "the range reaches past the dates the calendar can represent (years 1 to 9999)"
        ) from exc
    except OperationalError as exc:
        if isinstance(exc.orig, psycopg.errors.QueryCanceled):
            raise ApiError(
                503,
                "the query took longer than the analytics time limit; narrow the range, "
                "or use POST /analytics/aggregations with async: true",
                headers={"Retry-After": "30"},
            ) from exc
        raise
