"""Socket caps: a process's own, and an organization's across processes, counted in a real Redis.

Two Slots with names of their own stand for two web processes sharing one Redis.
"""

from __future__ import annotations

import itertools
import time

import redis

from webapp.api.ws.slots import ALIVE, STALE_SECONDS, Slots, org_key

_orgs = itertools.count(900_001)


def _client(services) -> redis.Redis:
    return redis.Redis.from_url(services.redis_url)


def test_an_organization_is_capped_across_processes_and_others_go_on(services):
    client, org, other = _client(services), next(_orgs), next(_orgs)
    a, b = Slots(process="web-a"), Slots(process="web-b")
    assert a.take(client, org, max_total=100, max_org=3) is None
    assert a.take(client, org, max_total=100, max_org=3) is None
    assert b.take(client, org, max_total=100, max_org=3) is None
    refused = b.take(client, org, max_total=100, max_org=3)
    assert refused == (429, "the organization has 3 sockets open; close one first")
    assert a.take(client, org, max_total=100, max_org=3)[0] == 429
    assert b.take(client, other, max_total=100, max_org=3) is None  # another organization goes on
    assert (a.open_sockets(org), b.open_sockets(org), b.open_sockets()) == (2, 1, 2)

    a.give_back(client, org)
    assert b.take(client, org, max_total=100, max_org=3) is None
    assert {k.decode(): int(v) for k, v in client.hgetall(org_key(org)).items()} == {"web-a": 1, "web-b": 2}


def test_a_process_past_its_own_cap_refuses_with_503(services):
    client, org = _client(services), next(_orgs)
    slots = Slots(process="web-full")
    assert slots.take(client, org, max_total=2, max_org=100) is None
    assert slots.take(client, next(_orgs), max_total=2, max_org=100) is None
    assert slots.take(client, org, max_total=2, max_org=100)[0] == 503
    slots.give_back(client, org)
    assert slots.take(client, org, max_total=2, max_org=100) is None


def test_a_dead_process_stops_counting_and_a_lost_decrement_is_corrected(services):
    client, org = _client(services), next(_orgs)
    dead, live = Slots(process="web-dead"), Slots(process="web-live")
    assert dead.take(client, org, max_total=100, max_org=2) is None
    assert dead.take(client, org, max_total=100, max_org=2) is None
    assert live.take(client, org, max_total=100, max_org=2)[0] == 429
    # The process died: it syncs no more, and its last sign of life ages past STALE_SECONDS.
    client.zadd(ALIVE, {"web-dead": time.time() - STALE_SECONDS - 1})
    assert live.take(client, org, max_total=100, max_org=2) is None
    assert client.hget(org_key(org), "web-dead") is None  # pruned by the count itself

    # A close whose decrement never reached Redis: the next sync writes the exact count.
    live._release(org)
    assert int(client.hget(org_key(org), "web-live")) == 1
    live.sync()
    assert client.hget(org_key(org), "web-live") is None
    assert client.zscore(ALIVE, "web-live") is not None
