"""Sign-in throttling: too many failed logins for one email, or failed logins and refreshes from one
client address, within a sliding window answer 429 with Retry-After before any password is hashed.

Each email and address has a sorted set of its failures' times in Redis (`an:auth:fail:...`), trimmed
to the window at every check; the check and the trim are one round trip, as is recording a failure.
A throttled attempt records nothing, so a set never holds more than its limit.

A sign-in is admitted (`admit`) in one atomic step that also marks it in flight (a second set per
key, `...:pending`): failures and sign-ins in flight together stay within the limit, so passwords
sent at once get no more guesses than passwords sent one after another. One that finds the budget
taken only by sign-ins in flight waits for them (their outcome decides) rather than being refused;
`settle` takes the mark back and counts a failure. An email that signed in from an address before
spends a second budget of that address, apart from the one guesses at other emails use up
(`known_here`). Failed refreshes are counted after the fact
(`check`, `record_failure`): a refresh token is not guessed, and a browser's tabs refresh at once; one
whose signature holds spends its login's budget alone, a forged one its address's.
Without Redis the throttle is open: it protects capacity and guesses, the password still decides.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import decode_token

from webapp.core.errors import ApiError
from webapp.infra.redis_client import get_redis

log = logging.getLogger(__name__)

PREFIX = "an:auth:fail:"
# Routes that exchange a refresh token: a 401 from one is a failure of its client address, and of the
# token's email when its signature holds. The API's takes it as the bearer token, the dashboard's
# session route from its cookie (and from nowhere else: another header must not hide the cookie's).
REFRESH_COOKIE = "dashboard_refresh"
API_REFRESH, WEB_REFRESH = "api.auth.refresh", "web_session.refresh"
REFRESH_ENDPOINTS = frozenset({API_REFRESH, WEB_REFRESH})
# The claim of a refresh token naming its login (token family): its failed refreshes' throttle.
FAMILY_CLAIM = "fam"


def email_digest(email: str) -> str:
    """What names one email's failures (hashed: keys name no address book)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def email_key(email: str) -> str:
    """The failures of one email."""
    return _email_key_of(email_digest(email))


def _email_key_of(digest: str) -> str:
    return PREFIX + "email:" + digest


def _refresh_key_of(family: str) -> str:
    """The failed refreshes of one login (its token family): a replayed dead token, from however many
    addresses, spends its own login's budget, never its email's sign-ins' nor the user's other
    sessions' (someone guessing the password, or holding a logged-out token, stops no live session
    from refreshing)."""
    return PREFIX + "refresh:" + family


def address_key(address: str | None) -> str:
    return PREFIX + "addr:" + (address or "unknown")


def _limits(config: Mapping[str, Any]) -> tuple[int, int, int]:
    return (
        config["AUTH_THROTTLE_WINDOW_SECONDS"],
        config["AUTH_MAX_FAILURES_PER_EMAIL"],
        config["AUTH_MAX_FAILURES_PER_ADDRESS"],
    )


def _wait(times: list[float], limit: int, window: int, now: float) -> int:
    """Seconds until fewer than `limit` of the failures `times` (ascending) lie in the window; 0 now."""
    if len(times) < limit:
        return 0
    return max(1, int(times[len(times) - limit] + window - now) + 1)


def _refused(what: str, wait: int) -> ApiError:
    return ApiError(
        429,
        f"{what}; try again in {wait} s",
        code="too_many_failures",
        details={"retry_after": wait, "window_seconds": current_app.config["AUTH_THROTTLE_WINDOW_SECONDS"]},
        headers={"Retry-After": str(wait)},
    )


def check(keys: Mapping[str, int], what: str = "too many failed sign-ins") -> None:
    """429 with Retry-After while any of `keys` (key -> its limit) holds its limit of failures; the
    message starts with `what`."""
    window = current_app.config["AUTH_THROTTLE_WINDOW_SECONDS"]
    now = time.time()
    try:
        pipe = get_redis().pipeline(transaction=False)
        for key in keys:
            pipe.zremrangebyscore(key, 0, now - window)
            pipe.zrange(key, 0, -1, withscores=True)
        replies = pipe.execute()
    except redis.RedisError as exc:
        log.debug("sign-in throttle without Redis: %s", exc)
        return
    waits = [
        _wait([score for _, score in replies[2 * i + 1]], limit, window, now)
        for i, limit in enumerate(keys.values())
    ]
    wait = max(waits)
    if wait:
        raise _refused(what, wait)


def record_failure(keys: list[str]) -> None:
    """Count one failure against each of `keys`."""
    window = current_app.config["AUTH_THROTTLE_WINDOW_SECONDS"]
    now = time.time()
    try:
        pipe = get_redis().pipeline(transaction=False)
        for key in keys:
            pipe.zadd(key, {f"{now:.6f}:{uuid.uuid4().hex[:8]}": now})
            pipe.expire(key, window + 1)
        pipe.execute()
    except redis.RedisError as exc:
        log.debug("sign-in failure not counted without Redis: %s", exc)


def login_keys(email: str) -> dict[str, int]:
    """The budgets a sign-in spends: its email's, and its client address's; an email that signed in
    from that address before (`known_here`) spends the address's budget for known emails instead."""
    _, per_email, per_address = _limits(current_app.config)
    address = request.remote_addr
    return {
        email_key(email): per_email,
        (known_address_key(address) if known_here(email) else address_key(address)): per_address,
    }


def known_address_key(address: str | None) -> str:
    """The failures, from one address, of emails that signed in from it before."""
    return PREFIX + "addr-known:" + (address or "unknown")


# Emails that signed in from an address (`an:auth:known:<address>`, a sorted set of email digests by
# the time of their last sign-in there). The address's budget is there to stop one client guessing
# across many emails; a user who signed in from it before is likely not that client, so their
# sign-ins spend a second budget of the address, which guesses at unknown emails cannot use up: a
# flood from behind a shared address (an office, a proxy) does not lock out its known users. Known
# emails are still held to their own budget, and together to the second one (as large as the first),
# so making emails known (a user of another organization given a victim's email, say) at most
# doubles what one address may guess in a window.
KNOWN_PREFIX = "an:auth:known:"
KNOWN_SECONDS = 30 * 86400
KNOWN_MAX = 1000  # emails remembered per address, the most recent kept


def known_key(address: str | None) -> str:
    return KNOWN_PREFIX + (address or "unknown")


def known_here(email: str) -> bool:
    """Whether `email` signed in from this request's client address within KNOWN_SECONDS."""
    try:
        score = get_redis().zscore(known_key(request.remote_addr), email_digest(email))
    except redis.RedisError:
        return False
    return score is not None and float(score) > time.time() - KNOWN_SECONDS


def remember_sign_in(email: str) -> None:
    """`email` signed in from this request's client address: its later sign-ins there spend the
    address's budget for known emails (login_keys)."""
    now = time.time()
    key = known_key(request.remote_addr)
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.zadd(key, {email_digest(email): now})
        pipe.zremrangebyscore(key, 0, now - KNOWN_SECONDS)
        pipe.zremrangebyrank(key, 0, -(KNOWN_MAX + 1))
        pipe.expire(key, KNOWN_SECONDS)
        pipe.execute()
    except redis.RedisError as exc:
        log.debug("sign-in address not remembered without Redis: %s", exc)


# How long a sign-in waits for others of its email or address in flight before a 429, and how long a
# mark in flight counts at most (a process that died mid-sign-in leaves one).
ADMIT_WAIT_SECONDS = 10.0
PENDING_SECONDS = 8  # a hash takes well under a second; below ADMIT_WAIT_SECONDS, so a waiter outlives it
# Per key (KEYS: failures, then in flight, each key's pair): trim both to their spans; if a key holds
# its limit of failures answer {1, wait}; if failures and marks in flight reach it answer {2, 0}; else
# mark this sign-in in flight in every key and answer {0, 0}. ARGV: now, window, the sign-in's member,
# PENDING_SECONDS, then each key's limit.
_ADMIT = """
local now, window, member, pending = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local busy, wait = false, 0
for i = 1, #KEYS, 2 do
  local limit = tonumber(ARGV[4 + (i + 1) / 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, now - window)
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], 0, now - pending)
  local failures = redis.call('ZCARD', KEYS[i])
  if failures >= limit then
    -- As _wait computes it: when the oldest failure of the last `limit` leaves the window.
    local oldest = redis.call('ZRANGE', KEYS[i], failures - limit, failures - limit, 'WITHSCORES')
    wait = math.max(wait, math.max(1, math.floor(tonumber(oldest[2]) + window - now) + 1))
  elseif failures + redis.call('ZCARD', KEYS[i + 1]) >= limit then
    busy = true
  end
end
if wait > 0 then return {1, wait} end
if busy then return {2, 0} end
for i = 1, #KEYS, 2 do
  redis.call('ZADD', KEYS[i + 1], now, member)
  redis.call('EXPIRE', KEYS[i + 1], pending + 1)
end
return {0, 0}
"""


@dataclass(frozen=True)
class Attempt:
    """A sign-in admitted and in flight: its mark in each key's set of sign-ins in flight."""

    member: str
    keys: tuple[str, ...]


def _pending_key(key: str) -> str:
    return key + ":pending"


def admit(keys: Mapping[str, int], what: str = "too many failed sign-ins") -> Attempt | None:
    """Admit one sign-in against `keys` (key -> its limit) and mark it in flight, or 429 with
    Retry-After (the message starting with `what`) while a key holds its limit of failures. While
    failures and sign-ins in flight fill a budget, wait for those to settle (up to
    ADMIT_WAIT_SECONDS, then 429). None without Redis (nothing counted)."""
    window = current_app.config["AUTH_THROTTLE_WINDOW_SECONDS"]
    names = [name for key in keys for name in (key, _pending_key(key))]
    deadline = time.monotonic() + ADMIT_WAIT_SECONDS
    pause = 0.02
    while True:
        now = time.time()
        member = f"{now:.6f}:{uuid.uuid4().hex[:8]}"
        try:
            verdict, wait = get_redis().eval(
                _ADMIT, len(names), *names, now, window, member, PENDING_SECONDS, *keys.values()
            )
        except redis.RedisError as exc:
            log.debug("sign-in throttle without Redis: %s", exc)
            return None
        if verdict == 0:
            return Attempt(member, tuple(keys))
        if verdict == 1:
            raise _refused(what, int(wait))
        if time.monotonic() >= deadline:
            raise _refused("too many sign-ins at once", 1)
        time.sleep(pause * random.uniform(0.5, 1.5))  # under gevent, a wait of this greenlet alone
        pause = min(pause * 1.5, 0.2)


def settle(attempt: Attempt | None, *, failed: bool) -> None:
    """The sign-in is over: take its marks in flight back, and count a failure if it was one."""
    if attempt is None:
        return
    window = current_app.config["AUTH_THROTTLE_WINDOW_SECONDS"]
    now = time.time()
    try:
        pipe = get_redis().pipeline(transaction=True)
        for key in attempt.keys:
            if failed:
                pipe.zadd(key, {attempt.member: now})
                pipe.expire(key, window + 1)
            pipe.zrem(_pending_key(key), attempt.member)
        pipe.execute()
    except redis.RedisError as exc:
        log.debug("sign-in not settled without Redis: %s", exc)


def admit_login(email: str) -> Attempt | None:
    """Before the password is hashed: 429 while the email or the client address is throttled, else
    the sign-in, in flight until settled."""
    return admit(login_keys(email))


def _ambiguous_key(email: str) -> str:
    return PREFIX + "ambiguous:" + email_digest(email)


def admit_ambiguous(email: str) -> None:
    """Before any hash: 429 while the email's sign-ins without org_id tried against several
    organizations' users reach AUTH_MAX_FAILURES_PER_EMAIL in the window; else count this one (it is
    settled at once: what it may learn is the answer's, not a hash's). org_id still signs in."""
    limit = current_app.config["AUTH_MAX_FAILURES_PER_EMAIL"]
    what = "too many sign-ins without org_id for an email of several organizations; send org_id"
    settle(admit({_ambiguous_key(email): limit}, what), failed=True)


def login_succeeded(email: str) -> None:
    """A right password clears its email's failures (the address keeps its own). Only for an email
    of one user: where other organizations' users have it too they keep their guard, or a user of one
    organization could clear the failures of guesses at another's with their own password."""
    with contextlib.suppress(redis.RedisError):
        get_redis().delete(email_key(email))


def _refresh_login_key() -> str | None:
    """The login throttle named by the refresh token the request presents, when its signature and
    expiry hold (a forged or expired token names none: only its address counts)."""
    if request.endpoint == WEB_REFRESH:
        token = request.cookies.get(REFRESH_COOKIE)
    else:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.startswith("Bearer ") else None  # any case: any_case_bearer
    if not token:
        return None
    try:
        claims = decode_token(token, allow_expired=False)
    except Exception:  # any undecodable token: the address alone counts it
        return None
    family = claims.get(FAMILY_CLAIM) if claims.get("type") == "refresh" else None
    return _refresh_key_of(family) if isinstance(family, str) and family.isalnum() else None


def _refresh_keys(app: Flask) -> dict[str, int]:
    """The throttles of this refresh request (decoded once, checked before and counted after)."""
    if "refresh_throttles" not in g:
        login = _refresh_login_key()
        if login is None:
            keys = {address_key(request.remote_addr): app.config["AUTH_MAX_FAILURES_PER_ADDRESS"]}
        else:
            # A token whose signature holds was issued at a sign-in and cannot be guessed: its failures
            # (used up, logged out) count against its login alone. An address budget would let anyone
            # behind the address (guessing at emails, or replaying their own logged-out tokens) stop
            # its live sessions refreshing, and its known users signing in.
            keys = {login: app.config["AUTH_MAX_FAILURES_PER_EMAIL"]}
        g.refresh_throttles = keys
    return g.refresh_throttles


def init_app(app: Flask) -> None:
    """Refresh routes: checked by client address and by the token's login before the token is used,
    a 401 counted against both after (a refresh token used up, revoked, or of a disabled user)."""

    @app.before_request
    def check_refresh() -> None:
        if request.endpoint in REFRESH_ENDPOINTS:
            check(_refresh_keys(app), "too many failed token refreshes and sign-ins")

    @app.after_request
    def count_refresh_failure(response: Response) -> Response:
        if request.endpoint in REFRESH_ENDPOINTS and response.status_code == 401:
            record_failure(list(_refresh_keys(app)))
        return response
