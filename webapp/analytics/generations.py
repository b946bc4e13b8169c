"""Generation counters of the analytics cache: a family of answers (volume, backlog, a distribution,
...) is invalidated by one INCR of its counter, which every cached key of that family carries. Writers
bump the families their change can move; a bump Redis did not take is owed and paid in the background.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import redis

from webapp.infra.pay_later import PayLater

log = logging.getLogger(__name__)

GEN_PREFIX = "an:gen:"

FAMILIES = (
    "volume",
    "sentiment",
    "response",
    "resolution",
    "backlog",
    "sla",
    "performance",
    "dashboard",
    "dist_status",
    "dist_priority",
    "dist_channel",
    "dist_category",
    "dist_assigned_to",
    "snapshots",
    # The support metrics: solves (and what they measure), next replies, satisfaction ratings.
    "solves",
    "replies",
    "satisfaction",
    # Business-hours schedules: answers counted on a schedule's clock.
    "schedules",
)
DISTRIBUTIONS = ("dist_status", "dist_priority", "dist_channel", "dist_category", "dist_assigned_to")

# Which cached answers a ticket event can change.
EVENT_FAMILIES: dict[str, frozenset[str]] = {
    "created": frozenset({"volume", "sentiment", "dashboard", "backlog", *DISTRIBUTIONS}),
    "status_changed": frozenset({"dist_status", "resolution", "backlog"}),
    "priority_changed": frozenset({"dist_priority", "sla"}),
    "assigned": frozenset({"dist_assigned_to"}),
    "channel_changed": frozenset({"dist_channel"}),
    "category_changed": frozenset({"dist_category"}),
    "first_response": frozenset({"response", "performance", "sla"}),
    "resolved": frozenset({"resolution", "performance", "sla", "backlog"}),
    "reopened": frozenset({"resolution", "performance", "sla", "backlog", "solves"}),
    "backlog": frozenset({"backlog"}),
    "solved": frozenset({"solves"}),
    # A pair of replies closed: next_reply_time, and the SLA's next_reply target met or breached.
    "next_reply": frozenset({"replies", "sla", "performance"}),
    "rated": frozenset({"satisfaction"}),
    # A target passing its limit: SLA outcomes move from pending to breached with no ticket written.
    "sla_breached": frozenset({"sla", "performance"}),
}
# Ticket fields whose change writes no event but still changes an answer; `public_reply` (a public
# reply written, customer's or agent's) opens or closes the SLA's next_reply wait with no event of its
# own (a customer's reply after an agent's makes that target pending at once).
FIELD_FAMILIES: dict[str, frozenset[str]] = {
    "sentiment_score": frozenset({"sentiment", "dashboard"}),
    "channel": frozenset({"dist_channel"}),
    "category": frozenset({"dist_category"}),
    "public_reply": frozenset({"sla", "performance"}),
}
PUBLIC_REPLY = "public_reply"


def gen_key(org_id: int, family: str) -> str:
    return f"{GEN_PREFIX}{org_id}:{family}"


def families_for(event_types: Iterable[str], fields: Iterable[str] = ()) -> set[str]:
    """The families a change with these event types and changed fields invalidates."""
    out: set[str] = set()
    for event_type in event_types:
        out |= EVENT_FAMILIES.get(event_type, frozenset())
    for name in fields:
        out |= FIELD_FAMILIES.get(name, frozenset())
    return out


def bump(client: redis.Redis, org_id: int, families: Iterable[str]) -> None:
    """Invalidate every cached answer that depends on `families`: one INCR each, whatever is cached.

    When Redis cannot be reached the bump is owed: this process retries it in the background until
    it lands, and meanwhile reads these families without the cache. The RedisError still propagates.
    """
    names = sorted(set(families))
    if not names:
        return
    try:
        _incr(client, org_id, names)
    except redis.RedisError:
        owed_bumps.add(client, org_id, names)
        raise


def _incr(client: redis.Redis, org_id: int, names: Iterable[str]) -> None:
    pipe = client.pipeline(transaction=False)
    for family in names:
        pipe.incr(gen_key(org_id, family))
    pipe.execute()


class OwedBumps:
    """Generation bumps that failed (Redis unreachable), retried every `every` seconds until they land.

    A write committed in PostgreSQL whose bump is lost would leave answers cached before it to be
    served after Redis returns; paying the bump as soon as Redis answers bounds that to `every`.
    """

    def __init__(self, every: float = 0.25) -> None:
        # (organization, family) -> how many bumps had been owed when it was last owed
        self._owed: dict[tuple[int, str], int] = {}
        self._count = 0
        self._lock = threading.Lock()
        self._payer = PayLater("owed-cache-bumps", every, self._anything_owed, self.pay)

    def add(self, client: redis.Redis, org_id: int, families: Iterable[str]) -> None:
        with self._lock:
            for family in families:
                self._count += 1
                self._owed[(org_id, family)] = self._count
        self._payer.wake(client)

    def _anything_owed(self) -> bool:
        with self._lock:
            return bool(self._owed)

    def covers(self, org_id: int, families: Iterable[str]) -> bool:
        """Whether a bump of any of `families` of the organization is still owed."""
        return bool(self._owed) and any((org_id, family) in self._owed for family in families)

    def pay(self, client: redis.Redis) -> bool:
        """Make the owed bumps now; whether nothing is owed any more."""
        with self._lock:
            owed = dict(self._owed)
        if not owed:
            return True
        by_org: dict[int, list[str]] = {}
        for org_id, family in owed:
            by_org.setdefault(org_id, []).append(family)
        try:
            for org_id, families in by_org.items():
                _incr(client, org_id, sorted(families))
        except redis.RedisError:
            return False
        with self._lock:
            for item, count in owed.items():
                # Owed again while this payment was on its way: paid on the next round.
                if self._owed.get(item) == count:
                    del self._owed[item]
            done = not self._owed
        log.info("owed generation bumps paid: %s", len(owed))
        return done


owed_bumps = OwedBumps()


def bump_all(client: redis.Redis, org_id: int) -> None:
    bump(client, org_id, FAMILIES)
