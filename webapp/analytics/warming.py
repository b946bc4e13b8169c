"""Warming the cache: an organization's most requested queries computed afresh (a refresh job's work).

A request is counted in the popularity set as it is looked up, before it is answered, so a query
the platform refuses (a range it cannot bucket, a filter it does not know) may be counted too. Such
a query is refused again here: it is dropped from the set and the others are warmed, so one bad
request never fails every later refresh of its organization.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import redis
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from webapp.analytics import popular, readers

log = logging.getLogger(__name__)

# What a read raises for a query the API answers 400 (api/plumbing/query_errors.py: QueryError,
# FilterError, BucketError and TimeError are ValueErrors), and what reading a member of another
# version's shape raises (a reader it names no more, parameters it lacks or has of another type).
REFUSED = (ValueError, OverflowError, KeyError, TypeError)


@dataclass(frozen=True)
class Warmed:
    """What a refresh did: popular queries seen, computed afresh, and dropped as refused."""

    queries: int
    refreshed: int
    dropped: int


def refresh_popular(
    session: Session,
    client: redis.Redis,
    org_id: int,
    *,
    ttl: int,
    max_cells: int | None = None,
    on_progress: Callable[[float], None] = lambda fraction: None,
) -> Warmed:
    """Compute the organization's most requested reads afresh into the cache (popular.TOP_N), each
    under the cells limit the API applies (`max_cells`: reads whose rows only the data knows check
    it once they know them; one past it now is refused and dropped from the popular set, its
    refusal cached as a client's would be)."""
    entries = [(m, e) for m, e in popular.top_members(client, org_id) if e.get("kind") == "read"]
    refreshed = dropped = 0
    for index, (member, entry) in enumerate(entries):
        try:
            read = readers.from_params(entry["params"])
            if max_cells is not None and any(f.name == "max_cells" for f in dataclasses.fields(read)):
                read = dataclasses.replace(read, max_cells=max_cells)
            readers.read(session, client, org_id, read, ttl=ttl, force=True)
            refreshed += 1
        except REFUSED as exc:
            log.info("popular query of org=%s refused, dropped: %s", org_id, exc)
            popular.forget(client, org_id, member)
            dropped += 1
        except OperationalError as exc:
            if not isinstance(exc.orig, psycopg.errors.QueryCanceled):
                raise
            # Past the statement timeout: kept (it may fit another time), the others still warmed.
            log.warning("popular query of org=%s timed out: %s", org_id, str(exc).splitlines()[0])
        finally:
            session.rollback()
        on_progress((index + 1) / len(entries))
    return Warmed(len(entries), refreshed, dropped)
